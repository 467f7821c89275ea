"""Real ``notetaker run`` processes against a simulator in the test process.

The bot is started as a user starts it — the ``notetaker`` script of this environment,
settings from ``NOTETAKER_*`` variables only, the simulator reached through
``NOTETAKER_DISCORD_API_BASE`` / ``NOTETAKER_DISCORD_GATEWAY_URL`` and the voice CA
through ``SSL_CERT_FILE`` — and stopped with real signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BACKEND = os.environ.get("NOTETAKER_TEST_BACKEND")

#: A guard against a hung child, never a timing assertion.
WAIT_S = 120.0
MANAGE_GUILD = 1 << 5


@dataclass
class BotProcess:
    """One ``notetaker run`` child; its output (stdout and stderr together) is collected
    line by line so a test can wait for what it prints."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, env: dict[str, str]) -> BotProcess:
        script = Path(sys.executable).with_name("notetaker")
        proc = await asyncio.create_subprocess_exec(
            str(script),
            "run",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        bot = cls(proc)
        bot._reader = asyncio.create_task(bot._read())
        return bot

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_line(self, pattern: str, *, count: int = 1) -> list[str]:
        """The first ``count`` lines matching ``pattern``, once the child has printed them."""
        regex = re.compile(pattern)
        async with asyncio.timeout(WAIT_S):
            while True:
                found = [ln for ln in self.lines if regex.search(ln)]
                if len(found) >= count:
                    return found[:count]
                if self.proc.returncode is not None and self._reader and self._reader.done():
                    raise AssertionError(
                        f"notetaker run exited ({self.proc.returncode}) before printing "
                        f"{pattern!r}:\n{self.output}"
                    )
                self._changed.clear()
                await self._changed.wait()

    async def exit_code(self) -> int:
        async with asyncio.timeout(WAIT_S):
            rc = await self.proc.wait()
            if self._reader is not None:
                await self._reader
        return rc

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


@dataclass
class Box:
    """What a process test gets: the world, the CA bundle and the child's environment."""

    world: Any
    ca: Any
    organiser: Any
    env: dict[str, str]
    tmp: Path

    def bot_env(
        self, sim: Any | None = None, *, api_base: str | None = None, **extra: str
    ) -> dict[str, str]:
        env = dict(self.env)
        env["NOTETAKER_DISCORD_API_BASE"] = api_base or sim.api_base
        if sim is not None:
            env["NOTETAKER_DISCORD_GATEWAY_URL"] = sim.gateway_url
            env["NOTETAKER_TOKEN"] = sim.token
        env.update(extra)
        return env


@pytest.fixture
def box(tmp_path: Path) -> Box:
    from discordsim.tls import TestCA
    from discordsim.world import VoiceStateRec, World

    world = World.default()
    organiser = world.user("alice")
    role = world.add_role("organisers", MANAGE_GUILD)
    world.give_role(organiser, role)
    world.voice_states[organiser.id] = VoiceStateRec(
        organiser.id, world.voice_channel.id, "alice-sess"
    )
    ca = TestCA()
    bundle = ca.write_bundle(tmp_path / "ca-bundle.pem")
    cache = tmp_path / "cache"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "SSL_CERT_FILE": str(bundle),
        "NOTETAKER_BACKEND": BACKEND or "",
        "NOTETAKER_DATA_DIR": str(tmp_path / "data"),
        "NOTETAKER_MODEL": "tiny.en",
        "NOTETAKER_LOG_LEVEL": "INFO",
        "NOTETAKER_RECORDING_NICKNAME_PREFIX": "",
        "NOTETAKER_POLICY__BASE_DELAY": "0.05",
        "NOTETAKER_POLICY__MAX_DELAY": "0.2",
        "NOTETAKER_GUILD_READY_TIMEOUT_S": "0.05",  # the simulator has one guild
        "HF_HUB_OFFLINE": "1",
        "XDG_CACHE_HOME": str(cache),
        "MPLCONFIGDIR": str(cache / "mpl"),
        "PYTHONUNBUFFERED": "1",
    }
    return Box(world, ca, organiser, env, tmp_path)


@contextlib.asynccontextmanager
async def bot_process(env: dict[str, str]) -> AsyncIterator[BotProcess]:
    """A ``notetaker run`` child, killed on the way out if the test left it running."""
    bot = await BotProcess.start(env)
    try:
        yield bot
    finally:
        await bot.kill()


@pytest.fixture
def launch() -> Any:
    """``async with launch(env) as bot:`` — a ``notetaker run`` child (see :class:`BotProcess`)."""
    return bot_process
