"""The ``native`` transport: a Discord library's own voice client, as a :class:`VoiceLink`.

The library performs the whole handshake inside ``channel.connect()``; notetaker calls it
with the library's own reconnect switched off (``reconnect=False``) so that every
decision still goes through core's :class:`~notetaker.policy.ReconnectPolicy`. The
library's close code is read from the exception it raises (``ConnectionClosed.code`` in
all three libraries).

None of the three libraries can hand notetaker usable audio today (py-cord records noise
under DAVE, discord.py has no built-in receive, nextcord has none at all: see
shared/design/libraries.md), so a native link does not receive: :meth:`set_sink` raises
with the reason and the fix. This transport is what the version matrix measures: does a
given library version get into a voice channel on today's Discord?
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from notetaker import libraries
from notetaker.errors import VoiceClosed, VoiceError, VoiceTimeout
from notetaker.libraries import installed_version
from notetaker.session import Closed, LinkInfo, VoiceEvent, VoiceLink
from notetaker.sink import AudioSink

if TYPE_CHECKING:
    from notetaker.runtime import LibraryKit

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 20.0
#: How often a connected native client is checked for having dropped. The library gives
#: no event for it, so this is the only way to learn of a drop.
WATCH_INTERVAL = 0.5


def close_code_of(exc: BaseException) -> int | None:
    """The voice close code carried by a library exception, if any."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        code = getattr(candidate, "code", None)
        if isinstance(code, int) and code > 0:
            return code
    return None


def native_dave(distribution: str, version: str) -> bool:
    """Whether the library's own voice client offers DAVE: the release has it
    (:mod:`notetaker.libraries`) and what its DAVE needs is installed."""
    known = libraries.BY_DISTRIBUTION.get(distribution)
    if known is None or not known.release(version).dave:
        return False
    needs = known.dave_needs
    return bool(installed_version(needs) or installed_version(needs.replace(".", "-")))


class NativeLink(VoiceLink):
    """One guild's voice through the library's own ``VoiceClient``."""

    def __init__(self, client: Any, guild_id: int, kit: LibraryKit) -> None:
        self.client = client
        self.guild_id = guild_id
        self.kit = kit
        self._channel_id: int | None = None
        self._vc: Any = None
        self._events: asyncio.Queue[VoiceEvent] = asyncio.Queue()
        self._watch: asyncio.Task[None] | None = None

    @property
    def info(self) -> LinkInfo:
        return LinkInfo(
            transport="native",
            library=self.kit.distribution,
            library_version=self.kit.version,
            can_receive=False,
            dave=native_dave(self.kit.distribution, self.kit.version),
            notes=f"{self.kit.distribution}'s own voice client; receive through notetaker "
            "needs transport = engine",
        )

    def _guild(self) -> Any:
        guild = self.client.get_guild(self.guild_id)
        if guild is None:
            raise VoiceError(f"the bot is not in guild {self.guild_id}")
        return guild

    async def request_voice_state(self, channel_id: int | None) -> None:
        # The library sends op 4 itself inside connect(); a leave is sent right away.
        self._channel_id = channel_id
        if channel_id is None:
            await self._guild().change_voice_state(channel=None)

    async def open(self, attempt: int, *, resume: bool) -> None:
        if self._channel_id is None:
            raise VoiceError("no voice channel requested")
        await self.close()
        channel = self._guild().get_channel(self._channel_id)
        if channel is None:
            raise VoiceError(f"no voice channel {self._channel_id} in guild {self.guild_id}")
        try:
            self._vc = await channel.connect(
                cls=self.kit.native_voice_client, reconnect=False, timeout=CONNECT_TIMEOUT
            )
        except TimeoutError as exc:
            await self.force_disconnect()
            raise VoiceTimeout(f"{self.kit.distribution} did not connect to voice in time") from exc
        except Exception as exc:
            code = close_code_of(exc)
            await self.force_disconnect()
            if code is None:
                raise VoiceError(
                    f"{self.kit.distribution} {self.kit.version} failed to connect: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            raise VoiceClosed(code, str(exc), attempt) from exc
        self._watch = asyncio.create_task(self._watch_connection(attempt, self._vc))

    async def _watch_connection(self, attempt: int, vc: Any) -> None:
        while vc.is_connected():  # noqa: ASYNC110 - the library offers no event to await
            await asyncio.sleep(WATCH_INTERVAL)
        ws = getattr(vc, "ws", None)
        code = getattr(ws, "close_code", None) if ws is not None else None
        await self._events.put(Closed(attempt, code if isinstance(code, int) else None))

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        vc, self._vc = self._vc, None
        if vc is not None:
            with contextlib.suppress(Exception):
                await vc.disconnect(force=True)

    async def force_disconnect(self) -> None:
        await self.close()
        guild = self.client.get_guild(self.guild_id)
        if guild is None:
            return
        stale = guild.voice_client
        if stale is not None:
            with contextlib.suppress(Exception):
                await stale.disconnect(force=True)
        with contextlib.suppress(Exception):
            await guild.change_voice_state(channel=None)

    async def events(self) -> AsyncIterator[VoiceEvent]:
        while True:
            yield await self._events.get()

    def set_sink(self, sink: AudioSink | None) -> None:
        if sink is not None:
            raise VoiceError(
                f"{self.kit.distribution}'s own voice client cannot give notetaker the "
                'meeting\'s audio; set transport = "engine" to record'
            )
