"""The voice WebSocket client, version 8 (voice-protocol.md section 2).

:class:`VoiceGateway` is one WebSocket of a voice session
(:class:`~notetaker.voice.session_state.VoiceSessionState`): Identify or Resume as soon
as the socket opens, Ready, IP discovery, Select Protocol, Session Description,
Speaking(0), then heartbeats and server ops until either side closes. Hello only sets the
heartbeat interval, whenever it comes: before Identify as the docs show, or after it, as
some servers send it (field-behaviours.md L2; discord.js, discord.py and songbird send
Identify at open too). Where it is in that sequence is its
:class:`GatewayState`, which changes only through one setter that checks
:data:`TRANSITIONS` and logs one line per transition.

The gateway never reconnects: a close surfaces as a :class:`notetaker.session.Closed`
event (or, during the handshake, as :class:`notetaker.errors.VoiceClosed`) and the
supervisor's policy decides. :meth:`VoiceGateway.handle_text` and
:meth:`VoiceGateway.handle_binary` take anything and never raise: malformed messages are
counted and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeGuard

import aiohttp

from notetaker.errors import VoiceClosed, VoiceError
from notetaker.session import Closed, SpeakerChanged, VoiceEvent
from notetaker.voice.ops import (
    DAVE_OPS,
    OP_CLIENT_DISCONNECT,
    OP_CLIENT_FLAGS,
    OP_CLIENT_PLATFORM,
    OP_CLIENTS_CONNECT,
    OP_HEARTBEAT,
    OP_HEARTBEAT_ACK,
    OP_HELLO,
    OP_IDENTIFY,
    OP_READY,
    OP_RESUME,
    OP_RESUMED,
    OP_SELECT_PROTOCOL,
    OP_SESSION_DESCRIPTION,
    OP_SPEAKING,
    OP_VIDEO,
)
from notetaker.voice.session_state import VoiceSessionState
from notetaker.voice.transport_crypto import KEY_SIZE, choose_mode, cpu_has_aes
from notetaker.voice.udp import VoiceUdp

log = logging.getLogger(__name__)

#: The heartbeat period is min(Hello's interval, this), as the Python libraries do.
MAX_HEARTBEAT_INTERVAL = 5.0
#: Seconds without any message from the server before the connection counts as dropped.
SILENCE_TIMEOUT = 30.0
#: Close code reported for a transport that dropped without a close frame.
ABNORMAL_CLOSE = 1006

_U16 = struct.Struct(">H")


class GatewayState(enum.Enum):
    """Where one voice WebSocket is."""

    IDLE = "idle"  #: created, not connected
    CONNECTING = "connecting"  #: opening the WebSocket
    IDENTIFYING = "identifying"  #: Identify sent (at open), waiting for Ready
    RESUMING = "resuming"  #: Resume sent, waiting for Resumed
    DISCOVERING = "discovering"  #: Ready received, UDP IP discovery running
    SELECTING = "selecting"  #: Select Protocol sent, waiting for Session Description
    READY = "ready"  #: receiving
    CLOSED = "closed"  #: the WebSocket is gone (see ``close_code``)


_G = GatewayState

#: Every legal state change. The one setter refuses anything else (a bug, not an outage).
#: Any state but CLOSED can close (a failed connect, a server close, our close); CLOSED is
#: final because a Resume or a new session opens a new :class:`VoiceGateway`.
TRANSITIONS: Mapping[GatewayState, frozenset[GatewayState]] = MappingProxyType(
    {
        _G.IDLE: frozenset({_G.CONNECTING, _G.CLOSED}),
        _G.CONNECTING: frozenset({_G.IDENTIFYING, _G.RESUMING, _G.CLOSED}),
        _G.IDENTIFYING: frozenset({_G.DISCOVERING, _G.CLOSED}),
        _G.RESUMING: frozenset({_G.READY, _G.CLOSED}),
        _G.DISCOVERING: frozenset({_G.SELECTING, _G.CLOSED}),
        _G.SELECTING: frozenset({_G.READY, _G.CLOSED}),
        _G.READY: frozenset({_G.CLOSED}),
        _G.CLOSED: frozenset(),
    }
)


# -- the WebSocket -----------------------------------------------------------------------

#: Opens the UDP socket of a session: (host, port, feed) -> socket.
UdpOpener = Callable[[str, int, Callable[[bytes, float], None]], Awaitable[VoiceUdp]]


async def open_udp_socket(host: str, port: int, feed: Callable[[bytes, float], None]) -> VoiceUdp:
    """The default :data:`UdpOpener`: a real socket connected to the media address."""
    return await VoiceUdp.open(host, port, feed)


@dataclass
class GatewayCounters:
    """What one WebSocket saw, for stats and logs."""

    received: int = 0
    malformed: int = 0
    unexpected: int = 0
    unknown_ops: int = 0
    handler_errors: int = 0
    heartbeats: int = 0
    acks: int = 0
    last_rtt_ms: float | None = None


class VoiceGateway:
    """One voice WebSocket of a session; see the module docstring.

    ``emit`` gets the events this connection produces (Closed after the handshake,
    SpeakerChanged). ``ssl_context`` None means the default context (production);
    tests pass one that trusts the simulator's CA.
    """

    def __init__(
        self,
        session: VoiceSessionState,
        *,
        attempt: int,
        resume: bool,
        emit: Callable[[VoiceEvent], None],
        ssl_context: ssl.SSLContext | None = None,
        open_udp: UdpOpener = open_udp_socket,
        has_aes: bool | Callable[[], bool] = cpu_has_aes,
        discovery_timeout: float = 5.0,
    ) -> None:
        self.session = session
        self.attempt = attempt
        self.resume = resume
        self._emit = emit
        self._ssl = ssl_context
        self._open_udp = open_udp
        self._has_aes = has_aes
        self._discovery_timeout = discovery_timeout
        self._state = GatewayState.IDLE
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ready: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._heartbeat_interval: float | None = None
        self._last_message = time.monotonic()
        self._closing_by_us = False
        self.counters = GatewayCounters()
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> GatewayState:
        """Where this connection is."""
        return self._state

    def _set_state(self, new: GatewayState, why: str = "") -> None:
        old = self._state
        if old is new:
            return
        if new not in TRANSITIONS[old]:
            raise RuntimeError(
                f"voice gateway guild={self.session.credentials.guild_id} "
                f"attempt={self.attempt}: illegal transition {old} -> {new}"
            )
        self._state = new
        log.info(
            "voice gateway guild=%s attempt=%s: %s -> %s%s",
            self.session.credentials.guild_id,
            self.attempt,
            old.value,
            new.value,
            f" ({why})" if why else "",
        )

    # -- connecting -----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the WebSocket and run the handshake; return once READY.

        Raises :class:`VoiceClosed` if the server closes first, and whatever the handshake
        raised otherwise (:class:`VoiceTimeout` for discovery, :class:`VoiceError`). The
        caller bounds the whole thing with a timeout and calls :meth:`close` on failure.
        """
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._set_state(GatewayState.CONNECTING, str(self.session.credentials.endpoint))
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._http.ws_connect(
                self.session.credentials.endpoint.url,
                ssl=self._ssl if self._ssl is not None else True,
                autoping=True,
                heartbeat=None,
                max_msg_size=1 << 20,
            )
        except (aiohttp.ClientError, OSError) as exc:
            await self._http.close()
            self._set_state(GatewayState.CLOSED, f"connect failed: {type(exc).__name__}")
            self.closed.set()
            raise VoiceClosed(ABNORMAL_CLOSE, f"cannot connect: {exc}", self.attempt) from exc
        self._last_message = time.monotonic()
        await self._on_open()
        self._reader = asyncio.create_task(self._read())
        await self._ready

    async def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        reason = ""
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    await self.handle_text(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    await self.handle_binary(msg.data)
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")
                    break
                elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    break
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    reason = f"transport error: {msg.data!r}"
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let the reader die silently
            reason = f"reader failed: {exc!r}"
            log.exception("voice gateway reader failed")
        if not ws.closed:
            await ws.close()
        await self._finish(ws.close_code, reason)

    async def _finish(self, code: int | None, reason: str) -> None:
        if self._state is GatewayState.CLOSED:
            return
        by_us = self._closing_by_us
        self.close_code = code
        self.close_reason = reason
        was_ready = self._state is GatewayState.READY
        self._set_state(GatewayState.CLOSED, f"code {code}" + (f": {reason}" if reason else ""))
        self._stop_tasks()
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(
                VoiceClosed(code if code is not None else ABNORMAL_CLOSE, reason, self.attempt)
            )
        elif was_ready and not by_us:
            self._emit(Closed(self.attempt, code, reason))
        self.closed.set()
        if self._http is not None:
            await self._http.close()

    def _stop_tasks(self) -> None:
        for task in (self._heartbeat, *self._tasks):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._tasks.clear()
        self._heartbeat = None

    async def close(self, code: int = 1000) -> None:
        """Close the WebSocket (no Closed event: the caller asked). Idempotent."""
        self._closing_by_us = True
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=code)
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(reader), timeout=5.0)
            except (TimeoutError, asyncio.CancelledError):
                reader.cancel()
        await self._finish(code if ws is not None else None, "closed by client")
        ready = self._ready
        if ready is not None and ready.done() and not ready.cancelled():
            ready.exception()  # retrieved: the caller already knows the handshake ended

    def _fail_handshake(self, exc: BaseException) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending --------------------------------------------------------------------------

    async def send_json(self, op: int, d: Any) -> None:
        """Send ``{"op", "d"}`` (dropped if the WebSocket is not open)."""
        ws = self._ws
        if ws is None or ws.closed:
            return
        try:
            await ws.send_str(json.dumps({"op": op, "d": d}))
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            log.debug("voice gateway: send op %s failed: %r", op, exc)

    async def send_binary(self, op: int, payload: bytes) -> None:
        """Send a client binary frame ``[u8 op][payload]``."""
        ws = self._ws
        if ws is None or ws.closed:
            return
        try:
            await ws.send_bytes(bytes([op]) + payload)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            log.debug("voice gateway: send binary op %s failed: %r", op, exc)

    # -- receiving ------------------------------------------------------------------------

    async def handle_text(self, data: Any) -> None:
        """Handle one text frame. Never raises (malformed input is counted and dropped)."""
        self.counters.received += 1
        self._last_message = time.monotonic()
        try:
            msg = json.loads(data)
        except (ValueError, TypeError, RecursionError):
            self._malformed("not JSON")
            return
        if not isinstance(msg, dict):
            self._malformed("not an object")
            return
        op = msg.get("op")
        if not _is_int(op):
            self._malformed("no integer op")
            return
        seq = msg.get("seq")
        if _is_int(seq):
            self.session.seq = seq
        await self._dispatch(op, msg.get("d"))

    async def handle_binary(self, data: Any) -> None:
        """Handle one binary frame ``[u16 seq][u8 op][payload]``. Never raises."""
        self.counters.received += 1
        self._last_message = time.monotonic()
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 3:
            self._malformed("binary frame shorter than 3 bytes")
            return
        raw = bytes(data)
        self.session.seq = _U16.unpack_from(raw)[0]
        op = raw[2]
        if op not in DAVE_OPS:
            self.counters.unknown_ops += 1
            log.debug("voice gateway: binary op %s ignored", op)
            return
        await self._guard(op, self.session.dave.on_binary(op, raw[3:]))

    def _malformed(self, what: str) -> None:
        self.counters.malformed += 1
        log.debug("voice gateway: malformed message dropped (%s)", what)

    async def _guard(self, op: int, coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.counters.handler_errors += 1
            log.warning("voice gateway: handling op %s failed: %r", op, exc)

    async def _dispatch(self, op: int, d: Any) -> None:
        handler = _HANDLERS.get(op)
        if handler is not None:
            await self._guard(op, handler(self, d))
        elif op in DAVE_OPS:
            await self._guard(op, self.session.dave.on_json(op, d))
        else:
            self.counters.unknown_ops += 1
            log.debug("voice gateway: op %s ignored", op)

    def _unexpected(self, op: int) -> None:
        self.counters.unexpected += 1
        log.debug("voice gateway: op %s unexpected in state %s", op, self._state.value)

    # -- handshake ------------------------------------------------------------------------

    async def _on_open(self) -> None:
        """The socket is open: Identify (or Resume) at once, without waiting for Hello."""
        creds = self.session.credentials
        self.session.dave.bind(self)
        if self.resume:
            self._set_state(GatewayState.RESUMING, f"seq_ack {self.session.seq}")
            await self.send_json(
                OP_RESUME,
                {
                    "server_id": str(creds.guild_id),
                    "session_id": creds.session_id,
                    "token": creds.token,
                    "seq_ack": self.session.seq,
                },
            )
        else:
            self._set_state(GatewayState.IDENTIFYING)
            await self.send_json(
                OP_IDENTIFY,
                {
                    "server_id": str(creds.guild_id),
                    "user_id": str(creds.user_id),
                    "session_id": creds.session_id,
                    "token": creds.token,
                    "max_dave_protocol_version": self.session.dave.max_protocol_version,
                },
            )

    async def _on_hello(self, d: Any) -> None:
        # Any time after open, once: before Identify is answered or after (hello-late).
        if self._state is GatewayState.CLOSED or self._heartbeat_interval is not None:
            self._unexpected(OP_HELLO)
            return
        interval = _get(d, "heartbeat_interval", (int, float))
        if interval is None or not 0 < interval < 1e9:
            self._malformed("Hello without a heartbeat_interval")
            interval = MAX_HEARTBEAT_INTERVAL * 1000
        self._heartbeat_interval = min(float(interval) / 1000, MAX_HEARTBEAT_INTERVAL)
        log.debug(
            "voice gateway guild=%s attempt=%s: Hello in state %s, heartbeat every %.2f s",
            self.session.credentials.guild_id,
            self.attempt,
            self._state.value,
            self._heartbeat_interval,
        )
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._heartbeat_loop(self._heartbeat_interval))

    async def _on_ready(self, d: Any) -> None:
        if self._state is not GatewayState.IDENTIFYING:
            self._unexpected(OP_READY)
            return
        ssrc = _get(d, "ssrc", int)
        ip = _get(d, "ip", str)
        port = _get(d, "port", int)
        modes = _get(d, "modes", list)
        if ssrc is None or not 0 <= ssrc < 1 << 32 or ip is None or port is None:
            self._malformed("Ready without ssrc/ip/port")
            self._fail_handshake(VoiceError("the voice server sent a malformed Ready (op 2)"))
            return
        if not 0 < port < 65536:
            self._fail_handshake(VoiceError(f"the voice server sent UDP port {port} in Ready"))
            return
        offered = [m for m in modes or [] if isinstance(m, str)]
        self.session.ssrc = ssrc
        self.session.media_address = (ip, port)
        self._set_state(GatewayState.DISCOVERING, f"ssrc {ssrc}, media {ip}:{port}")
        self._spawn(self._discover_and_select(ip, port, ssrc, offered))

    async def _discover_and_select(self, ip: str, port: int, ssrc: int, modes: list[str]) -> None:
        try:
            mode = choose_mode(modes, has_aes=self._has_aes)
            session = self.session
            if session.udp is not None:  # a previous attempt of this session got this far
                await session.udp.close()
            session.udp = await self._open_udp(ip, port, session.feed)
            address, local_port = await session.udp.discover(ssrc, self._discovery_timeout)
        except asyncio.CancelledError:
            raise
        except (VoiceError, OSError, ValueError) as exc:
            self._fail_handshake(
                exc if isinstance(exc, VoiceError) else VoiceError(f"voice UDP failed: {exc}")
            )
            return
        self._set_state(GatewayState.SELECTING, f"{mode}, seen as {address}:{local_port}")
        await self.send_json(
            OP_SELECT_PROTOCOL,
            {"protocol": "udp", "data": {"address": address, "port": local_port, "mode": mode}},
        )

    async def _on_session_description(self, d: Any) -> None:
        if self._state is not GatewayState.SELECTING:
            self._unexpected(OP_SESSION_DESCRIPTION)
            return
        mode = _get(d, "mode", str)
        key = _get(d, "secret_key", list)
        if (
            mode is None
            or key is None
            or len(key) != KEY_SIZE
            or not all(_is_int(b) and 0 <= b < 256 for b in key)
        ):
            self._malformed("Session Description without mode/secret_key")
            self._fail_handshake(
                VoiceError("the voice server sent a malformed Session Description")
            )
            return
        dave_version = _get(d, "dave_protocol_version", int) or 0
        session = self.session
        try:
            session.install_key(mode, bytes(key))
        except (VoiceError, ValueError) as exc:
            self._fail_handshake(VoiceError(f"cannot use the session key: {exc}"))
            return
        session.dave_protocol_version = dave_version
        await session.dave.on_session_description(dave_version)
        # Speaking(0) registers our SSRC; media before any op 5 risks a disconnect.
        await self.send_json(OP_SPEAKING, {"speaking": 0, "delay": 0, "ssrc": session.ssrc})
        if session.udp is not None:
            session.udp.start_keepalive()
        session.established = True
        if self.closed.is_set():
            return  # the socket closed while DAVE or the send ran, and CLOSED is final
        self._set_state(GatewayState.READY, f"mode {mode}, dave {dave_version}")
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    async def _on_resumed(self, d: Any) -> None:
        if self._state is not GatewayState.RESUMING:
            self._unexpected(OP_RESUMED)
            return
        self._set_state(GatewayState.READY, "resumed")
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    # -- heartbeats -----------------------------------------------------------------------

    async def _heartbeat_loop(self, interval: float) -> None:
        while True:
            if time.monotonic() - self._last_message > SILENCE_TIMEOUT:
                log.warning(
                    "voice gateway guild=%s: nothing from the server for %.0f s; dropping",
                    self.session.credentials.guild_id,
                    SILENCE_TIMEOUT,
                )
                self._spawn(self._drop("no heartbeat ACK"))
                return
            await self._send_heartbeat()
            await asyncio.sleep(interval)

    async def _send_heartbeat(self) -> None:
        self.counters.heartbeats += 1
        await self.send_json(
            OP_HEARTBEAT, {"t": int(time.time() * 1000), "seq_ack": self.session.seq}
        )

    async def _drop(self, reason: str) -> None:
        # The server went silent: treat it as a dropped transport (code None).
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=4000)
        await self._finish(None, reason)

    async def _on_heartbeat_ack(self, d: Any) -> None:
        self.counters.acks += 1
        sent = _get(d, "t", (int, float)) if isinstance(d, dict) else d
        if _is_number(sent) and abs(sent) < 1e15:
            self.counters.last_rtt_ms = max(0.0, time.time() * 1000 - float(sent))

    async def _on_heartbeat_request(self, d: Any) -> None:
        await self._send_heartbeat()

    # -- roster ---------------------------------------------------------------------------

    async def _on_speaking(self, d: Any) -> None:
        ssrc = _get(d, "ssrc", int)
        user_id = _snowflake(_get(d, "user_id", (str, int)))
        if ssrc is None or user_id is None or not 0 <= ssrc < 1 << 32:
            self._malformed("Speaking without ssrc/user_id")
            return
        self._map(ssrc, user_id)

    async def _on_video(self, d: Any) -> None:
        ssrc = _get(d, "audio_ssrc", int)
        user_id = _snowflake(_get(d, "user_id", (str, int)))
        if ssrc is None or user_id is None or not 0 < ssrc < 1 << 32:
            return  # audio_ssrc 0: the user has no audio stream
        self._map(ssrc, user_id)

    def _map(self, ssrc: int, user_id: int) -> None:
        if ssrc == self.session.ssrc:
            return  # our own SSRC echoed back
        if self.session.map_ssrc(ssrc, user_id):
            self.session.present.add(user_id)
            self._emit(SpeakerChanged(self.attempt, user_id, ssrc))

    async def _on_clients_connect(self, d: Any) -> None:
        raw = _get(d, "user_ids", list)
        if raw is None:
            self._malformed("Clients Connect without user_ids")
            return
        users = [u for u in (_snowflake(x) for x in raw) if u is not None]
        self.session.present.update(users)
        await self.session.dave.on_clients_connect(users)

    async def _on_client_disconnect(self, d: Any) -> None:
        user_id = _snowflake(_get(d, "user_id", (str, int)))
        if user_id is None:
            self._malformed("Client Disconnect without user_id")
            return
        if self.session.forget_user(user_id):
            self._emit(SpeakerChanged(self.attempt, user_id, None))
        await self.session.dave.on_client_disconnect(user_id)

    async def _on_ignored(self, d: Any) -> None:
        return None  # ops 18/20 (client flags, platform): nothing to do for receive

    def stats(self) -> dict[str, Any]:
        """Counters of this WebSocket."""
        c = self.counters
        return {
            "state": self._state.value,
            "received": c.received,
            "malformed": c.malformed,
            "unexpected": c.unexpected,
            "unknown_ops": c.unknown_ops,
            "handler_errors": c.handler_errors,
            "heartbeats": c.heartbeats,
            "acks": c.acks,
            "rtt_ms": c.last_rtt_ms,
            "close_code": self.close_code,
        }


_Handler = Callable[[VoiceGateway, Any], Coroutine[Any, Any, None]]

_HANDLERS: dict[int, _Handler] = {
    OP_READY: VoiceGateway._on_ready,
    OP_HEARTBEAT: VoiceGateway._on_heartbeat_request,
    OP_SESSION_DESCRIPTION: VoiceGateway._on_session_description,
    OP_SPEAKING: VoiceGateway._on_speaking,
    OP_HEARTBEAT_ACK: VoiceGateway._on_heartbeat_ack,
    OP_HELLO: VoiceGateway._on_hello,
    OP_RESUMED: VoiceGateway._on_resumed,
    OP_CLIENTS_CONNECT: VoiceGateway._on_clients_connect,
    OP_VIDEO: VoiceGateway._on_video,
    OP_CLIENT_DISCONNECT: VoiceGateway._on_client_disconnect,
    OP_CLIENT_FLAGS: VoiceGateway._on_ignored,
    OP_CLIENT_PLATFORM: VoiceGateway._on_ignored,
}


# -- payload helpers ---------------------------------------------------------------------


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and value == value


def _get(d: Any, key: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
    """``d[key]`` if ``d`` is a dict and the value has type ``kind`` (bools are not ints)."""
    if not isinstance(d, dict):
        return None
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        return None
    return value


def _snowflake(value: Any) -> int | None:
    """A user id from a JSON string or int; None if it is not a positive 64-bit number."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    elif _is_int(value):
        number = value
    else:
        return None
    return number if 0 < number < 1 << 64 else None
