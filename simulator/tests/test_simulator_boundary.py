"""discordsim is Discord in a box: it knows nothing of notetaker.

The harness that runs a notetaker stack against it lives in its own distribution
(``harness/``, ``notetaker_harness``); nothing in ``simulator/discordsim`` may import
notetaker, not even lazily inside a function or by a module name in a string.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SIMULATOR = Path(__file__).resolve().parents[1]
PACKAGE = SIMULATOR / "discordsim"
#: Top-level modules discordsim must never import: notetaker and the distributions
#: built on it.
FORBIDDEN = ("notetaker", "notetaker_harness", "notetaker_transcribe")


def _forbidden(name: str) -> bool:
    top = name.split(".")[0]
    return top in FORBIDDEN or top.startswith("notetaker_")


def imports_of_notetaker(source: str, filename: str = "<string>") -> list[str]:
    """Every import of notetaker in ``source``: import statements at any depth, and
    ``import_module`` / ``__import__`` calls whose module name is a string literal."""
    tree = ast.parse(source, filename=filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _forbidden(node.module):
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if (
                called in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and _forbidden(arg.value)
            ):
                found.append(f"{called}({arg.value!r})")
    return found


def test_the_finder_sees_every_kind_of_import() -> None:
    source = """
import notetaker
from notetaker.sink import CaptureSink
def lazy():
    import notetaker_harness.stackcheck
    importlib.import_module("notetaker.doctor")
    __import__("notetaker_discordpy")
from discordsim import world
import notetakerish
"""
    assert imports_of_notetaker(source) == [
        "import notetaker",
        "from notetaker.sink import ...",
        "import notetaker_harness.stackcheck",
        "import_module('notetaker.doctor')",
        "__import__('notetaker_discordpy')",
    ]


def test_discordsim_imports_nothing_of_notetaker() -> None:
    offenders = {
        str(path.relative_to(SIMULATOR)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if (found := imports_of_notetaker(path.read_text(), str(path)))
    }
    assert offenders == {}


def test_the_distribution_declares_no_notetaker_dependency() -> None:
    import tomllib

    project = tomllib.loads((SIMULATOR / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    assert [r for r in requirements if r.lower().startswith("notetaker")] == []


def _uv() -> list[str] | None:
    found = shutil.which("uv")
    if found:
        return [found]
    probe = subprocess.run(
        [sys.executable, "-m", "uv", "--version"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "uv"]
    for python in ("python3", "python"):
        exe = shutil.which(python)
        if (
            exe
            and subprocess.run([exe, "-m", "uv", "--version"], capture_output=True).returncode == 0
        ):
            return [exe, "-m", "uv"]
    return None


@pytest.mark.slow
def test_pip_install_simulator_alone_serves_the_simulator(tmp_path: Path) -> None:
    """A fresh environment with only ./simulator: every discordsim module imports, notetaker
    is absent, the simulator serves REST, and its command line runs."""
    uv = _uv()
    if uv is None:
        pytest.fail("uv is needed to build the throwaway environment (pip install uv)")
    venv = tmp_path / "venv"
    subprocess.run([*uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [*uv, "pip", "install", "-q", "--python", str(python), f"{SIMULATOR}[media]"],
        check=True,
        env={**os.environ, "VIRTUAL_ENV": str(venv)},
    )
    probe = """
import importlib, importlib.util, pkgutil, discordsim
# discordsim.testing.<library> import their Discord library; none is installed here.
libraries = {"discordsim.testing.pycord", "discordsim.testing.discordpy",
             "discordsim.testing.nextcord", "discordsim.testing.disnake",
             "discordsim.__main__"}  # __main__ runs the command line
names = [m.name for m in pkgutil.walk_packages(discordsim.__path__, "discordsim.")]
for name in names:
    if name not in libraries:
        importlib.import_module(name)
assert importlib.util.find_spec("notetaker") is None, "notetaker is installed"

import asyncio, aiohttp
from discordsim.app import Simulator
from discordsim.world import World

async def serve():
    async with Simulator(World.default(), lifetime=30) as sim:
        async with aiohttp.ClientSession() as http:
            async with http.get(sim.api_base + "/gateway") as r:
                assert r.status == 200, r.status
                body = await r.json()
    assert body["url"].startswith("ws"), body

asyncio.run(serve())
print(len(names), "modules; the simulator answered GET /gateway")
"""
    out = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "the simulator answered" in out.stdout
    run = subprocess.run(
        [str(venv / "bin" / "discordsim"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "usage" in run.stdout.lower()
