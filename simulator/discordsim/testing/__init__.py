"""Helpers that point an unmodified Discord library at a running :class:`~discordsim.app.Simulator`.

One module per library, each with the same two functions:

* ``point_at(sim)``: a context manager that sets the library's API base (and, for
  discord.py, its default gateway URL) to the simulator and restores them on exit.
  py-cord and nextcord find the gateway through ``GET /gateway``, disnake through
  ``GET /gateway/bot``, so the API base is all they need. Nothing else in the library
  is touched (its voice code least of all).
* ``logged_in(sim, client)``: ``point_at`` plus :func:`running`: starts the client with
  the simulator's token, waits for it to be ready (disnake: and for its command sync),
  and closes it on exit.

Import the module of the library installed in the running environment:
:mod:`discordsim.testing.discordpy`, :mod:`discordsim.testing.pycord`,
:mod:`discordsim.testing.nextcord` or :mod:`discordsim.testing.disnake`.
:func:`installed_library` says which one that is.

Also here: :class:`StubVoiceSide` (grants without a voice server, for main-gateway
tests), :mod:`discordsim.testing.rawgateway` (a bare main-gateway client) and
:mod:`discordsim.testing.checks` (assertions the per-library login tests share).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Protocol

from discordsim.world import VoiceGrant

__all__ = ["HELPERS", "StubVoiceSide", "helper_module", "installed_library", "running"]

#: Distribution name -> the module here that points that library at the simulator.
HELPERS = {
    "py-cord": "discordsim.testing.pycord",
    "discord.py": "discordsim.testing.discordpy",
    "nextcord": "discordsim.testing.nextcord",
    "disnake": "discordsim.testing.disnake",
}


class Client(Protocol):
    """What the libraries' ``Client`` classes have in common."""

    async def start(self, token: str) -> None: ...

    async def close(self) -> None: ...

    async def wait_until_ready(self) -> None: ...


def installed_library() -> str | None:
    """``"py-cord"``, ``"discord.py"``, ``"nextcord"``, ``"disnake"`` or None: the
    distribution installed here.

    py-cord and discord.py both install the ``discord`` package, so the distribution
    name is what tells them apart.
    """
    for dist in HELPERS:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        return dist
    return None


def helper_module(distribution: str) -> ModuleType:
    """The pointing helper of ``distribution`` (it imports that library)."""
    if distribution not in HELPERS:
        raise LookupError(
            f"no simulator helper for {distribution!r}: the simulator points "
            f"{', '.join(HELPERS)} at itself"
        )
    return importlib.import_module(HELPERS[distribution])


@contextlib.asynccontextmanager
async def running(
    client: Client, token: str, *, ready_timeout: float = 20.0
) -> AsyncIterator[None]:
    """Run ``client.start(token)`` in a task until the block ends; wait for ready first.

    If the client stops before it is ready (bad token, refused connection), its error is
    raised here. On exit the client is closed and its task awaited, so no task outlives
    the test.
    """
    task = asyncio.create_task(client.start(token), name="discordsim-client")
    ready = asyncio.create_task(client.wait_until_ready(), name="discordsim-client-ready")
    try:
        async with asyncio.timeout(ready_timeout):
            await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises the client's own error
            raise RuntimeError("the client stopped before it was ready")
        yield
    finally:
        ready.cancel()
        with contextlib.suppress(BaseException):
            await ready
        await client.close()
        try:
            async with asyncio.timeout(10.0):
                await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task


@dataclass
class StubVoiceSide:
    """A stand-in voice side for main-gateway tests: hands out grants, serves nothing.

    Its endpoint (port 1 on loopback) refuses connections, so a library's voice connect
    gets as far as trying the voice endpoint and then fails; the real voice side is
    :mod:`discordsim.voice`.
    """

    endpoint: str = "127.0.0.1:1"
    grants: list[VoiceGrant] = field(default_factory=list)
    #: (session_id, channel_id) of each grant, in order
    sessions: list[tuple[str, int]] = field(default_factory=list)
    revoked: list[tuple[int, int]] = field(default_factory=list)

    def grant(self, guild_id: int, user_id: int, session_id: str, channel_id: int) -> VoiceGrant:
        token = f"stub-voice-token-{len(self.grants)}"
        g = VoiceGrant(guild_id=guild_id, user_id=user_id, endpoint=self.endpoint, token=token)
        self.grants.append(g)
        self.sessions.append((session_id, channel_id))
        return g

    def revoke(self, guild_id: int, user_id: int) -> None:
        self.revoked.append((guild_id, user_id))
