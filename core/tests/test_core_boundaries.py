"""Core never imports a Discord library; hooks are documented and exercised."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from notetaker import hookspecs
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


def test_every_hook_is_implemented_and_tested() -> None:
    sources = "\n".join(p.read_text() for p in _repo_files("*.py") if p.parent.name != "tests")
    tests = "\n".join(p.read_text() for p in _repo_files("test_*.py"))
    for name in _hookspec_names():
        assert re.search(rf"def {name}\(", sources), f"no plugin implements {name}"
        assert name in tests, f"no test exercises {name}"
