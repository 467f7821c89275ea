"""The voice side of the simulator: voice servers, their grants, sessions and participants.

:class:`VoiceServer` implements :class:`discordsim.world.VoiceSide` (``grant``/``revoke``)
and sets ``world.voice = self``. It runs, on loopback only:

* the primary voice gateway listener, at an ephemeral (non-443) port: the endpoint it
  hands out is ``127.0.0.1:PORT``;
* optionally a listener on port 443 of the same host (scenario field ``listen_443``). A
  library that strips ``:port`` from the endpoint (py-cord <= 2.6 and nextcord <= 3.1 do
  ``endpoint.rpartition(":")``; discord.py before PR #10210 did too) connects to
  ``wss://127.0.0.1/?v=4``, i.e. port 443, and there it meets what Discord's wrong
  listener did in 2025: Hello, then close 4006 on Identify (``strip_port_close``), or the
  real gateway in ``legacy-2024``. Binding 443 needs root (or CAP_NET_BIND_SERVICE) and only
  one process can own it: at most one VoiceServer per process holds it at a time (a
  process-wide owner slot), and when it cannot be bound the server runs without it and
  records ``voice.listen_443`` with ``bound: False``;
* a failover listener (second port) opened when the ``failover`` scenario fires;
* one UDP socket for media (:mod:`discordsim.voice.udp`).

It stops by itself after ``max_lifetime_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import random
import secrets
import struct
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from discordsim.record import Record, fingerprint
from discordsim.scenarios import SCENARIOS, Scenario
from discordsim.tls import TestCA
from discordsim.voice.crypto import (
    SILENCE_FRAME,
    audio_level_extension,
    rtp_header,
    rtp_padding,
)
from discordsim.voice.dave import DaveDelivery
from discordsim.voice.dave_delivery import MlsDelivery
from discordsim.voice.gateway import CloseConnection, VoiceSession, serve_connection
from discordsim.voice.participants import Participant, ParticipantSpec
from discordsim.voice.udp import LossModel, MediaProtocol
from discordsim.world import VoiceGrant, VoiceStateRec, World

log = logging.getLogger(__name__)

STRIP_PORT = 443
#: The VoiceServer in this process that owns port 443, if any.
_port_443_owner: VoiceServer | None = None


@dataclass
class Listener:
    """One TLS listener of the voice gateway."""

    name: str
    host: str
    port: int
    #: close code for any Identify/Resume here (a wrong listener), None for the real gateway
    close_identify: int | None
    site: web.TCPSite

    @property
    def endpoint(self) -> str:
        """The endpoint as VOICE_SERVER_UPDATE carries it: host and port, no scheme."""
        return f"{self.host}:{self.port}"


@dataclass
class _Grant:
    guild_id: int
    user_id: int
    session_id: str
    channel_id: int
    token: str
    endpoint: str
    revoked: bool = False


class VoiceServer:
    """Simulated Discord voice servers for one :class:`World`, under one :class:`Scenario`."""

    def __init__(
        self,
        world: World,
        scenario: Scenario | str = "modern",
        *,
        record: Record | None = None,
        host: str = "127.0.0.1",
        tls: TestCA | None = None,
        dave: DaveDelivery | None = None,
        listen_443: bool | None = None,
        max_lifetime_s: float | None = 600.0,
        autostart_participants: bool = True,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the voice server only listens on loopback, not {host}")
        self.world = world
        self.scenario = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
        self.record = record if record is not None else Record()
        self.host = host
        self.tls = tls or TestCA()
        self.dave: DaveDelivery = dave or MlsDelivery(
            max_version=self.scenario.max_dave_version,
            transition_timeout=self.scenario.dave_transition_timeout_s,
        )
        self.listen_443 = self.scenario.listen_443 if listen_443 is None else listen_443
        self.max_lifetime_s = max_lifetime_s
        self.autostart_participants = autostart_participants
        self.listeners: dict[int, Listener] = {}
        self.connections: set[Any] = set()
        self.sessions: dict[str, VoiceSession] = {}  # conn id of the Identify -> session
        self._by_ssrc: dict[int, VoiceSession] = {}
        self._grants: dict[str, _Grant] = {}
        self._latest: dict[tuple[int, int], _Grant] = {}
        self._ssrcs = itertools.count(100 + secrets.randbelow(1000))
        self._conn_ids = itertools.count(1)
        self._fired: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.participants: list[Participant] = []
        self._pending: list[Participant] = []
        self._participants_started = False
        self._runner: web.AppRunner | None = None
        self._media: MediaProtocol | None = None
        self.loss = LossModel(
            self.scenario.loss_pct,
            self.scenario.reorder_pct,
            self.scenario.dup_pct,
            self.scenario.seed,
        )
        #: padding draws (which packets, how many bytes), repeatable per scenario seed
        self._padding_rng = random.Random(self.scenario.seed)
        self.udp_host = host
        self.udp_port = 0
        self.stopped = asyncio.Event()
        world.voice = self

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> VoiceServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the listeners and the UDP socket."""
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._listen("primary", 0, None)
        if self.listen_443:
            await self._listen_443()
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: MediaProtocol(self), local_addr=(self.host, 0)
        )
        self._media = protocol
        self.udp_port = transport.get_extra_info("sockname")[1]
        if self.max_lifetime_s is not None:
            self._spawn(self._lifetime(self.max_lifetime_s))
        self.record.add(
            "voice.server_start",
            scenario=self.scenario.name,
            endpoint=self.endpoint,
            udp_port=self.udp_port,
        )

    async def _listen(self, name: str, port: int, close_identify: int | None) -> Listener:
        assert self._runner is not None
        site = web.TCPSite(
            self._runner, self.host, port, ssl_context=self.tls.server_context(), backlog=16
        )
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        bound = server.sockets[0].getsockname()[1]
        listener = Listener(name, self.host, bound, close_identify, site)
        self.listeners[bound] = listener
        return listener

    async def _listen_443(self) -> None:
        global _port_443_owner
        if _port_443_owner is not None:
            self.record.add("voice.listen_443", bound=False, reason="owned by another simulator")
            return
        try:
            await self._listen("port-443", STRIP_PORT, self.scenario.strip_port_close)
        except OSError as exc:
            self.record.add("voice.listen_443", bound=False, reason=str(exc))
            log.warning("port 443 unavailable (%s): port-stripping clients will be refused", exc)
            return
        _port_443_owner = self
        self.record.add("voice.listen_443", bound=True)

    async def stop(self) -> None:
        """Close every connection, task and socket. Idempotent."""
        global _port_443_owner
        if self.stopped.is_set():
            return
        self.stopped.set()
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await session.close(1001, "simulator stopping")
            session.end()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._media is not None and self._media.transport is not None:
            self._media.transport.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if _port_443_owner is self:
            _port_443_owner = None
        self.record.add("voice.server_stop")

    async def _lifetime(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.record.add("voice.lifetime_expired", seconds=seconds)
        await self.stop()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        listener = self.listeners.get(sockname[1] if sockname else -1)
        if listener is None:
            raise web.HTTPNotFound()
        return await serve_connection(self, listener, request)

    # -- addresses -------------------------------------------------------------------
    @property
    def primary(self) -> Listener:
        return next(li for li in self.listeners.values() if li.name == "primary")

    @property
    def endpoint(self) -> str:
        """The endpoint handed out in VOICE_SERVER_UPDATE (host:port, never 443)."""
        return self.primary.endpoint

    @property
    def current_endpoint(self) -> str:
        """Where new voice connections are sent: the last failover listener, else primary."""
        failover = [li for li in self.listeners.values() if li.name == "failover"]
        return failover[-1].endpoint if failover else self.endpoint

    def next_conn_id(self) -> str:
        return f"v{next(self._conn_ids)}"

    def new_ssrc(self) -> int:
        return next(self._ssrcs)

    # -- VoiceSide -------------------------------------------------------------------
    def grant(self, guild_id: int, user_id: int, session_id: str, channel_id: int) -> VoiceGrant:
        """Issue a fresh token for the user's new voice state at the current endpoint (the
        primary one, or the failover one once a failover happened). With the scenario's
        ``null_endpoint_for_s`` the main gateway announces it with a null endpoint first."""
        grant = self._issue(guild_id, user_id, session_id, channel_id, self.current_endpoint)
        return replace(grant, null_endpoint_for_s=self.scenario.null_endpoint_for_s)

    def _issue(
        self, guild_id: int, user_id: int, session_id: str, channel_id: int, endpoint: str
    ) -> VoiceGrant:
        token = secrets.token_hex(16)
        g = _Grant(guild_id, user_id, session_id, channel_id, token, endpoint)
        self._grants[token] = g
        self._latest[(guild_id, user_id)] = g
        self.record.add(
            "voice.grant",
            user_id=user_id,
            channel_id=channel_id,
            endpoint=endpoint,
            token=fingerprint(token),
        )
        return VoiceGrant(guild_id, user_id, endpoint, token)

    def revoke(self, guild_id: int, user_id: int) -> None:
        """The user left voice: their connection closes with 4014 and every grant ends."""
        for g in self._grants.values():
            if g.guild_id == guild_id and g.user_id == user_id:
                g.revoked = True
        self._latest.pop((guild_id, user_id), None)
        self.record.add("voice.revoke", user_id=user_id)
        for session in list(self.sessions.values()):
            if session.guild_id == guild_id and session.user_id == user_id:
                self._spawn(self._close_and_end(session, 4014, "disconnected"))

    async def _close_and_end(self, session: VoiceSession, code: int, reason: str) -> None:
        await session.close(code, reason)
        session.end()

    # -- sessions --------------------------------------------------------------------
    def check_identify(self, server_id: int, user_id: int, session_id: str, token: str) -> _Grant:
        """The grant this Identify may use, or raise the close Discord would send."""
        g = self._grants.get(token)
        if g is None:
            raise CloseConnection(4004, "authentication failed")
        if g.revoked or g.guild_id != server_id or g.user_id != user_id:
            raise CloseConnection(4006, "session no longer valid")
        if self.scenario.enforce_latest_session:
            latest = self._latest.get((server_id, user_id))
            if latest is not g or g.session_id != session_id:
                raise CloseConnection(4006, "session no longer valid")
        return g

    def open_session(
        self,
        conn_id: str,
        grant: _Grant,
        session_id: str,
        token: str,
        version: int,
        dave_max: int,
        ws: web.WebSocketResponse,
    ) -> VoiceSession:
        for old in list(self.sessions.values()):
            if old.guild_id == grant.guild_id and old.user_id == grant.user_id:
                # A new Identify replaces the user's older session (failover, rejoin).
                self._spawn(self._close_and_end(old, 4006, "session replaced"))
        session = VoiceSession(
            server=self,
            conn_id=conn_id,
            guild_id=grant.guild_id,
            user_id=grant.user_id,
            session_id=session_id,
            token=token,
            channel_id=grant.channel_id,
            version=version,
            dave_version=self.dave.negotiate(dave_max),
            ssrc=self.new_ssrc(),
            ws=ws,
        )
        self.sessions[conn_id] = session
        self._by_ssrc[session.ssrc] = session
        self.record.add(
            "voice.identify",
            conn=conn_id,
            user_id=grant.user_id,
            ssrc=session.ssrc,
            version=version,
            dave_max=dave_max,
            dave_version=session.dave_version,
        )
        return session

    def sessions_ended(self, session: VoiceSession) -> None:
        self.sessions.pop(session.conn_id, None)
        self._by_ssrc.pop(session.ssrc, None)
        self.record.add("voice.session_end", conn=session.conn_id, user_id=session.user_id)
        self.dave.on_session_end(session)
        for other in self._live_in(session.channel_id, exclude=session.user_id):
            if session.user_id in other.known_users:
                self._spawn(self._tell_leave(other, session.user_id))

    def session_by_ssrc(self, ssrc: int) -> VoiceSession | None:
        return self._by_ssrc.get(ssrc)

    def find_resumable(self, server_id: str, session_id: str, token: str) -> VoiceSession | None:
        """The dropped session a Resume may take over, or None (the caller closes 4006).

        The token must be a live grant of the session's user: the session's own, or a newer
        one the main gateway issued since (discord.py re-sends op 4 before resuming after
        4015, and a fresh grant comes back). The session_id must be the session's or that
        grant's. ``enforce_latest_session`` narrows this to the latest grant only.
        """
        g = self._grants.get(token)
        if g is None or g.revoked or str(g.guild_id) != server_id:
            return None
        if (
            self.scenario.enforce_latest_session
            and self._latest.get((g.guild_id, g.user_id)) is not g
        ):
            return None
        for s in self.sessions.values():
            if s.ended or s.guild_id != g.guild_id or s.user_id != g.user_id:
                continue
            if session_id in (s.session_id, g.session_id):
                s.token = token
                return s
        return None

    def schedule_expiry(self, session: VoiceSession) -> None:
        self._spawn(self._expire(session))

    async def _expire(self, session: VoiceSession) -> None:
        dropped = session.dropped_at
        await asyncio.sleep(self.scenario.resume_window_s)
        if session.dropped_at is not None and session.dropped_at == dropped:
            self.record.add("voice.session_expired", conn=session.conn_id)
            session.end()

    def _live_in(self, channel_id: int, exclude: int | None = None) -> list[VoiceSession]:
        return [
            s
            for s in self.sessions.values()
            if s.live and not s.ended and s.channel_id == channel_id and s.user_id != exclude
        ]

    async def session_live(self, session: VoiceSession) -> None:
        """Op 4 went out: roster, DAVE, RTCP reports, scenario timers, participants."""
        session.live = True
        present = [p.user_id for p in self.participants if p.in_channel]
        present += [s.user_id for s in self._live_in(session.channel_id, exclude=session.user_id)]
        if present:
            await self._tell_join(session, present)
        for other in self._live_in(session.channel_id, exclude=session.user_id):
            await self._tell_join(other, [session.user_id])
        await self.dave.on_session_live(session)
        session.tasks.append(self._spawn(self._rtcp_reports(session)))
        sc = self.scenario
        for name, delay, action in (
            ("crash", sc.crash_after_s, self._crash),
            ("failover", sc.failover_after_s, self._failover),
            ("kick", sc.kick_after_s, self._kick),
            ("invalidate", sc.invalidate_after_s, self._invalidate),
        ):
            if delay is not None and name not in self._fired:
                self._fired.add(name)
                session.tasks.append(self._spawn(self._after(delay, action, session)))
        if self.autostart_participants:
            self.start_participants()

    async def _after(self, delay: float, action: Any, session: VoiceSession) -> None:
        await asyncio.sleep(delay)
        if not session.ended:
            await action(session)

    async def _tell_join(self, session: VoiceSession, user_ids: list[int]) -> None:
        await session.send(11, {"user_ids": [str(u) for u in user_ids]})
        for uid in user_ids:
            session.known_users.add(uid)
            # Real servers follow op 11 with client flags and platform (§2.3); libraries
            # ignore both.
            await session.send(18, {"user_id": str(uid), "flags": 0})
            await session.send(20, {"user_id": str(uid), "platform": 0})
            await self.dave.on_member_join(session, uid)

    async def _tell_leave(self, session: VoiceSession, user_id: int) -> None:
        session.known_users.discard(user_id)
        await session.send(13, {"user_id": str(user_id)})
        await self.dave.on_member_leave(session, user_id)

    async def relay_speaking(self, session: VoiceSession, flags: int) -> None:
        self.record.add("voice.speaking", conn=session.conn_id, speaking=flags)
        for other in self._live_in(session.channel_id, exclude=session.user_id):
            await other.send(
                5, {"speaking": flags, "ssrc": session.ssrc, "user_id": str(session.user_id)}
            )

    # -- scenario actions ------------------------------------------------------------
    async def _crash(self, session: VoiceSession) -> None:
        self.record.add("voice.crash", conn=session.conn_id)
        await session.close(4015, "voice server crashed")

    async def _invalidate(self, session: VoiceSession) -> None:
        grant = self._issue(
            session.guild_id,
            session.user_id,
            f"{session.session_id}-moved",
            session.channel_id,
            self.current_endpoint,
        )
        self.record.add("voice.invalidate", conn=session.conn_id, token=fingerprint(grant.token))
        await session.close(4015, "voice server crashed")

    async def _kick(self, session: VoiceSession) -> None:
        self.record.add("voice.kick", conn=session.conn_id)
        await self._close_and_end(session, 4014, "disconnected")
        await self._set_voice_state(session.user_id, None, session.session_id)

    async def _failover(self, session: VoiceSession) -> None:
        listener = await self._listen("failover", 0, None)
        grant = self._issue(
            session.guild_id,
            session.user_id,
            session.session_id,
            session.channel_id,
            listener.endpoint,
        )
        payload = {
            "token": grant.token,
            "guild_id": str(grant.guild_id),
            "endpoint": grant.endpoint,
        }
        dispatched = await self._dispatch(session.user_id, "VOICE_SERVER_UPDATE", payload)
        self.record.add(
            "voice.failover",
            conn=session.conn_id,
            endpoint=listener.endpoint,
            token=fingerprint(grant.token),
            dispatched=dispatched,
        )
        if self.scenario.failover_close_old is not None:
            await session.close(self.scenario.failover_close_old, "voice server moved")

    async def _dispatch(self, user_id: int, event: str, payload: dict[str, Any]) -> bool:
        dispatch = self.world.dispatch
        if dispatch is None:
            return False
        await dispatch(user_id, event, payload)
        return True

    async def _set_voice_state(self, user_id: int, channel_id: int | None, sid: str) -> None:
        rec = VoiceStateRec(user_id, channel_id, sid)
        if channel_id is None:
            self.world.voice_states.pop(user_id, None)
        else:
            self.world.voice_states[user_id] = rec
        state = self.world.voice_state_json(rec)
        await self._dispatch(self.world.bot.id, "VOICE_STATE_UPDATE", state)

    # -- RTCP ------------------------------------------------------------------------
    async def _rtcp_reports(self, session: VoiceSession) -> None:
        while not session.ended:
            await asyncio.sleep(self.scenario.rtcp_interval_s)
            addr, cipher = session.udp_addr, session.cipher
            if addr is None or cipher is None or self._media is None:
                continue
            # Receiver Report (PT 201) with one block about the client's stream.
            ext_seq = max(session.highest_seq, 0)
            report = struct.pack(">BBHI IIIIII", 0x81, 201, 7, 1, session.ssrc, 0, ext_seq, 0, 0, 0)
            self._media.sendto(cipher.encrypt_rtcp(report), addr)
            self.record.add("voice.rtcp_out", conn=session.conn_id, pt=201)

    # -- participants ----------------------------------------------------------------
    def add_participant(
        self, spec: ParticipantSpec, *, slots: list[bytes | None] | None = None
    ) -> Participant:
        """Schedule a scripted speaker; its times count from when participants start.

        The member is created now if the world has none by that name. ``slots``: its send
        timeline, already prepared (:func:`~discordsim.voice.participants.prepare`), so a
        caller that must report a bad file can decode it first without decoding it twice.
        """
        try:
            user = self.world.user(spec.name)
        except KeyError:
            user = self.world.add_user(spec.name)
        p = Participant(self, spec, user.id, slots=slots)
        self.participants.append(p)
        if self._participants_started:
            self._run_participant(p)
        else:
            self._pending.append(p)
        return p

    @property
    def pending_participants(self) -> list[Participant]:
        """Scripted speakers waiting for participants to start (the first live session)."""
        return list(self._pending)

    def start_participants(self) -> None:
        """Start the scripted speakers' clocks (once; the first live session does it)."""
        if self._participants_started:
            return
        self._participants_started = True
        for p in self._pending:
            self._run_participant(p)
        self._pending.clear()

    def _run_participant(self, p: Participant) -> None:
        self._spawn(p.run(asyncio.get_running_loop().time()))

    async def participant_join(self, p: Participant) -> None:
        p.in_channel = True
        channel = self.world.voice_channel.id
        self.record.add("voice.participant_join", user_id=p.user_id, ssrc=p.ssrc)
        await self._set_voice_state(p.user_id, channel, secrets.token_hex(16))
        for session in self._live_in(channel, exclude=p.user_id):
            await self._tell_join(session, [p.user_id])

    async def participant_leave(self, p: Participant) -> None:
        if not p.in_channel:
            return  # left already (told to leave before its script's leave_at)
        p.hush()
        p.in_channel = False
        channel = self.world.voice_channel.id
        self.record.add("voice.participant_leave", user_id=p.user_id)
        for session in self._live_in(channel, exclude=p.user_id):
            if p.user_id in session.known_users:
                await self._tell_leave(session, p.user_id)
        await self._set_voice_state(p.user_id, None, "")

    async def forward_audio(self, p: Participant, seq: int, ts: int, opus: bytes) -> None:
        """Send one of a participant's frames to every live client in the channel."""
        media = self._media
        if media is None:
            return
        level = 127 if opus == SILENCE_FRAME else 0x20
        for session in self._live_in(self.world.voice_channel.id, exclude=p.user_id):
            if session.cipher is None or session.udp_addr is None:
                continue
            await self._announce(session, p)
            frame = self.dave.outbound_frame(session, p.user_id, opus)
            padded = self._padding_rng.random() * 100 < self.scenario.padding_pct
            if padded:
                frame += rtp_padding(self._padding_rng.randint(1, 16))
            packet = session.cipher.encrypt_rtp(
                rtp_header(seq, ts, p.ssrc, extension=True, padding=padded),
                audio_level_extension(level),
                frame,
            )
            kind = "padded" if padded else "audio"
            self.loss.send(media, session, packet, p.ssrc, seq, kind=kind)

    async def forward_padding(self, p: Participant, seq: int, ts: int) -> None:
        """Send a padding-only packet of a participant (no audio, its own sequence number)
        to every live client in the channel, as real senders do where speech stops."""
        media = self._media
        if media is None:
            return
        for session in self._live_in(self.world.voice_channel.id, exclude=p.user_id):
            if session.cipher is None or session.udp_addr is None:
                continue
            await self._announce(session, p)
            packet = session.cipher.encrypt_rtp(
                rtp_header(seq, ts, p.ssrc, extension=True, padding=True),
                audio_level_extension(127),
                rtp_padding(self._padding_rng.randint(1, 16)),
            )
            self.loss.send(media, session, packet, p.ssrc, seq, kind="padding-only")

    async def _announce(self, session: VoiceSession, p: Participant) -> None:
        """op 5 maps the SSRC to the user and, on Discord as documented, precedes the first
        packet (voice-protocol.md §6); ``op5_late_packets`` lets that many go first."""
        if p.ssrc in session.announced:
            return
        early = session.unannounced.get(p.ssrc, 0)
        if early < self.scenario.op5_late_packets:
            session.unannounced[p.ssrc] = early + 1
            if not early:
                self.record.add("voice.op5_late", user_id=p.user_id, ssrc=p.ssrc)
            return
        session.announced.add(p.ssrc)
        await session.send(5, {"speaking": 1, "ssrc": p.ssrc, "user_id": str(p.user_id)})
