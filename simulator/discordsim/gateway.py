"""The main gateway (v10, JSON, optional zlib-stream): login, guild state, voice states.

Handles Hello/Identify/READY/GUILD_CREATE, heartbeats, Resume, Request Guild Members and
Update Voice State (op 4). A :class:`GatewaySession` outlives its WebSocket so that a
client can Resume and get the dispatches it missed, as on Discord.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from discordsim.record import REDACTED, Record, fingerprint
from discordsim.world import VoiceStateRec, World

log = logging.getLogger(__name__)

# Gateway opcodes.
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_VOICE_STATE_UPDATE = 4
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

# Close codes.
CLOSE_UNKNOWN_ERROR = 4000
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_INVALID_API_VERSION = 4012
CLOSE_DISALLOWED_INTENTS = 4014

#: Privileged intents (Discord's bits); an Identify asking for one the application has not
#: enabled in the Developer Portal is closed with 4014.
PRIVILEGED_INTENTS = {"members": 1 << 1, "presences": 1 << 8, "message_content": 1 << 15}

INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9

_REPLAY_BUFFER = 1000
_ZLIB_SUFFIX = b"\x00\x00\xff\xff"


class _Compressor(Protocol):
    def __call__(self, data: bytes) -> bytes: ...


def _zlib_stream() -> _Compressor:
    # One deflate context for the whole connection, flushed per message: the client keeps
    # one inflater and treats a message as complete when it ends in 00 00 ff ff.
    ctx = zlib.compressobj()

    def compress(data: bytes) -> bytes:
        out = ctx.compress(data) + ctx.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(_ZLIB_SUFFIX)
        return out

    return compress


def _zstd_stream() -> _Compressor | None:
    # discord.py asks for zstd-stream when it can decompress it (the zstandard package, or
    # compression.zstd from Python 3.14); each message is one flushed block of one stream.
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        std = zstd.ZstdCompressor()

        def compress_std(data: bytes) -> bytes:
            out: bytes = std.compress(data, mode=zstd.ZstdCompressor.FLUSH_BLOCK)
            return out

        return compress_std
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    ctx = zstandard.ZstdCompressor().compressobj()

    def compress(data: bytes) -> bytes:
        out: bytes = ctx.compress(data) + ctx.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return out

    return compress


def redact(op: int, d: Any) -> Any:
    """A copy of a client op's payload that is safe to record: no bot token."""
    if op in (OP_IDENTIFY, OP_RESUME) and isinstance(d, dict) and "token" in d:
        return {**d, "token": REDACTED}
    return d


@dataclass
class GatewaySession:
    """An identified session; it survives a dropped socket so the client can resume."""

    session_id: str
    user_id: int
    intents: int
    shard: tuple[int, int]
    seq: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)
    conn: Connection | None = None
    ended: bool = False


class Connection:
    """One main-gateway WebSocket."""

    def __init__(self, conn_id: int, ws: web.WebSocketResponse, compress: _Compressor | None):
        self.id = conn_id
        self.ws = ws
        self.compress = compress
        self.session: GatewaySession | None = None
        #: the close code the server sent, if it closed the socket
        self.server_close: int | None = None
        self._lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload, separators=(",", ":"))
        # Compression and send stay in order under the lock: the stream context is shared.
        async with self._lock:
            if self.ws.closed:
                return
            if self.compress is None:
                await self.ws.send_str(raw)
            else:
                await self.ws.send_bytes(self.compress(raw.encode()))


class Gateway:
    """The main gateway's server side; one per simulator."""

    def __init__(
        self,
        world: World,
        record: Record,
        *,
        token: str,
        url: Callable[[], str],
        heartbeat_interval_ms: int = 41250,
        privileged_intents: frozenset[str] = frozenset(),
    ) -> None:
        self.world = world
        self.record = record
        self.token = token
        self.url = url
        self.heartbeat_interval_ms = heartbeat_interval_ms
        #: the privileged intents "enabled in the portal" (none, as for a new application)
        self.privileged_intents = privileged_intents
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: dict[int, Connection] = {}
        self.ready = asyncio.Event()
        self._ids = itertools.count(1)
        #: op 4 requests are handled in order, one at a time (grant/revoke are not reentrant)
        self._voice_lock = asyncio.Lock()
        #: delayed VOICE_SERVER_UPDATEs (after an ``endpoint: null`` one), cancelled on close
        self._later: set[asyncio.Task[None]] = set()

    # --- sending ---------------------------------------------------------------------

    async def dispatch(self, user_id: int, t: str, d: dict[str, Any], *, intent: int = 0) -> None:
        """Send a dispatch to every live session of ``user_id`` (buffered if disconnected).

        This is :attr:`World.dispatch`. ``intent``: only sessions that asked for it get it.
        """
        sessions = [s for s in self.sessions.values() if s.user_id == user_id and not s.ended]
        if not sessions:
            self.record.add("gateway.dispatch_dropped", user_id=user_id, t=t)
            return
        for session in sessions:
            if intent and not session.intents & intent:
                continue
            await self._send_dispatch(session, t, d)

    async def _send_dispatch(self, session: GatewaySession, t: str, d: dict[str, Any]) -> None:
        session.seq += 1
        msg = {"op": OP_DISPATCH, "t": t, "s": session.seq, "d": d}
        session.buffer.append(msg)
        del session.buffer[:-_REPLAY_BUFFER]
        shown = d
        if t == "VOICE_SERVER_UPDATE" and d.get("token"):
            shown = {**d, "token": fingerprint(d["token"])}
        conn = session.conn
        self.record.add(
            "gateway.dispatch",
            conn=None if conn is None else conn.id,
            user_id=session.user_id,
            t=t,
            s=session.seq,
            d=shown,
        )
        if conn is not None:
            await conn.send(msg)

    async def _send_op(self, conn: Connection, op: int, d: Any) -> None:
        self.record.add("gateway.send", conn=conn.id, op=op, d=d)
        await conn.send({"op": op, "d": d, "s": None, "t": None})

    async def close_all(self, code: int = 1001, message: bytes = b"going away") -> None:
        for task in list(self._later):
            task.cancel()
        for conn in list(self.connections.values()):
            await self.close(conn, code, message)

    async def close(self, conn: Connection, code: int, message: bytes = b"") -> None:
        """Close one connection from the server side (the session stays resumable)."""
        if not conn.ws.closed:
            conn.server_close = code
            self.record.add("gateway.close", conn=conn.id, code=code, by="server")
            await conn.ws.close(code=code, message=message)

    def connection_of(self, user_id: int) -> Connection | None:
        """The newest open connection of a user (the bot), if any."""
        for session in reversed(list(self.sessions.values())):
            if session.user_id == user_id and session.conn is not None:
                return session.conn
        return None

    async def request_reconnect(self, user_id: int) -> None:
        """Send op 7 Reconnect: the client should close and resume."""
        conn = self.connection_of(user_id)
        if conn is not None:
            await self._send_op(conn, OP_RECONNECT, None)

    # --- the WebSocket ---------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        conn_id = next(self._ids)
        if query.get("v", "10") not in ("9", "10"):
            ws = web.WebSocketResponse(autoping=True)
            await ws.prepare(request)
            self.record.add(
                "gateway.close", conn=conn_id, code=CLOSE_INVALID_API_VERSION, by="server"
            )
            await ws.close(code=CLOSE_INVALID_API_VERSION, message=b"Invalid API version")
            return ws
        compress: _Compressor | None = None
        if query.get("compress") == "zlib-stream":
            compress = _zlib_stream()
        elif query.get("compress") == "zstd-stream":
            compress = _zstd_stream()
            if compress is None:
                raise web.HTTPBadRequest(text="zstd-stream needs the zstandard module")
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        conn = Connection(conn_id, ws, compress)
        self.connections[conn_id] = conn
        self.record.add("gateway.connect", conn=conn_id, query=query)
        code: int | None = None
        try:
            if query.get("encoding", "json") != "json":
                await self.close(conn, CLOSE_DECODE_ERROR, b"only json encoding")
                return ws
            await self._send_op(
                conn,
                OP_HELLO,
                {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["discordsim"]},
            )
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    raw = (
                        msg.data
                        if isinstance(msg.data, str)
                        else msg.data.decode("utf-8", "replace")
                    )
                    await self._on_message(conn, raw)
                elif msg.type == WSMsgType.ERROR:
                    break
            code = ws.close_code
        finally:
            self.connections.pop(conn_id, None)
            await self._on_closed(conn, code)
        return ws

    async def _on_closed(self, conn: Connection, code: int | None) -> None:
        session = conn.session
        if conn.server_close is not None:
            # The client echoes some code back when the server closes; what counts is ours.
            code = conn.server_close
        elif code is not None:
            self.record.add("gateway.close", conn=conn.id, code=code, by="client")
        if session is None or session.conn is not conn:
            return
        session.conn = None
        # A clean close ends the session on Discord: it cannot be resumed, and the user
        # leaves voice. Any other drop keeps it resumable.
        if code in (1000, 1001):
            session.ended = True
            if not any(
                s.user_id == session.user_id and not s.ended for s in self.sessions.values()
            ):
                await self._leave_voice_silently(session.user_id)

    async def _leave_voice_silently(self, user_id: int) -> None:
        rec = self.world.voice_states.get(user_id)
        if rec is None or rec.channel_id is None:
            return
        self.world.voice_states.pop(user_id, None)
        self.record.add("voice.state", user_id=user_id, channel_id=None, session_id=rec.session_id)
        if self.world.voice is not None:
            self.world.voice.revoke(self.world.guild_id, user_id)

    async def _on_message(self, conn: Connection, raw: str) -> None:
        try:
            payload = json.loads(raw)
            op = payload["op"]
            d = payload.get("d")
        except (ValueError, KeyError, TypeError):
            self.record.add("gateway.op", conn=conn.id, op=None, d=raw[:200])
            await self.close(conn, CLOSE_DECODE_ERROR, b"Error while decoding payload.")
            return
        self.record.add("gateway.op", conn=conn.id, op=op, d=redact(op, d))
        if op == OP_HEARTBEAT:
            await self._send_op(conn, OP_HEARTBEAT_ACK, None)
        elif op == OP_IDENTIFY:
            await self._identify(conn, d)
        elif op == OP_RESUME:
            await self._resume(conn, d)
        elif conn.session is None:
            await self.close(conn, CLOSE_NOT_AUTHENTICATED, b"Not authenticated.")
        elif op == OP_VOICE_STATE_UPDATE:
            await self._voice_state_update(conn.session, d)
        elif op == OP_REQUEST_GUILD_MEMBERS:
            await self._request_members(conn.session, d)
        elif op == OP_PRESENCE_UPDATE:
            pass  # recorded above; presences are not simulated
        else:
            await self.close(conn, CLOSE_UNKNOWN_OPCODE, b"Unknown opcode.")

    # --- login -----------------------------------------------------------------------

    async def _identify(self, conn: Connection, d: Any) -> None:
        if conn.session is not None:
            await self.close(conn, CLOSE_ALREADY_AUTHENTICATED, b"Already authenticated.")
            return
        if not isinstance(d, dict) or d.get("token") != self.token:
            await self.close(conn, CLOSE_AUTHENTICATION_FAILED, b"Authentication failed.")
            return
        intents = int(d.get("intents", 0))
        refused = [
            name
            for name, bit in PRIVILEGED_INTENTS.items()
            if intents & bit and name not in self.privileged_intents
        ]
        if refused:
            self.record.add("gateway.intents_refused", conn=conn.id, intents=refused)
            await self.close(conn, CLOSE_DISALLOWED_INTENTS, b"Disallowed intent(s).")
            return
        shard_raw = d.get("shard") or [0, 1]
        shard = (int(shard_raw[0]), int(shard_raw[1]))
        session = GatewaySession(
            session_id=uuid.uuid4().hex,
            user_id=self.world.bot.id,
            intents=intents,
            shard=shard,
            conn=conn,
        )
        self.sessions[session.session_id] = session
        conn.session = session
        self.world.dispatch = self.dispatch
        owns_guild = (self.world.guild_id >> 22) % shard[1] == shard[0]
        ready = {
            "v": 10,
            "user": {
                **self.world.bot.to_json(),
                "verified": True,
                "mfa_enabled": False,
                "email": None,
            },
            "guilds": [{"id": str(self.world.guild_id), "unavailable": True}] if owns_guild else [],
            "session_id": session.session_id,
            "resume_gateway_url": self.url(),
            "session_type": "normal",
            "shard": list(shard),
            "application": {"id": str(self.world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["simulated"],
            "user_settings": {},
            "auth": {},
            "_trace": ["discordsim"],
        }
        await self._send_dispatch(session, "READY", ready)
        if owns_guild:
            await self._send_dispatch(session, "GUILD_CREATE", self.guild_create())
        self.ready.set()

    def guild_create(self) -> dict[str, Any]:
        """The GUILD_CREATE payload: channels, roles, members and voice states."""
        w = self.world
        text = next((c.id for c in w.channels.values() if c.kind == 0), None)
        return {
            "id": str(w.guild_id),
            "name": w.guild_name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(w.owner_id if w.owner_id is not None else w.bot.id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "application_id": None,
            "system_channel_id": None if text is None else str(text),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(w.users),
            "roles": [r.to_json() for r in w.guild_roles.values()],
            "emojis": [],
            "stickers": [],
            "soundboard_sounds": [],
            "channels": [
                {k: v for k, v in c.to_json(w.guild_id).items() if k != "guild_id"}
                for c in w.channels.values()
            ],
            "threads": [
                {
                    k: v
                    for k, v in t.to_json(w.guild_id, member_id=w.bot.id).items()
                    if k != "guild_id"
                }
                for t in w.threads.values()
            ],
            "members": [w.member_json(uid) for uid in w.users],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "voice_states": [
                {
                    k: v
                    for k, v in w.voice_state_json(rec).items()
                    if k not in ("guild_id", "member")
                }
                for rec in w.voice_states.values()
                if rec.channel_id is not None
            ],
        }

    async def _resume(self, conn: Connection, d: Any) -> None:
        if not isinstance(d, dict) or d.get("token") != self.token:
            await self.close(conn, CLOSE_AUTHENTICATION_FAILED, b"Authentication failed.")
            return
        session = self.sessions.get(str(d.get("session_id")))
        if session is None or session.ended:
            # Discord answers an unknown session with op 9, d=false: identify afresh.
            await self._send_op(conn, OP_INVALID_SESSION, False)
            return
        old = session.conn
        session.conn = conn
        conn.session = session
        if old is not None and old is not conn:
            await self.close(old, CLOSE_UNKNOWN_ERROR, b"Session resumed elsewhere.")
        last = int(d.get("seq") or 0)
        for msg in session.buffer:
            if msg["s"] > last:
                await conn.send(msg)
        self.record.add("gateway.resumed", conn=conn.id, session_id=session.session_id, seq=last)
        await self._send_dispatch(session, "RESUMED", {"_trace": ["discordsim"]})

    async def _request_members(self, session: GatewaySession, d: Any) -> None:
        d = d if isinstance(d, dict) else {}
        ids = {int(u) for u in (d.get("user_ids") or [])}
        query = str(d.get("query") or "").lower()
        limit = int(d.get("limit") or 0)
        users = [
            u
            for u in self.world.users.values()
            if (not ids or u.id in ids) and u.name.lower().startswith(query)
        ]
        if limit:
            users = users[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(self.world.guild_id),
            "members": [self.world.member_json(u.id) for u in users],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(i) for i in ids - {u.id for u in users}],
        }
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        if d.get("presences"):
            chunk["presences"] = []
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    # --- voice states ----------------------------------------------------------------

    async def _voice_state_update(self, session: GatewaySession, d: Any) -> None:
        """op 4: record the new state, dispatch VOICE_STATE_UPDATE, then the server grant."""
        if not isinstance(d, dict) or str(d.get("guild_id")) != str(self.world.guild_id):
            self.record.add("voice.ignored", user_id=session.user_id, d=d)
            return
        raw_channel = d.get("channel_id")
        channel_id = None if raw_channel is None else int(raw_channel)
        if channel_id is not None:
            ch = self.world.channels.get(channel_id)
            if ch is None or ch.kind not in (2, 13):
                self.record.add("voice.ignored", user_id=session.user_id, d=d)
                return
        async with self._voice_lock:
            await self.set_voice_state(
                session.user_id,
                channel_id,
                self_mute=bool(d.get("self_mute")),
                self_deaf=bool(d.get("self_deaf")),
            )

    async def set_voice_state(
        self,
        user_id: int,
        channel_id: int | None,
        *,
        self_mute: bool = False,
        self_deaf: bool = False,
        notify: int | None = None,
    ) -> VoiceStateRec:
        """Move ``user_id`` into ``channel_id`` (None: out of voice), as op 4 does.

        Every join or move gets a fresh session id. The VOICE_STATE_UPDATE goes to
        ``notify`` (default: the bot). Only the bot's own joins get a VOICE_SERVER_UPDATE.
        """
        w = self.world
        notify = w.bot.id if notify is None else notify
        old = w.voice_states.get(user_id)
        if channel_id is None:
            rec = VoiceStateRec(
                user_id, None, old.session_id if old else uuid.uuid4().hex, self_mute, self_deaf
            )
            w.voice_states.pop(user_id, None)
        else:
            rec = VoiceStateRec(user_id, channel_id, uuid.uuid4().hex, self_mute, self_deaf)
            w.voice_states[user_id] = rec
        self.record.add(
            "voice.state", user_id=user_id, channel_id=channel_id, session_id=rec.session_id
        )
        await self.dispatch(notify, "VOICE_STATE_UPDATE", w.voice_state_json(rec))
        if user_id != w.bot.id:
            return rec
        if w.voice is None:
            self.record.add("voice.no_side", user_id=user_id, channel_id=channel_id)
            return rec
        if channel_id is None:
            w.voice.revoke(w.guild_id, user_id)
            return rec
        grant = w.voice.grant(w.guild_id, user_id, rec.session_id, channel_id)
        server = {"token": grant.token, "guild_id": str(grant.guild_id), "endpoint": grant.endpoint}
        if grant.null_endpoint_for_s is None:
            await self.dispatch(notify, "VOICE_SERVER_UPDATE", server)
            return rec
        # "Wait for a new one": endpoint null first, the real endpoint shortly after.
        await self.dispatch(notify, "VOICE_SERVER_UPDATE", {**server, "endpoint": None})
        task = asyncio.create_task(
            self._endpoint_later(notify, user_id, rec.session_id, server, grant.null_endpoint_for_s)
        )
        self._later.add(task)
        task.add_done_callback(self._later.discard)
        return rec

    async def _endpoint_later(
        self, notify: int, user_id: int, session_id: str, server: dict[str, Any], delay: float
    ) -> None:
        """The real VOICE_SERVER_UPDATE after a null one, unless the user left or moved."""
        await asyncio.sleep(delay)
        async with self._voice_lock:
            current = self.world.voice_states.get(user_id)
            if current is None or current.session_id != session_id:
                self.record.add("voice.endpoint_dropped", user_id=user_id, session_id=session_id)
                return
            await self.dispatch(notify, "VOICE_SERVER_UPDATE", server)
