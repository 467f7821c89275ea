"""One voice session: what a Resume keeps and a new session replaces.

:class:`VoiceSessionState` holds the credentials, SSRC, UDP socket, key, receive pipeline,
SSRC map and last ``seq`` of one voice session, across however many WebSockets
(:class:`notetaker.voice.gateway.VoiceGateway`) it takes. Identify creates one; Resume
reuses it (same SSRC, key and socket); a new session closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from notetaker.logs import register_secret
from notetaker.voice.adapter import Endpoint
from notetaker.voice.dave_hook import DaveHandler
from notetaker.voice.pipeline import ReceivePipeline
from notetaker.voice.sink_switch import SinkSwitch
from notetaker.voice.transport_crypto import make_cipher
from notetaker.voice.udp import VoiceUdp

log = logging.getLogger(__name__)

#: Datagrams kept while the key is not known yet (media can beat op 4 on loopback).
EARLY_DATAGRAMS = 500
#: Seconds between jitter-buffer clock ticks.
TICK_INTERVAL = 0.02


@dataclass(frozen=True, slots=True)
class VoiceCredentials:
    """What the main gateway's two voice dispatches gave us for one voice state."""

    guild_id: int
    user_id: int
    channel_id: int | None
    session_id: str
    token: str
    endpoint: Endpoint

    def __repr__(self) -> str:  # the token must not end up in a log through a repr
        return (
            f"VoiceCredentials(guild_id={self.guild_id}, user_id={self.user_id}, "
            f"channel_id={self.channel_id}, endpoint={self.endpoint})"
        )


@dataclass(eq=False)
class VoiceSessionState:
    """One voice session, kept across Resumes. ``seq`` is the last server seq seen."""

    credentials: VoiceCredentials
    sink: SinkSwitch
    dave: DaveHandler = field(default_factory=DaveHandler)
    ssrc: int | None = None
    media_address: tuple[str, int] | None = None
    mode: str | None = None
    dave_protocol_version: int = 0
    seq: int = -1
    udp: VoiceUdp | None = None
    pipeline: ReceivePipeline | None = None
    #: ssrc -> user id, from op 5 and op 12
    speakers: dict[int, int] = field(default_factory=dict)
    #: users in the call (op 11 minus op 13)
    present: set[int] = field(default_factory=set)
    #: Session Description has been received once: the session can be resumed
    established: bool = False
    started: float = field(default_factory=time.monotonic)
    _early: deque[tuple[bytes, float]] = field(default_factory=deque)
    _early_dropped: int = 0
    _ticker: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        register_secret(self.credentials.token)

    # media path ------------------------------------------------------------------------

    def feed(self, datagram: bytes, arrival: float) -> None:
        """What the UDP socket calls for every datagram after discovery."""
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.feed(datagram, arrival)
        elif len(self._early) < EARLY_DATAGRAMS:
            self._early.append((datagram, arrival))
        else:
            self._early_dropped += 1

    def install_key(self, mode: str, key: bytes) -> None:
        """Session Description: start (or re-key) the pipeline, replaying early media."""
        cipher = make_cipher(mode, key)
        self.mode = mode
        if self.pipeline is not None:
            self.pipeline.set_cipher(cipher)
            return
        pipeline = ReceivePipeline(cipher, self.sink, self.dave.decryptor)
        for ssrc, user_id in self.speakers.items():
            pipeline.map_ssrc(ssrc, user_id)
        self.pipeline = pipeline
        while self._early:
            pipeline.feed(*self._early.popleft())
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        # Holes in a jitter buffer time out on the clock, not only on the next packet.
        while self.pipeline is not None:
            due = time.monotonic() + TICK_INTERVAL
            await asyncio.sleep(TICK_INTERVAL)
            now = time.monotonic()
            if now - due > TICK_INTERVAL:
                # The loop stalled: datagrams that queued up meanwhile are read one per
                # loop turn, so judging holes now would call packets that are there lost.
                continue
            if self.pipeline is not None:
                self.pipeline.tick(now)

    def map_ssrc(self, ssrc: int, user_id: int) -> bool:
        """Record that ``ssrc`` is ``user_id``'s; True if that is news."""
        if self.speakers.get(ssrc) == user_id:
            return False
        self.speakers[ssrc] = user_id
        if self.pipeline is not None:
            self.pipeline.map_ssrc(ssrc, user_id)
        return True

    def forget_user(self, user_id: int) -> bool:
        """``user_id`` left; True if they had an SSRC."""
        self.present.discard(user_id)
        gone = [s for s, u in self.speakers.items() if u == user_id]
        for ssrc in gone:
            del self.speakers[ssrc]
        if self.pipeline is not None:
            self.pipeline.forget_user(user_id)
        return bool(gone)

    def stats(self) -> dict[str, Any]:
        """Receive counters of this session (JSON-friendly)."""
        out: dict[str, Any] = {
            "ssrc": self.ssrc,
            "mode": self.mode,
            "dave_protocol_version": self.dave_protocol_version,
            "speakers": len(self.speakers),
            "early_dropped": self._early_dropped,
        }
        if self.udp is not None:
            out["udp"] = {
                "received": self.udp.received,
                "sent": self.udp.sent,
                "feed_errors": self.udp.feed_errors,
            }
        if self.pipeline is not None:
            out["receive"] = self.pipeline.stats.snapshot()
        return out

    async def close(self) -> None:
        """End the session: stop UDP, flush the pipeline, log its statistics once."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self.udp is not None:
            await self.udp.close()
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            pipeline.close()
            log.info(
                "voice session ended guild=%s ssrc=%s mode=%s after %.0f s: %s",
                self.credentials.guild_id,
                self.ssrc,
                self.mode,
                time.monotonic() - self.started,
                pipeline.stats.summary(),
            )
