"""The DAVE delivery service behind the voice gateway (voice-protocol.md §5).

:class:`MlsDelivery` is the :class:`~discordsim.voice.dave.DaveDelivery` the voice server
uses by default. It adapts the pure :class:`~discordsim.delivery.DeliveryService` (one per
voice channel) to the gateway:

* :meth:`~MlsDelivery.negotiate` picks ``min(client_max, scenario.max_dave_version)``;
* a client session that negotiated DAVE joins the group once op 4 and the op 11 roster are
  out (:meth:`~MlsDelivery.on_session_live`); DAVE ops it sends before that wait for it;
* every scripted participant is a real MLS member (:class:`DaveParticipant`): it joins the
  group right after op 11 announced it to every session, answers the DS in-process, and
  DAVE-encrypts its Opus (silence passes through) for every session that uses DAVE;
* ops for clients go out over their WebSocket (binary ops 25/27/29/30 with the shared seq,
  JSON ops 21/22/24), in the order the DS decided them;
* readiness timeouts run on the event loop's clock.

A participant whose spec sets ``corrupt_dave`` has one byte of every DAVE ciphertext
flipped in flight (after encryption, inside the transport encryption): the receiver must
count decrypt failures and never play the result.

Everything the DS decides is in the simulator's record as ``dave.*`` entries (see
:mod:`discordsim.delivery`), and in :attr:`MlsDelivery.calls` for direct assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from discordsim.dave_participant import OPUS_SILENCE, DaveParticipant, LocalBus
from discordsim.delivery import DeliveryService, Outgoing

if TYPE_CHECKING:
    from discordsim.voice.gateway import VoiceSession
    from discordsim.voice.server import VoiceServer

DAVE_MARKER = b"\xfa\xfa"


@dataclass
class FrameCounts:
    """What one participant's non-silence frames looked like on the way out (once per frame,
    however many clients got it)."""

    encrypted: int = 0
    plain: int = 0
    corrupted: int = 0


@dataclass
class DaveCall:
    """The DAVE state of one voice channel."""

    server: VoiceServer
    ds: DeliveryService
    bus: LocalBus
    participants: dict[int, DaveParticipant] = field(default_factory=dict)
    #: user id -> conn id of the client session that is the DS member for that user
    clients: dict[int, str] = field(default_factory=dict)
    frames: dict[int, FrameCounts] = field(default_factory=dict)
    outbox: deque[Outgoing] = field(default_factory=deque)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.Task[None] | None = None
    timer_at: float | None = None


class MlsDelivery:
    """A real DAVE delivery service: MLS external sender, proposals, commits, transitions."""

    def __init__(self, *, max_version: int = 1, transition_timeout: float = 2.0) -> None:
        #: The highest DAVE protocol version offered (0: transport-only for everyone).
        self.max_version = max_version
        self.transition_timeout = transition_timeout
        #: channel id -> the call's DAVE state
        self.calls: dict[int, DaveCall] = {}
        #: conn id -> DAVE ops the client sent before its session joined the group
        self._early: dict[str, list[tuple[int, Any]]] = {}
        #: user id -> how many of the client's DAVE frames a participant opened
        self.inbound: dict[int, int] = {}
        #: last frame encrypted per participant: (plain frame, wire frame)
        self._last: dict[int, tuple[bytes, bytes]] = {}

    # -- the call ------------------------------------------------------------------------

    def call(self, server: VoiceServer, channel_id: int) -> DaveCall:
        """The channel's DAVE state, created on first use."""
        call = self.calls.get(channel_id)
        if call is None:
            loop = asyncio.get_running_loop()
            ds = DeliveryService(
                channel_id,
                clock=loop.time,
                transition_timeout=self.transition_timeout,
                record=server.record,
            )
            call = DaveCall(server, ds, LocalBus(ds))
            call.bus.remote = call.outbox.append
            self.calls[channel_id] = call
        return call

    async def _deliver(self, call: DaveCall, outgoing: list[Outgoing]) -> None:
        """Run the DS's messages through the in-process members, send the rest to clients."""
        call.bus.run(outgoing)
        await self._flush(call)
        self._arm(call)

    async def _flush(self, call: DaveCall) -> None:
        async with call.lock:
            while call.outbox:
                user_id, op, payload = call.outbox.popleft()
                session = self._client_session(call, user_id)
                if session is None:
                    call.server.record.add("dave.undeliverable", user_id=user_id, op=op)
                    continue
                if isinstance(payload, dict):
                    await session.send(op, payload)
                else:
                    await session.send_binary(op, bytes(payload))

    def _client_session(self, call: DaveCall, user_id: int) -> VoiceSession | None:
        conn = call.clients.get(user_id)
        session = call.server.sessions.get(conn) if conn is not None else None
        return None if session is None or session.ended else session

    def _arm(self, call: DaveCall) -> None:
        """Keep one timer for the DS's next readiness deadline."""
        deadline = call.ds.next_deadline()
        if deadline == call.timer_at and call.timer is not None and not call.timer.done():
            return
        if call.timer is not None and call.timer is not asyncio.current_task():
            call.timer.cancel()
        call.timer_at = deadline
        call.timer = None
        if deadline is not None:
            call.timer = call.server._spawn(self._timeout(call, deadline))

    async def _timeout(self, call: DaveCall, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        call.timer = None
        call.timer_at = None
        await self._deliver(call, call.ds.tick())

    # -- DaveDelivery --------------------------------------------------------------------

    def negotiate(self, client_max: int) -> int:
        return min(max(client_max, 0), self.max_version)

    async def on_session_live(self, session: VoiceSession) -> None:
        if session.dave_version < 1:
            return
        call = self.call(session.server, session.channel_id)
        uid = session.user_id
        out: list[Outgoing] = []
        if uid in call.ds.joined and call.clients.get(uid) != session.conn_id:
            out += call.ds.leave(uid)  # a new session replaces the user's old one
        call.clients[uid] = session.conn_id
        out += call.ds.join(uid)
        for op, data in self._early.pop(session.conn_id, []):
            # Sent right after op 4, before the join above: handled after op 25.
            out += self._handle(call, uid, op, data)
        await self._deliver(call, out)

    async def on_client_op(self, session: VoiceSession, op: int, data: Any) -> None:
        record = session.server.record
        if session.dave_version < 1:
            record.add("voice.dave_ignored", conn=session.conn_id, op=op)
            return
        call = self.call(session.server, session.channel_id)
        if call.clients.get(session.user_id) != session.conn_id:
            self._early.setdefault(session.conn_id, []).append((op, data))
            return
        await self._deliver(call, self._handle(call, session.user_id, op, data))

    @staticmethod
    def _handle(call: DaveCall, user_id: int, op: int, data: Any) -> list[Outgoing]:
        """The DS's answer to a client op; malformed input is recorded and dropped."""
        try:
            return call.ds.handle(user_id, op, data)
        except Exception as exc:  # a client's bytes must never take the gateway down
            call.server.record.add(
                "dave.rejected", user_id=user_id, op=op, reason="error", error=repr(exc)
            )
            return []

    async def on_member_join(self, session: VoiceSession, user_id: int) -> None:
        server = session.server
        if self.max_version < 1:
            return
        spec = _participant(server, user_id)
        if spec is None:
            return  # a client: it joins from its own on_session_live
        call = self.call(server, session.channel_id)
        if user_id in call.participants:
            return  # already a member (op 11 goes to every session; join once)
        member = DaveParticipant(
            user_id, session.channel_id, commits=server.scenario.dave_participants_commit
        )
        call.participants[user_id] = member
        call.bus.members[user_id] = member
        call.frames.setdefault(user_id, FrameCounts())
        out = call.ds.join(user_id)
        for op, payload in member.start():
            out += call.ds.handle(user_id, op, payload)
        await self._deliver(call, out)

    async def on_member_leave(self, session: VoiceSession, user_id: int) -> None:
        call = self.calls.get(session.channel_id)
        if call is None or user_id not in call.ds.joined:
            return
        if user_id in call.clients and self._client_session(call, user_id) is not None:
            return  # the user's client session is still live; only one view of it left
        call.participants.pop(user_id, None)
        call.bus.members.pop(user_id, None)
        call.clients.pop(user_id, None)
        self._last.pop(user_id, None)
        await self._deliver(call, call.ds.leave(user_id))

    def on_session_end(self, session: VoiceSession) -> None:
        self._early.pop(session.conn_id, None)
        call = self.calls.get(session.channel_id)
        if call is None or call.clients.get(session.user_id) != session.conn_id:
            return
        del call.clients[session.user_id]
        out = call.ds.leave(session.user_id)
        with contextlib.suppress(RuntimeError):  # no loop: the server is shutting down
            session.server._spawn(self._deliver(call, out))

    def outbound_frame(self, session: VoiceSession, user_id: int, opus: bytes) -> bytes:
        if session.dave_version < 1:
            return opus
        call = self.calls.get(session.channel_id)
        member = call.participants.get(user_id) if call is not None else None
        if call is None or member is None or opus == OPUS_SILENCE:
            return opus  # silence is never encrypted (and is one shared object: no cache)
        last = self._last.get(user_id)
        if last is not None and last[0] is opus:
            return last[1]  # the same frame to another client: encrypted once
        counts = call.frames.setdefault(user_id, FrameCounts())
        wire = member.encrypt_opus(opus)
        if wire == opus:
            counts.plain += 1
        else:
            counts.encrypted += 1
            spec = _participant(session.server, user_id)
            if spec is not None and spec.corrupt_dave and wire.endswith(DAVE_MARKER):
                wire = bytes([wire[0] ^ 0x5A]) + wire[1:]
                counts.corrupted += 1
        self._last[user_id] = (opus, wire)
        return wire

    def inbound_frame(self, session: VoiceSession, frame: bytes) -> bytes:
        """A client's DAVE frame, opened by a participant in its group when there is one."""
        if session.dave_version < 1 or not frame.endswith(DAVE_MARKER):
            return frame
        call = self.calls.get(session.channel_id)
        if call is None:
            return frame
        for member in call.participants.values():
            if member.ready and session.user_id in member.user_ids:
                try:
                    plain = member.decrypt(session.user_id, frame)
                except ValueError as exc:
                    session.server.record.add(
                        "dave.inbound_failed", conn=session.conn_id, error=str(exc)
                    )
                    return frame
                self.inbound[session.user_id] = self.inbound.get(session.user_id, 0) + 1
                return plain
        return frame


def _participant(server: VoiceServer, user_id: int) -> Any:
    """The spec of the scripted participant ``user_id`` in the channel, or None."""
    for p in server.participants:
        if p.user_id == user_id and p.in_channel:
            return p.spec
    return None
