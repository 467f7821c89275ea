"""Where the DAVE delivery service plugs into the voice server.

The voice server talks to a :class:`DaveDelivery` strategy at every point where DAVE
(voice-protocol.md §5) acts. The default is the real delivery service,
:class:`discordsim.voice.dave_delivery.MlsDelivery`; :class:`TransportOnly` negotiates
``dave_protocol_version: 0`` and passes frames through. A delivery service picks the
version in :meth:`negotiate`, sends op 25 from :meth:`on_session_live` (only after op 4),
handles the client's JSON ops 23/31 and binary ops 26/28 in :meth:`on_client_op`, adds and
removes members in :meth:`on_member_join`/:meth:`on_member_leave` (after op 11, before any
Add), forgets a client's session in :meth:`on_session_end`, and wraps each simulated
participant's Opus frame in :meth:`outbound_frame`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from discordsim.voice.gateway import VoiceSession

#: Client -> server DAVE opcodes (JSON 23/31; binary 26/28).
DAVE_CLIENT_OPS = frozenset({23, 26, 28, 31})


class DaveDelivery(Protocol):
    """The DAVE delivery service as the voice server sees it."""

    def negotiate(self, client_max: int) -> int:
        """The protocol version for a client that offers up to ``client_max`` (0 = none)."""

    async def on_session_live(self, session: VoiceSession) -> None:
        """Op 4 went out for ``session``: start DAVE for it (op 25 and so on) if negotiated."""

    async def on_client_op(self, session: VoiceSession, op: int, data: Any) -> None:
        """A DAVE op from the client: a dict for JSON ops, bytes after the opcode for binary."""

    async def on_member_join(self, session: VoiceSession, user_id: int) -> None:
        """``user_id`` appeared to ``session`` (op 11 already sent)."""

    async def on_member_leave(self, session: VoiceSession, user_id: int) -> None:
        """``user_id`` left (op 13 already sent)."""

    def on_session_end(self, session: VoiceSession) -> None:
        """``session`` is gone for good (no resume): its user leaves the group."""

    def outbound_frame(self, session: VoiceSession, user_id: int, opus: bytes) -> bytes:
        """The frame ``user_id`` sends to ``session``, DAVE-encrypted if the session uses DAVE."""

    def inbound_frame(self, session: VoiceSession, frame: bytes) -> bytes:
        """The client's frame with DAVE removed (plain frames pass through)."""


class TransportOnly:
    """No DAVE: version 0 for everyone, frames untouched, DAVE ops only recorded."""

    def negotiate(self, client_max: int) -> int:
        return 0

    async def on_session_live(self, session: VoiceSession) -> None:
        return None

    async def on_client_op(self, session: VoiceSession, op: int, data: Any) -> None:
        session.server.record.add("voice.dave_ignored", conn=session.conn_id, op=op)

    async def on_member_join(self, session: VoiceSession, user_id: int) -> None:
        return None

    async def on_member_leave(self, session: VoiceSession, user_id: int) -> None:
        return None

    def on_session_end(self, session: VoiceSession) -> None:
        return None

    def outbound_frame(self, session: VoiceSession, user_id: int, opus: bytes) -> bytes:
        return opus

    def inbound_frame(self, session: VoiceSession, frame: bytes) -> bytes:
        return frame
