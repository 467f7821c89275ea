"""Core depends on neither the simulator nor the harness: it reaches the harness in one
place (the doctor's live check), lazily, and says how to install it when it is missing."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from notetaker import doctor
from notetaker.config import Settings

CORE = Path(__file__).resolve().parents[1] / "notetaker"


def _imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    out: list[tuple[str, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                out.append((node.args[0].value, node))
    return out


def _top_level(tree: ast.Module) -> set[ast.AST]:
    """Import nodes that run when the module is imported (not inside a function)."""
    lazy: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lazy.update(ast.walk(node))
    return {n for n in ast.walk(tree) if n not in lazy}


def test_core_never_imports_the_simulator() -> None:
    offenders = {}
    for path in CORE.rglob("*.py"):
        names = [n for n, _ in _imports(ast.parse(path.read_text())) if n.startswith("discordsim")]
        if names:
            offenders[str(path.relative_to(CORE))] = names
    assert offenders == {}


def test_core_reaches_the_harness_only_lazily_from_the_doctor() -> None:
    where = {}
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        eager = _top_level(tree)
        for name, node in _imports(tree):
            if name.split(".")[0] == "notetaker_harness":
                where[str(path.relative_to(CORE))] = "eager" if node in eager else "lazy"
    assert where == {"doctor.py": "lazy"}


def test_without_the_harness_the_doctor_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # None in sys.modules makes the import fail as if the distribution were absent.
    monkeypatch.setitem(sys.modules, "notetaker_harness", None)
    findings = doctor.live_report(Settings(backend="discordpy", data_dir=tmp_path))
    assert [(f.ok, f.text) for f in findings] == [(None, doctor.INSTALL_SIM)]
    assert "./harness" in doctor.INSTALL_SIM
