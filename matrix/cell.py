"""One cell of the version matrix: run the stack-check suite on the installed library
version, both transports, and write the results as JSON.

Run inside the cell's environment (core, discordsim, one backend, one library version):

    python matrix/cell.py --backend pycord --version 2.6.1 --out matrix/results/pycord-2.6.1.json

With ``--install-failed REASON`` it only writes a cell saying the environment could not be
built (no notetaker import needed), so the report shows the cell instead of a hole.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _distributions() -> dict[str, str]:
    """Backend plugin name -> distribution, from core's library facts, loaded by path: an
    install that failed left no notetaker to import."""
    path = ROOT / "core" / "notetaker" / "libraries.py"
    spec = importlib.util.spec_from_file_location("notetaker_library_facts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return {lib.backend: lib.distribution for lib in module.LIBRARIES}


DISTRIBUTION = _distributions()


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", required=True, choices=sorted(DISTRIBUTION))
    parser.add_argument("--version", required=True, help="the library version expected")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--transport", action="append", help="default: native and engine")
    parser.add_argument("--check", action="append", help="default: the whole suite")
    parser.add_argument("--install-failed", metavar="REASON")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other results already in --out; replace only the ones run now",
    )
    args = parser.parse_args(argv)
    cell: dict[str, Any] = {
        "backend": args.backend,
        "library": DISTRIBUTION[args.backend],
        "version": args.version,
        "python": platform.python_version(),
        "results": [],
    }
    if args.install_failed:
        cell["error"] = f"cannot install: {args.install_failed}"
        _write(args.out, cell)
        return 0

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.ERROR)  # stack checks read WARNINGs; the console needn't
    from notetaker_harness import stackcheck

    backend, library, version = stackcheck.installed_stack()
    if (backend, version) != (args.backend, args.version):
        cell["error"] = f"environment has {library} {version}, expected {args.version}"
        _write(args.out, cell)
        return 1
    cell["checks"] = {c.name: c.question for c in stackcheck.SUITE}
    started = time.monotonic()

    if args.merge and args.out.is_file():
        rerun = {
            (t, c)
            for t in (args.transport or stackcheck.TRANSPORTS)
            for c in (args.check or [c.name for c in stackcheck.SUITE])
        }
        old = json.loads(args.out.read_text()).get("results", [])
        cell["results"] = [r for r in old if (r["transport"], r["check"]) not in rerun]

    def progress(r: stackcheck.Result) -> None:
        print(
            f"{library} {version} {r.transport:6} {r.check:19} {r.label:12} "
            f"{r.seconds:5.1f}s  {r.cause}",
            flush=True,
        )
        cell["results"].append(r.to_json())
        _write(args.out, cell)  # partial results survive a killed cell

    asyncio.run(
        stackcheck.run_suite(args.transport or stackcheck.TRANSPORTS, args.check, progress=progress)
    )
    cell["seconds"] = round(time.monotonic() - started, 1)
    order = {
        (t, c.name): i
        for i, (t, c) in enumerate((t, c) for t in stackcheck.TRANSPORTS for c in stackcheck.SUITE)
    }
    cell["results"].sort(key=lambda r: order.get((r["transport"], r["check"]), 99))
    _write(args.out, cell)
    return 0


if __name__ == "__main__":
    sys.exit(main())
