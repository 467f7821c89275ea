"""Core never imports a Discord library; hooks are documented and exercised."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from notetaker import hookspecs, plugins
from notetaker.hookspecs import hookimpl
from notetaker.libraries import DISCORD_LIBRARIES, installed_discord_libraries, installed_version

CORE = Path(__file__).resolve().parents[1] / "notetaker"
REPO = CORE.parents[1]
FORBIDDEN = {"discord", "nextcord", "disnake", "interactions"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_source_imports_no_discord_library() -> None:
    offenders = {
        str(p.relative_to(CORE)): sorted(_imports(p) & FORBIDDEN) for p in CORE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_detection_is_by_distribution_name() -> None:
    found = installed_discord_libraries()
    assert set(found) <= set(DISCORD_LIBRARIES)
    for dist, version in found.items():
        assert installed_version(dist) == version
    assert installed_version("surely-not-installed-dist") is None


def _hookspec_names() -> list[str]:
    return [
        n
        for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if n.startswith("notetaker_")
    ]


def test_every_hook_is_prefixed_typed_and_documented() -> None:
    names = _hookspec_names()
    assert names, "no hookspecs found"
    for name in names:
        fn = getattr(hookspecs, name)
        doc = inspect.getdoc(fn) or ""
        assert "Called" in doc, f"{name}: docstring must say who calls it"
        assert "register" in inspect.signature(fn).parameters
        assert fn.__annotations__, f"{name} is not typed"


def _repo_files(pattern: str) -> list[Path]:
    return [
        p for p in REPO.rglob(pattern) if not {".venv", ".nox"} & {x.split("-")[0] for x in p.parts}
    ]


def _hook_implementations() -> dict[str, list[Path]]:
    """hook name -> the non-test source files that define it as a module-level hookimpl."""
    found: dict[str, list[Path]] = {name: [] for name in _hookspec_names()}
    for path in _repo_files("*.py"):
        rel = path.relative_to(REPO).parts
        if "tests" in rel or rel[-1].startswith("test_"):
            continue  # a test's own plugin shows the loader works, not that a hook is served
        text = path.read_text()
        if "def notetaker_" not in text:
            continue
        for node in ast.parse(text, filename=str(path)).body:
            decorators = {
                ast.unparse(d).split(".")[-1] for d in getattr(node, "decorator_list", [])
            }
            if (
                isinstance(node, ast.FunctionDef)
                and node.name in found
                and "hookimpl" in decorators
            ):
                found[node.name].append(path)
    return found


def _load_by_path(path: Path) -> ModuleType:
    name = "hookprobe_" + "_".join(path.relative_to(REPO).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_hook_is_implemented_and_called_through_the_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each hook has an implementation, and the real loader calls every one of them.

    A hook's name appearing in some test file proved nothing (a docstring mention passed).
    So this test makes the calls itself: every implementation in the repo (the backends
    too, which are not installed here: their plugin modules import no Discord library) is
    handed to ``plugins.load`` behind a wrapper that records the call, and each must have
    been called with a registry and have registered something under its plugin's name.
    A hook that the loader stopped calling, or an implementation that never registers,
    fails here.
    """
    implementations = _hook_implementations()
    for name, paths in implementations.items():
        assert paths, f"no plugin implements {name}"
    # Only the probes: an installed copy of the same plugin would register its names twice.
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda **kw: [])
    calls: list[tuple[str, str]] = []
    probes: list[tuple[str, Any]] = []
    for hook, paths in implementations.items():
        for path in paths:
            plugin = f"{hook}@{path.relative_to(REPO)}"
            real = getattr(_load_by_path(path), hook)

            def record(register: Any, _real: Any = real, _plugin: str = plugin) -> None:
                calls.append((_plugin, register.kind))
                _real(register=register)

            probes.append((plugin, SimpleNamespace(**{hook: hookimpl(record)})))
    found = plugins.load(extra=probes)
    assert found.failed == []
    assert sorted(p for p, _ in calls) == sorted(p for p, _ in probes)  # each called once
    registries = (found.backends, found.transcribers, found.renderers, found.summarizers)
    for plugin, kind in calls:
        (registry,) = [r for r in registries if r.kind == kind]
        owned = [n for n in registry.names() if registry.owner(n).startswith(f"{plugin} ")]
        assert owned, f"{plugin} was called but registered no {kind}"
