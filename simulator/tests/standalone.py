"""A real ``python -m discordsim serve --state FILE`` process, and its CLI, for tests.

Both are subprocesses driven with asyncio, so that a bot the test runs in its own event
loop keeps answering while a CLI command waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIMULATOR_ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SIMULATOR_ROOT), out.get("PYTHONPATH")]))
    out.pop("DISCORDSIM_STATE", None)  # every test names its own state file
    return out


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    path: Path
    state: dict[str, Any]
    banner: str
    stderr: Path

    async def stop(self) -> int:
        """SIGINT, as Ctrl-C; the exit status."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        return await asyncio.wait_for(self.proc.wait(), 30)


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, *args: str, name: str = "sim.json") -> AsyncIterator[Served]:
    """Start ``serve --state tmp_path/name``; yield once its banner says the state file is
    written (the file is written before the banner)."""
    path = tmp_path / name
    err = tmp_path / f"{name}.stderr"
    with err.open("wb") as err_out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "discordsim", "serve", "--state", str(path),
            "--lifetime", "120", "--no-listen-443", *args,
            stdout=asyncio.subprocess.PIPE, stderr=err_out, env=env(),
        )  # fmt: skip
    served: Served | None = None
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not any(line.strip().startswith("state file") for line in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, f"serve exited before writing its state: {err.read_text()}"
                lines.append(line)
        served = Served(proc, path, json.loads(path.read_text()), "".join(lines), err)
        yield served
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 30)


@dataclass
class Result:
    rc: int
    out: str
    err: str


async def cli(*args: str, timeout: float = 60) -> Result:  # noqa: ASYNC109
    """``python -m discordsim ARGS``, as a person types it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "discordsim", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env(),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Result(proc.returncode or 0, out.decode(), err.decode())
