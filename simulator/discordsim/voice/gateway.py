"""The voice WebSocket gateway (voice-protocol.md §2-3), one handler per connection.

A :class:`VoiceSession` is what Identify creates and Resume re-attaches: SSRC, key, mode,
the sequenced-message buffer and the UDP address outlive any one WebSocket. The handler
(:func:`serve_connection`) runs one WebSocket: Hello, then ops until either side closes.
Behaviour that differs between scenarios is read from ``server.scenario`` fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import struct
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from discordsim.record import fingerprint
from discordsim.voice.crypto import TransportCipher
from discordsim.voice.dave import DAVE_CLIENT_OPS

if TYPE_CHECKING:
    from discordsim.voice.server import Listener, VoiceServer

# Ops whose messages carry ``seq`` on v8 and are replayed on resume. Hello, Ready, op 4,
# heartbeat ACKs and Resumed look unsequenced in real logs (UNCONFIRMED, §2.4).
SEQUENCED_OPS = frozenset({5, 11, 12, 13, 18, 20, 21, 22, 24})
# Closes after which the session cannot be resumed.
FINAL_CLOSES = frozenset({1000, 4004, 4006, 4009, 4014, 4016, 4017, 4022})


class CloseConnection(Exception):
    """Raised inside the handler to close the WebSocket with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


@dataclass
class _Buffered:
    n: int  #: position in the session's stream (never wraps)
    message: str | bytes  #: the JSON text or binary frame, as sent


@dataclass
class VoiceSession:
    """One identified voice connection; survives WebSocket drops until resumed or expired."""

    server: VoiceServer
    conn_id: str
    guild_id: int
    user_id: int
    session_id: str
    token: str
    channel_id: int
    version: int
    dave_version: int
    ssrc: int
    ws: web.WebSocketResponse | None = None
    cipher: TransportCipher | None = None
    select_addr: tuple[str, int] | None = None
    observed_addr: tuple[str, int] | None = None
    live: bool = False
    ended: bool = False
    #: users this client was told about with op 11 (and not op 13 since)
    known_users: set[int] = field(default_factory=set)
    #: SSRCs this client was told about with op 5
    announced: set[int] = field(default_factory=set)
    #: packets sent to this client per SSRC before its op 5 (the op5-late scenario)
    unannounced: dict[int, int] = field(default_factory=dict)
    speaking_registered: bool = False
    media_session_id: str = field(default_factory=lambda: secrets.token_hex(16))
    _n: int = -1
    _delivered: int = -1
    _buffer: deque[_Buffered] = field(default_factory=deque)
    _evicted: bool = False
    dropped_at: float | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: the client's decrypted audio: (seq, timestamp, opus) in arrival order
    received: list[tuple[int, int, bytes]] = field(default_factory=list)
    rtp_in: int = 0
    highest_seq: int = -1
    #: media held back by the reorder model, sent after the next packet
    held: bytes | None = None
    #: the code the server last closed this session's WebSocket with
    server_close: int | None = None

    @property
    def udp_addr(self) -> tuple[str, int] | None:
        """Where media goes: the address seen in discovery, else the Select Protocol one."""
        return self.observed_addr or self.select_addr

    @property
    def sequenced(self) -> bool:
        return self.version >= 8

    async def send(self, op: int, d: Any) -> None:
        """Send a JSON op; sequenced ops are numbered (v8) and kept for replay."""
        msg: dict[str, Any] = {"op": op, "d": d}
        if op in SEQUENCED_OPS:
            self._n += 1
            if self.sequenced:
                msg["seq"] = self._n & 0xFFFF
            text = json.dumps(msg)
            self._buffer.append(_Buffered(self._n, text))
            while len(self._buffer) > self.server.scenario.replay_buffer:
                self._buffer.popleft()
                self._evicted = True
        else:
            text = json.dumps(msg)
        self.server.record.add(
            "voice.send", conn=self.conn_id, op=op, d=_redact(op, d), seq=msg.get("seq")
        )
        await self._write(text, self._n if op in SEQUENCED_OPS else None)

    async def send_binary(self, op: int, payload: bytes) -> None:
        """Send a binary frame ``[u16 seq][u8 op][payload]`` (DAVE ops 25, 27, 29, 30).

        Binary frames always carry a seq, from the same counter as JSON messages, and are
        replayed on resume like them.
        """
        self._n += 1
        frame = struct.pack(">HB", self._n & 0xFFFF, op) + payload
        self._buffer.append(_Buffered(self._n, frame))
        while len(self._buffer) > self.server.scenario.replay_buffer:
            self._buffer.popleft()
            self._evicted = True
        self.server.record.add(
            "voice.send", conn=self.conn_id, op=op, binary=len(payload), seq=self._n & 0xFFFF
        )
        await self._write(frame, self._n)

    async def _write(self, message: str | bytes, n: int | None) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            return  # buffered (if sequenced) for the resume
        try:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
        except (ConnectionError, RuntimeError):
            return
        if n is not None:
            self._delivered = max(self._delivered, n)

    async def replay(self, seq_ack: int | None) -> int:
        """Resend the buffered messages after ``seq_ack``; returns how many were sent."""
        start = self._delivered
        if seq_ack is not None and seq_ack >= 0:
            match = [b.n for b in self._buffer if (b.n & 0xFFFF) == seq_ack]
            if match:
                start = match[-1]
            elif self._evicted:
                raise CloseConnection(4006, "resume gap no longer buffered")
        elif self.sequenced and seq_ack is not None and not self._evicted:
            start = -1  # the client saw nothing yet
        pending = [b for b in self._buffer if b.n > start]
        for b in pending:
            await self._write(b.message, b.n)
        return len(pending)

    async def close(self, code: int, reason: str) -> None:
        """Close the current WebSocket, if any, with ``code``."""
        ws = self.ws
        if ws is not None and not ws.closed:
            self.server_close = code
            self.server.record.add("voice.close", conn=self.conn_id, code=code, by="server")
            await ws.close(code=code, message=reason.encode())

    def end(self) -> None:
        """Forget the session for good: no resume, no more media."""
        if self.ended:
            return
        self.ended = True
        self.live = False
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.server.sessions_ended(self)


def _redact(op: int, d: Any) -> Any:
    """Op data fit for the record: tokens fingerprinted, the secret key dropped."""
    if isinstance(d, dict):
        out = dict(d)
        if "token" in out and isinstance(out["token"], str):
            out["token"] = fingerprint(out["token"])
        out.pop("secret_key", None)
        return out
    return d


def _version(request: web.Request) -> int | None:
    raw = request.query.get("v")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


async def serve_connection(
    server: VoiceServer, listener: Listener, request: web.Request
) -> web.WebSocketResponse:
    """Run one voice WebSocket from open to close."""
    ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
    await ws.prepare(request)
    conn = _Connection(server, listener, ws, _version(request))
    server.connections.add(conn)
    try:
        await conn.run(request)
    finally:
        server.connections.discard(conn)
    return ws


class _Connection:
    """The per-WebSocket state machine."""

    def __init__(
        self, server: VoiceServer, listener: Listener, ws: web.WebSocketResponse, v: int | None
    ) -> None:
        self.server = server
        self.listener = listener
        self.ws = ws
        self.version = v
        self.conn_id = server.next_conn_id()
        self.session: VoiceSession | None = None
        self.last_heartbeat = time.monotonic()
        self.scenario = server.scenario
        self._hello_sent = False
        self._later: set[asyncio.Task[None]] = set()

    @property
    def record(self) -> Any:
        return self.server.record

    async def send_raw(self, op: int, d: Any) -> None:
        self.record.add("voice.send", conn=self.conn_id, op=op, d=_redact(op, d), seq=None)
        await self.ws.send_str(json.dumps({"op": op, "d": d}))

    async def run(self, request: web.Request) -> None:
        rec = self.record
        rec.add(
            "voice.connect",
            conn=self.conn_id,
            listener=self.listener.name,
            port=self.listener.port,
            v=self.version,
            path=request.path_qs,
        )
        watchdog = asyncio.create_task(self._watchdog())
        server_code: int | None = None
        try:
            if self.version is None or self.version < self.scenario.min_version:
                # Discord has refused v<4 and a missing v since 2024-11-18; the code is
                # UNCONFIRMED, 4006 is what libraries reported.
                raise CloseConnection(4006, "unsupported gateway version")
            if not self.scenario.hello_after_identify:
                await self._send_hello()
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self._binary(msg.data)
                else:
                    break
        except CloseConnection as close:
            server_code = close.code
            if not self.ws.closed:
                rec.add("voice.close", conn=self.conn_id, code=close.code, by="server")
                await self.ws.close(code=close.code, message=close.reason.encode())
        finally:
            for task in list(self._later):
                task.cancel()
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            code = self.ws.close_code
            session = self.session
            if server_code is not None:
                code = server_code
            elif session is not None and session.ws is self.ws and session.server_close:
                code = session.server_close
            if rec.first("voice.close", conn=self.conn_id) is None:
                rec.add("voice.close", conn=self.conn_id, code=code, by="client")
            self._detach(code)

    async def _send_hello(self) -> None:
        self._hello_sent = True
        await self.send_raw(
            8, {"heartbeat_interval": self.scenario.heartbeat_interval_ms, "v": self.version}
        )

    def _detach(self, code: int | None) -> None:
        session = self.session
        if session is None or session.ws is not self.ws:
            return
        session.ws = None
        session.server_close = None
        if code in FINAL_CLOSES or session.ended:
            session.end()
        else:
            session.dropped_at = time.monotonic()
            self.server.schedule_expiry(session)

    async def _watchdog(self) -> None:
        sc = self.scenario
        limit = sc.heartbeat_interval_ms / 1000 * sc.heartbeat_timeout_intervals
        while not self.ws.closed:
            await asyncio.sleep(limit / 4)
            if time.monotonic() - self.last_heartbeat > limit and not self.ws.closed:
                self.record.add("voice.close", conn=self.conn_id, code=4009, by="server")
                if self.session is not None:
                    self.session.server_close = 4009
                await self.ws.close(code=4009, message=b"heartbeat timeout")

    # -- incoming --------------------------------------------------------------------
    async def _text(self, data: str) -> None:
        try:
            msg = json.loads(data)
            op = msg["op"]
            d = msg.get("d")
            if not isinstance(op, int):
                raise TypeError(op)
        except (ValueError, KeyError, TypeError):
            self.record.add("voice.op", conn=self.conn_id, op=None, d=None, error="undecodable")
            raise CloseConnection(4002, "failed to decode payload") from None
        self.record.add("voice.op", conn=self.conn_id, op=op, d=_redact(op, d))
        if op in (0, 7) and not self._hello_sent:
            await self._send_hello()  # hello-late: Hello only answers Identify or Resume
        handler = _HANDLERS.get(op)
        if handler is None:
            if op in DAVE_CLIENT_OPS and self.session is not None:
                await self.server.dave.on_client_op(self.session, op, d)
                return
            raise CloseConnection(4001, f"unknown opcode {op}")
        if op not in (0, 3, 7) and self.session is None:
            raise CloseConnection(4003, "not authenticated")
        await handler(self, d)

    async def _binary(self, data: bytes) -> None:
        if not data:
            raise CloseConnection(4002, "empty binary frame")
        op = data[0]
        self.record.add("voice.op", conn=self.conn_id, op=op, binary=len(data) - 1)
        if self.session is None:
            raise CloseConnection(4003, "not authenticated")
        if op not in DAVE_CLIENT_OPS:
            raise CloseConnection(4001, f"unknown binary opcode {op}")
        await self.server.dave.on_client_op(self.session, op, bytes(data[1:]))

    async def op_heartbeat(self, d: Any) -> None:
        self.last_heartbeat = time.monotonic()
        # Answer in the form the client used: v8 {"t","seq_ack"} -> {"t"}, older bare int.
        if isinstance(d, dict):
            if "seq_ack" in d:
                self.record.add("voice.seq_ack", conn=self.conn_id, seq_ack=d.get("seq_ack"))
            await self.send_raw(6, {"t": d.get("t")})
        else:
            await self.send_raw(6, d)

    async def op_identify(self, d: Any) -> None:
        if self.session is not None:
            raise CloseConnection(4005, "already authenticated")
        if not isinstance(d, dict):
            raise CloseConnection(4002, "identify without data")
        if self.listener.close_identify is not None:
            raise CloseConnection(self.listener.close_identify, "wrong listener (port stripped?)")
        dave_max = d.get("max_dave_protocol_version") or 0
        if self.scenario.require_dave and not dave_max:
            raise CloseConnection(4017, "E2EE/DAVE protocol required")
        try:
            server_id = int(d["server_id"])
            user_id = int(d["user_id"])
            session_id = str(d["session_id"])
            token = str(d["token"])
        except (KeyError, TypeError, ValueError):
            raise CloseConnection(4020, "bad request") from None
        grant = self.server.check_identify(server_id, user_id, session_id, token)
        self.session = self.server.open_session(
            self.conn_id, grant, session_id, token, self.version or 4, int(dave_max), self.ws
        )
        self._soon(self.scenario.ready_delay_s, self._send_ready())

    def _soon(self, delay: float, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` after ``delay`` without blocking the read loop (slow-ready keeps
        answering heartbeats meanwhile)."""

        async def later() -> None:
            try:
                if delay:
                    await asyncio.sleep(delay)
                await coro
            except (ConnectionError, RuntimeError):
                return  # the client went away meanwhile
            except CloseConnection as close:
                if not self.ws.closed:
                    self.record.add("voice.close", conn=self.conn_id, code=close.code, by="server")
                    if self.session is not None:
                        self.session.server_close = close.code
                    await self.ws.close(code=close.code, message=close.reason.encode())
            finally:
                coro.close()  # never started if cancelled during the delay

        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _send_ready(self) -> None:
        session = self.session
        assert session is not None
        await self.send_raw(
            2,
            {
                "ssrc": session.ssrc,
                "ip": self.server.udp_host,
                "port": self.server.udp_port,
                "modes": list(self.scenario.modes),
                "experiments": ["fixed_keyframe_interval"],
                "streams": [],
            },
        )

    async def op_select_protocol(self, d: Any) -> None:
        session = self.session
        assert session is not None
        if not isinstance(d, dict) or d.get("protocol") != "udp":
            raise CloseConnection(4012, "unknown protocol")
        data = d.get("data") or {}
        mode = data.get("mode") if isinstance(data, dict) else None
        if mode not in self.scenario.modes:
            raise CloseConnection(self.scenario.bad_mode_close, f"unknown encryption mode {mode}")
        try:
            session.select_addr = (str(data["address"]), int(data["port"]))
        except (KeyError, TypeError, ValueError):
            raise CloseConnection(4020, "bad select protocol data") from None
        key = os.urandom(32)
        session.cipher = TransportCipher(mode, key)
        self.record.add("voice.select", conn=self.conn_id, mode=mode, address=session.select_addr)
        self._soon(self.scenario.session_description_delay_s, self._describe(session, mode, key))

    async def _describe(self, session: VoiceSession, mode: str, key: bytes) -> None:
        await self.send_raw(
            4,
            {
                "mode": mode,
                "secret_key": list(key),
                "dave_protocol_version": session.dave_version,
                "audio_codec": "opus",
                "video_codec": "H264",
                "media_session_id": session.media_session_id,
            },
        )
        await self.server.session_live(session)

    async def op_speaking(self, d: Any) -> None:
        session = self.session
        assert session is not None
        if not isinstance(d, dict):
            raise CloseConnection(4020, "bad speaking payload")
        session.speaking_registered = True
        await self.server.relay_speaking(session, int(d.get("speaking") or 0))

    async def op_resume(self, d: Any) -> None:
        if self.session is not None:
            raise CloseConnection(4005, "already authenticated")
        if not isinstance(d, dict):
            raise CloseConnection(4002, "resume without data")
        if self.listener.close_identify is not None:
            raise CloseConnection(self.listener.close_identify, "wrong listener (port stripped?)")
        session = self.server.find_resumable(
            str(d.get("server_id")), str(d.get("session_id")), str(d.get("token"))
        )
        if session is None:
            raise CloseConnection(4006, "session no longer valid")
        old = session.ws
        if old is not None and not old.closed:
            await old.close(code=4006, message=b"resumed elsewhere")
        session.ws = self.ws
        session.dropped_at = None
        self.session = session
        await self.send_raw(9, None)
        seq_ack = d.get("seq_ack")
        replayed = await session.replay(seq_ack if isinstance(seq_ack, int) else None)
        self.record.add(
            "voice.resumed", conn=self.conn_id, session=session.conn_id, replayed=replayed
        )

    async def op_video(self, d: Any) -> None:
        return None  # recorded already; the simulator has no video

    async def op_backend_version(self, d: Any) -> None:
        await self.send_raw(16, {"voice": "discordsim", "rtc_worker": "discordsim"})


_HANDLERS = {
    0: _Connection.op_identify,
    1: _Connection.op_select_protocol,
    3: _Connection.op_heartbeat,
    5: _Connection.op_speaking,
    7: _Connection.op_resume,
    12: _Connection.op_video,
    16: _Connection.op_backend_version,
}


def discovery_reply(ssrc: int, host: str, port: int) -> bytes:
    """The 74-byte IP discovery response (§4.1)."""
    return struct.pack(">HHI64sH", 2, 70, ssrc, host.encode("ascii"), port)
