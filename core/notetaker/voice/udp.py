"""The voice UDP socket: IP discovery, then every datagram into the receive pipeline.

One :class:`VoiceUdp` lives as long as a voice session: a Resume keeps it (same SSRC, key
and address), a new session opens a new one. Until discovery has answered, the only
datagrams that matter are discovery responses; Discord sends no media before (section
4.1). After that every datagram goes to ``feed`` with its arrival time, and an 8-byte
keepalive goes out every 5 seconds so NATs keep the mapping open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable
from typing import cast

from notetaker.errors import MalformedPacket, VoiceTimeout
from notetaker.voice.discovery import build_request, parse_discovery_reply

log = logging.getLogger(__name__)

#: Seconds between keepalives (what discord.js sends).
KEEPALIVE_INTERVAL = 5.0
#: Seconds between repeated discovery requests (UDP may lose the first).
DISCOVERY_RETRY = 1.0

#: The first bytes of a discovery response: u16 type 2. RTP and RTCP start 0x80/0x90.
_REPLY_PREFIX = b"\x00\x02"

#: ``feed(datagram, arrival)``; must not raise (the pipeline counts what it drops).
Feed = Callable[[bytes, float], None]


class VoiceUdp(asyncio.DatagramProtocol):
    """The asyncio protocol of a voice session's UDP socket."""

    def __init__(self, feed: Feed, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._feed = feed
        self._clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._discovery: asyncio.Future[tuple[str, int]] | None = None
        self._discovery_ssrc: int | None = None
        #: Why the last discovery reply was rejected (for the timeout's message).
        self.discovery_rejected: str | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._keepalive_count = 0
        self.remote: tuple[str, int] | None = None
        self.received = 0
        self.sent = 0
        self.feed_errors = 0
        self.closed = asyncio.Event()

    @classmethod
    async def open(
        cls, host: str, port: int, feed: Feed, *, clock: Callable[[], float] = time.monotonic
    ) -> VoiceUdp:
        """Open a socket connected to the voice server's media address ``host:port``."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: cls(feed, clock=clock), remote_addr=(host, port)
        )
        protocol.remote = (host, port)
        return protocol

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received += 1
        arrival = self._clock()
        waiter = self._discovery
        if waiter is not None and not waiter.done() and data[:2] == _REPLY_PREFIX:
            self._discovery_answer(data, waiter)
            return
        try:
            self._feed(data, arrival)
        except Exception:  # the pipeline promises not to raise; never let it kill the socket
            self.feed_errors += 1
            log.exception("voice udp: the receive pipeline raised; datagram dropped")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the next datagram may well get through.
        log.debug("voice udp: socket error %r", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._discovery is not None and not self._discovery.done():
            self._discovery.set_exception(VoiceTimeout("voice udp socket closed during discovery"))
        self.closed.set()

    # -- discovery ----------------------------------------------------------------------

    def _discovery_answer(self, data: bytes, waiter: asyncio.Future[tuple[str, int]]) -> None:
        # As lenient as discord.js (field-behaviours.md L1): type 2 and an IPv4 address.
        try:
            packet = parse_discovery_reply(data)
        except MalformedPacket as exc:
            self.discovery_rejected = str(exc)
            log.warning("voice udp: discovery reply rejected: %s", exc)
            return
        if packet.ssrc != self._discovery_ssrc:
            log.debug(
                "voice udp: discovery reply carries SSRC %s, not ours (%s); accepted",
                packet.ssrc,
                self._discovery_ssrc,
            )
        waiter.set_result((packet.address, packet.port))

    async def discover(self, ssrc: int, limit: float) -> tuple[str, int]:
        """IP discovery (section 4.1): the address and port the server saw us at.

        Resends the request every second until a usable response arrives (its SSRC need
        not be ``ssrc``: some servers send 0); raises :class:`VoiceTimeout` after ``limit``
        seconds, naming why the last reply was rejected if one was.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[str, int]] = loop.create_future()
        self._discovery = waiter
        self._discovery_ssrc = ssrc
        request = build_request(ssrc)
        try:
            async with asyncio.timeout(limit):
                while True:
                    self.send(request)
                    done, _ = await asyncio.wait({waiter}, timeout=DISCOVERY_RETRY)
                    if done:
                        return waiter.result()
        except TimeoutError:
            why = self.discovery_rejected
            raise VoiceTimeout(
                f"no IP discovery reply within {limit:g} s"
                + (f" (the last one was rejected: {why})" if why else "")
            ) from None
        finally:
            self._discovery = None
            if not waiter.done():
                waiter.cancel()

    # -- sending ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send one datagram to the voice server (dropped silently once closed)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data)
            self.sent += 1

    def start_keepalive(self, interval: float = KEEPALIVE_INTERVAL) -> None:
        """Send an 8-byte keepalive every ``interval`` seconds until closed."""
        if self._keepalive is None:
            self._keepalive = asyncio.create_task(self._keepalive_loop(interval))

    async def _keepalive_loop(self, interval: float) -> None:
        while self._transport is not None:
            # discord.js's shape: u32 LE counter then four zero bytes.
            self.send(struct.pack("<I4x", self._keepalive_count & 0xFFFFFFFF))
            self._keepalive_count += 1
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Stop the keepalive and close the socket."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
            self._keepalive = None
        if self._transport is not None:
            self._transport.close()
            await self.closed.wait()
