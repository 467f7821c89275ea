"""DAVE end-to-end encryption, member side (voice-protocol.md §5), on top of ``davey``.

Three pieces:

* :class:`DaveMember` is the MLS member as a pure state machine: it takes the voice
  gateway's DAVE messages (ops 21, 22, 24, 25, 27, 29, 30, and the roster from ops 11/13)
  and returns the replies to send, as ``(op, payload)`` pairs: ``bytes`` for binary ops
  (26 key package, 28 commit/welcome) and a ``dict`` for JSON ops (23 ready, 31 invalid
  commit/welcome). It never raises on bad input; it counts it in :attr:`DaveMember.errors`.
* :class:`DaveFrameDecryptor` is the receive pipeline's
  :class:`~notetaker.voice.pipeline.FrameDecryptor`: it removes DAVE from each speaker's
  Opus frame with that speaker's ratchet, passes unmarked frames through only while that
  is legitimate, and counts failures per reason instead of passing garbage on as audio.
* :class:`DaveProtocolHandler` plugs both into the voice gateway's
  :class:`~notetaker.voice.dave_hook.DaveHandler` hooks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import davey

from notetaker.errors import DecryptError
from notetaker.voice.dave_hook import DaveHandler
from notetaker.voice.pipeline import FrameDecryptor

log = logging.getLogger(__name__)

OP_CLIENTS_CONNECT = 11
OP_CLIENT_DISCONNECT = 13
OP_PREPARE_TRANSITION = 21
OP_EXECUTE_TRANSITION = 22
OP_TRANSITION_READY = 23
OP_PREPARE_EPOCH = 24
OP_EXTERNAL_SENDER = 25
OP_KEY_PACKAGE = 26
OP_PROPOSALS = 27
OP_COMMIT_WELCOME = 28
OP_ANNOUNCE_COMMIT = 29
OP_WELCOME = 30
OP_INVALID_COMMIT_WELCOME = 31

#: The Opus silence frame; DAVE never encrypts it.
OPUS_SILENCE = b"\xf8\xff\xfe"
#: The trailing marker of a DAVE frame.
DAVE_MARKER = b"\xfa\xfa"
#: Truncated tag (8) + supplemental size byte (1) + marker (2): libdave's minimum.
_MIN_SUPPLEMENTAL = 11
_TAG_BYTES = 8

#: A reply for the voice gateway: (op, binary payload after the opcode, or the JSON ``d``).
ClientMessage = tuple[int, bytes | dict[str, Any]]

#: DecryptError reasons :class:`DaveFrameDecryptor` uses.
DAVE_FAILURE_REASONS = (
    "dave_malformed",  # marked as DAVE but the trailer does not parse
    "dave_no_key",  # our group is not ready (no ratchets yet)
    "dave_unknown_user",  # the sender has no ratchet in our group
    "dave_auth",  # no retained ratchet authenticates it (corrupt, replayed, stale)
    "dave_unencrypted",  # plain Opus from a group member after the transition grace
    "dave_error",  # anything else davey reported
)


_OP_NAMES = {OP_ANNOUNCE_COMMIT: "commit", OP_WELCOME: "welcome"}
_PROPOSAL_OPS = {
    0: davey.ProposalsOperationType.append,
    1: davey.ProposalsOperationType.revoke,
}


def is_dave_frame(frame: bytes) -> bool:
    """Whether ``frame`` carries the DAVE marker (it may still be malformed)."""
    return len(frame) >= 2 and frame[-2:] == DAVE_MARKER


def _uleb128(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise ValueError("bad LEB128")


def frame_problem(frame: bytes) -> str | None:
    """Why a marked frame is malformed (voice-protocol.md §5.4 frame check), or None.

    Layout: ``ciphertext ‖ 8-byte tag ‖ ULEB128 nonce ‖ ULEB128 (offset, len)* ‖
    u8 supplemental_size ‖ FA FA``, the size counting from the tag through the marker.
    """
    if not is_dave_frame(frame):
        return "no marker"
    if len(frame) < _MIN_SUPPLEMENTAL:
        return "too short"
    size = frame[-3]
    if size < _MIN_SUPPLEMENTAL or size > len(frame):
        return f"supplemental size {size}"
    body_end = len(frame) - size
    pos = body_end + _TAG_BYTES
    end = len(frame) - 3
    try:
        nonce, pos = _uleb128(frame, pos, end)
        if nonce > 0xFFFF_FFFF:
            return "nonce over 32 bits"
        previous_end = 0
        while pos < end:
            offset, pos = _uleb128(frame, pos, end)
            length, pos = _uleb128(frame, pos, end)
            if offset < previous_end or offset + length > body_end:
                return "unencrypted range out of order or bounds"
            previous_end = offset + length
    except ValueError:
        return "bad LEB128"
    return None


class DaveMember:
    """This bot as a member of the call's DAVE (MLS) group.

    Feed it every DAVE message with :meth:`handle` (and the roster with
    :meth:`clients_connect` / :meth:`client_disconnect`); send back what it returns.
    ``clock`` (seconds) only times the plaintext grace after transitions.
    """

    def __init__(
        self,
        user_id: int,
        channel_id: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        passthrough_grace: float = 10.0,
        key_pair: davey.SigningKeyPair | None = None,
    ) -> None:
        self.user_id = user_id
        self.channel_id = channel_id
        self.clock = clock
        self.passthrough_grace = passthrough_grace
        self.key_pair = key_pair
        self.session: davey.DaveSession | None = None
        self.protocol_version = 0
        #: Users the gateway announced (op 11, minus op 13): the only ones we accept Adds for.
        self.recognized: set[int] = set()
        #: Handling failures by reason (``proposals``, ``commit``, ``welcome``, ...).
        self.errors: dict[str, int] = {}
        #: Transition ids executed, in order (0 for immediate ones).
        self.executed_transitions: list[int] = []
        #: Epochs this member entered, in order.
        self.epochs: list[int] = []
        self._pending_transition: tuple[int, int] | None = None
        self._group_users: frozenset[int] = frozenset()
        self._plain_until = 0.0

    # -- state ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the group is established and ratchets exist."""
        return self.session is not None and self.session.ready

    @property
    def epoch(self) -> int | None:
        return None if self.session is None else self.session.epoch

    @property
    def group_user_ids(self) -> frozenset[int]:
        """Everyone in the established group, this bot included (empty before that)."""
        return self._group_users

    @property
    def voice_privacy_code(self) -> str | None:
        return None if self.session is None else self.session.voice_privacy_code

    def plaintext_allowed(self, user_id: int) -> bool:
        """Whether an unmarked frame from ``user_id`` is legitimate plain Opus now.

        Yes without DAVE (version 0, downgraded, group not formed yet), for senders who are
        not in our group, and for ``passthrough_grace`` seconds after each epoch change or
        transition (senders switch to the new group at slightly different times).
        """
        if self.protocol_version == 0 or not self.ready:
            return True
        if user_id not in self._group_users:
            return True
        return self.clock() < self._plain_until

    # -- inputs --------------------------------------------------------------------------

    def start(self, protocol_version: int) -> list[ClientMessage]:
        """Session Description (op 4) settled ``protocol_version``; returns op 26 if DAVE."""
        self.protocol_version = protocol_version
        if protocol_version < 1:
            if self.session is not None:
                self.session.reset()
            return []
        return self._reinit()

    def clients_connect(self, user_ids: Iterable[int]) -> None:
        """op 11: these users are in the call."""
        self.recognized.update(int(uid) for uid in user_ids)

    def client_disconnect(self, user_id: int) -> None:
        """op 13: this user left (an Add for them is now rejected)."""
        self.recognized.discard(int(user_id))

    def handle(self, op: int, payload: bytes | dict[str, Any]) -> list[ClientMessage]:
        """One DAVE message; returns the replies. Never raises."""
        try:
            if isinstance(payload, dict):
                return self._handle_json(op, payload)
            return self._handle_binary(op, bytes(payload))
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            log.debug("DAVE op %s could not be handled: %r", op, exc)
            self._count(f"op{op}")
            return []

    def encrypt_opus(self, frame: bytes) -> bytes:
        """Our own outgoing Opus frame, DAVE-encrypted once the group is ready."""
        if frame == OPUS_SILENCE or self.protocol_version == 0 or self.session is None:
            return frame
        if not self.session.ready:
            return frame
        return self.session.encrypt_opus(frame)

    # -- binary ops ----------------------------------------------------------------------

    def _handle_binary(self, op: int, payload: bytes) -> list[ClientMessage]:
        if op == OP_EXTERNAL_SENDER:
            out: list[ClientMessage] = []
            if self.session is None:
                # op 25 before op 4 said which version: DAVE is evidently on.
                self.protocol_version = max(self.protocol_version, 1)
                out = self._reinit()
            assert self.session is not None
            self.session.set_external_sender(payload)
            return out
        session = self.session
        if session is None:
            self._count("no_session")
            return []
        if op == OP_PROPOSALS:
            if not payload:
                raise ValueError("empty op 27")
            op_type = _PROPOSAL_OPS.get(payload[0])
            if op_type is None:
                raise ValueError(f"op 27 operation type {payload[0]}")
            try:
                result = session.process_proposals(op_type, payload[1:], sorted(self.recognized))
            except ValueError as exc:
                log.debug("DAVE proposals rejected: %r", exc)
                self._count("proposals")
                return []
            if result is None:
                return []
            return [(OP_COMMIT_WELCOME, result.commit + (result.welcome or b""))]
        if op in (OP_ANNOUNCE_COMMIT, OP_WELCOME):
            if len(payload) < 2:
                raise ValueError(f"op {op} too short")
            tid = int.from_bytes(payload[:2], "big")
            try:
                if op == OP_ANNOUNCE_COMMIT:
                    session.process_commit(payload[2:])
                else:
                    session.process_welcome(payload[2:])
            except ValueError as exc:
                log.info("DAVE %s for transition %s failed: %r", _OP_NAMES[op], tid, exc)
                self._count(_OP_NAMES[op])
                return [(OP_INVALID_COMMIT_WELCOME, {"transition_id": tid}), *self._reinit()]
            self._entered_epoch()
            return self._prepare(tid, self.protocol_version)
        self._count("unexpected")
        return []

    # -- JSON ops ------------------------------------------------------------------------

    def _handle_json(self, op: int, d: dict[str, Any]) -> list[ClientMessage]:
        if op == OP_CLIENTS_CONNECT:
            self.clients_connect(int(uid) for uid in d.get("user_ids", []))
            return []
        if op == OP_CLIENT_DISCONNECT:
            self.client_disconnect(int(d["user_id"]))
            return []
        if op == OP_PREPARE_TRANSITION:
            version = int(d["protocol_version"])
            tid = int(d["transition_id"])
            if version == 0:
                # Downgrade: senders may stop encrypting before op 22.
                self._plain_until = float("inf")
            return self._prepare(tid, version)
        if op == OP_EXECUTE_TRANSITION:
            self._execute(int(d["transition_id"]))
            return []
        if op == OP_PREPARE_EPOCH:
            if int(d.get("epoch", 0)) == 1:
                self.protocol_version = int(d.get("protocol_version", 1))
                return self._reinit()
            return []
        self._count("unexpected")
        return []

    # -- transitions ---------------------------------------------------------------------

    def _prepare(self, tid: int, version: int) -> list[ClientMessage]:
        self._pending_transition = (tid, version)
        if tid == 0:
            self._execute(0)
            return []
        return [(OP_TRANSITION_READY, {"transition_id": tid})]

    def _execute(self, tid: int) -> None:
        if self._pending_transition is None or self._pending_transition[0] != tid:
            self._count("unknown_transition")
            return
        _, version = self._pending_transition
        self._pending_transition = None
        if version != self.protocol_version:
            self.protocol_version = version
            if version == 0 and self.session is not None:
                self.session.reset()
                self._group_users = frozenset()
        self.executed_transitions.append(tid)
        self._plain_until = max(self._plain_until, self.clock() + self.passthrough_grace)

    def _entered_epoch(self) -> None:
        assert self.session is not None
        self._group_users = frozenset(int(uid) for uid in self.session.get_user_ids())
        if self.session.epoch is not None:
            self.epochs.append(self.session.epoch)
        self._plain_until = max(self._plain_until, self.clock() + self.passthrough_grace)

    def _reinit(self) -> list[ClientMessage]:
        """A fresh MLS state (first start, op 24 epoch 1, or recovery after op 31)."""
        if self.session is None:
            self.session = davey.DaveSession(
                max(self.protocol_version, 1), self.user_id, self.channel_id, self.key_pair
            )
        else:
            self.session.reinit(
                max(self.protocol_version, 1), self.user_id, self.channel_id, self.key_pair
            )
        self._group_users = frozenset()
        self._pending_transition = None
        return [(OP_KEY_PACKAGE, self.session.get_serialized_key_package())]

    def _count(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


class DaveFrameDecryptor:
    """The DAVE step of the receive pipeline (implements ``FrameDecryptor``).

    Each speaker's frame is decrypted with that speaker's ratchet (davey keeps the previous
    epoch's ratchets for a while, so frames in flight across an epoch change still open).
    Failures raise :class:`~notetaker.errors.DecryptError` with one of
    :data:`DAVE_FAILURE_REASONS` and are counted in :attr:`failures`.
    """

    def __init__(self, member: DaveMember) -> None:
        self.member = member
        self.decrypted = 0
        self.passed_through = 0
        self.failures: dict[str, int] = {}

    def decrypt(self, user_id: int, frame: bytes) -> bytes:
        """The plain Opus frame of ``user_id``, or raise DecryptError."""
        if frame == OPUS_SILENCE:
            self.passed_through += 1
            return frame
        if not is_dave_frame(frame):
            if self.member.plaintext_allowed(user_id):
                self.passed_through += 1
                return frame
            raise self._fail("dave_unencrypted", user_id)
        problem = frame_problem(frame)
        if problem is not None:
            raise self._fail("dave_malformed", user_id, problem)
        session = self.member.session
        if session is None or not session.ready:
            raise self._fail("dave_no_key", user_id)
        if user_id not in self.member.group_user_ids or user_id == self.member.user_id:
            raise self._fail("dave_unknown_user", user_id)
        try:
            plain = session.decrypt(user_id, davey.MediaType.audio, frame)
        except ValueError as exc:
            text = str(exc)
            if "NoDecryptorForUser" in text:
                raise self._fail("dave_unknown_user", user_id) from None
            if "NoValidCryptorFound" in text:
                raise self._fail("dave_auth", user_id) from None
            raise self._fail("dave_error", user_id, text) from None
        if not plain:
            raise self._fail("dave_malformed", user_id, "empty plaintext")
        self.decrypted += 1
        return plain

    def _fail(self, reason: str, user_id: int, detail: str = "") -> DecryptError:
        self.failures[reason] = self.failures.get(reason, 0) + 1
        return DecryptError(f"DAVE frame from {user_id}: {reason} {detail}".rstrip(), reason)


class DaveProtocolHandler(DaveHandler):
    """The voice gateway's DAVE hooks, answered by a :class:`DaveMember`."""

    max_protocol_version = davey.DAVE_PROTOCOL_VERSION

    def __init__(
        self,
        user_id: int,
        channel_id: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        passthrough_grace: float = 10.0,
    ) -> None:
        super().__init__()
        self.member = DaveMember(
            user_id, channel_id, clock=clock, passthrough_grace=passthrough_grace
        )
        self._decryptor = DaveFrameDecryptor(self.member)

    @property
    def decryptor(self) -> FrameDecryptor:
        return self._decryptor

    async def on_session_description(self, protocol_version: int) -> None:
        await super().on_session_description(protocol_version)
        await self._send(self.member.start(protocol_version))

    async def on_clients_connect(self, user_ids: list[int]) -> None:
        self.member.clients_connect(user_ids)

    async def on_client_disconnect(self, user_id: int) -> None:
        self.member.client_disconnect(user_id)

    async def on_json(self, op: int, d: Any) -> None:
        await self._send(self.member.handle(op, d if isinstance(d, dict) else {}))

    async def on_binary(self, op: int, payload: bytes) -> None:
        await self._send(self.member.handle(op, payload))

    async def _send(self, messages: list[ClientMessage]) -> None:
        transport = self.transport
        if transport is None:
            return
        for op, payload in messages:
            if isinstance(payload, bytes):
                await transport.send_binary(op, payload)
            else:
                await transport.send_json(op, payload)
