"""A simulated call participant as a real DAVE member (voice-protocol.md §5.5, option A).

:class:`DaveParticipant` wraps a ``davey.DaveSession`` and answers the delivery
service the way davey-based clients (discord.py, py-cord, discord.js) do: op 26 at start,
op 28 for proposals, op 23 after a commit or Welcome, op 31 plus a new op 26 when one
fails, a new op 26 on op 24 with epoch 1. Its :meth:`~DaveParticipant.encrypt_opus`
produces the frames the bot under test must decrypt, and :meth:`~DaveParticipant.decrypt`
checks what the bot sends.

:class:`LocalBus` runs a :class:`~discordsim.delivery.DeliveryService` against in-process
members (participants, or anything with the same ``handle``) until nothing is left to
deliver; the voice server uses it for its fakes and tests use it for whole calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import davey

from discordsim.delivery import DeliveryService, Outgoing

OPUS_SILENCE = b"\xf8\xff\xfe"
_OP_TYPES = {
    0: davey.ProposalsOperationType.append,
    1: davey.ProposalsOperationType.revoke,
}

#: A client's message to the DS: (op, bytes after the opcode, or the JSON ``d``).
ClientMessage = tuple[int, bytes | dict[str, Any]]


class DaveParticipant:
    """One simulated user's DAVE member state."""

    def __init__(
        self,
        user_id: int,
        channel_id: int,
        *,
        recognized: Iterable[int] | None = None,
        commits: bool = True,
    ) -> None:
        self.user_id = user_id
        #: Whether it answers proposals with a commit (False: it leaves committing to the
        #: others, so a remote client's commit is the one the DS accepts).
        self.commits = commits
        self.channel_id = channel_id
        self.session = davey.DaveSession(1, user_id, channel_id)
        #: Users this participant accepts Adds for (None: anyone, as davey allows).
        self.recognized: set[int] | None = None if recognized is None else set(recognized)
        self.executed_transitions: list[int] = []
        self.failures: list[tuple[int, str]] = []
        self._pending_transition: int | None = None

    @property
    def ready(self) -> bool:
        return self.session.ready

    @property
    def epoch(self) -> int | None:
        return self.session.epoch

    @property
    def leaf_index(self) -> int | None:
        return self.session.own_leaf_index

    @property
    def user_ids(self) -> set[int]:
        return {int(uid) for uid in self.session.get_user_ids()}

    def start(self) -> list[ClientMessage]:
        """What a client sends at op 4: its KeyPackage."""
        return [(26, self.session.get_serialized_key_package())]

    def handle(self, op: int, payload: bytes | dict[str, Any]) -> list[ClientMessage]:
        """A DS message for this participant; returns its replies."""
        if isinstance(payload, dict):
            return self._handle_json(op, payload)
        if op == 25:
            self.session.set_external_sender(payload)
            return []
        if op == 27:
            op_type = _OP_TYPES[payload[0]]
            expected = None if self.recognized is None else sorted(self.recognized)
            try:
                result = self.session.process_proposals(op_type, payload[1:], expected)
            except ValueError as exc:
                # Stale (an epoch already left) or unacceptable: a client logs and waits.
                self.failures.append((op, str(exc)))
                return []
            if result is None or not self.commits:
                return []
            return [(28, result.commit + (result.welcome or b""))]
        if op in (29, 30):
            tid = int.from_bytes(payload[:2], "big")
            try:
                if op == 29:
                    self.session.process_commit(payload[2:])
                else:
                    self.session.process_welcome(payload[2:])
            except ValueError as exc:
                self.failures.append((op, str(exc)))
                self.session.reinit(1, self.user_id, self.channel_id)
                return [(31, {"transition_id": tid}), *self.start()]
            return self._prepare(tid)
        raise ValueError(f"participant got unexpected binary op {op}")

    def _handle_json(self, op: int, d: dict[str, Any]) -> list[ClientMessage]:
        if op == 21:
            return self._prepare(int(d["transition_id"]))
        if op == 22:
            tid = int(d["transition_id"])
            if tid == self._pending_transition:
                self._pending_transition = None
                self.executed_transitions.append(tid)
            return []
        if op == 24:
            if int(d["epoch"]) == 1:
                self.session.reinit(1, self.user_id, self.channel_id)
                return self.start()
            return []
        raise ValueError(f"participant got unexpected JSON op {op}")

    def _prepare(self, tid: int) -> list[ClientMessage]:
        if tid == 0:
            self.executed_transitions.append(0)
            self._pending_transition = None
            return []
        self._pending_transition = tid
        return [(23, {"transition_id": tid})]

    def encrypt_opus(self, frame: bytes) -> bytes:
        """This participant's Opus frame as it goes on the wire (plain until ready)."""
        if frame == OPUS_SILENCE or not self.session.ready:
            return frame
        return self.session.encrypt_opus(frame)

    def decrypt(self, user_id: int, frame: bytes) -> bytes:
        """Open a frame ``user_id`` sent (raises ValueError if it does not authenticate)."""
        return self.session.decrypt(user_id, davey.MediaType.audio, frame)


class Member(Protocol):
    """Anything that answers DS messages like a client (participants, the engine)."""

    def handle(self, op: int, payload: bytes | dict[str, Any]) -> list[ClientMessage]: ...


class LocalBus:
    """Delivers a DS's messages to in-process members and their replies back, in order.

    ``remote`` gets the messages for users that are not local (say, the real client
    behind the voice gateway); ``tap`` sees every message, local or not.
    """

    def __init__(
        self,
        ds: DeliveryService,
        members: dict[int, Member] | None = None,
        *,
        remote: Callable[[Outgoing], None] | None = None,
        tap: Callable[[Outgoing], None] | None = None,
    ) -> None:
        self.ds = ds
        self.members: dict[int, Member] = dict(members or {})
        self.remote = remote
        self.tap = tap
        #: Messages that had nowhere to go (no local member and no ``remote``).
        self.undelivered: list[Outgoing] = []

    def run(self, outgoing: Iterable[Outgoing]) -> None:
        """Deliver ``outgoing`` and everything it causes, breadth-first."""
        queue: deque[Outgoing] = deque(outgoing)
        while queue:
            message = queue.popleft()
            if self.tap is not None:
                self.tap(message)
            user_id, op, payload = message
            member = self.members.get(user_id)
            if member is None:
                if self.remote is not None:
                    self.remote(message)
                else:
                    self.undelivered.append(message)
                continue
            for reply_op, reply in member.handle(op, payload):
                queue.extend(self.ds.handle(user_id, reply_op, reply))

    def send(self, user_id: int, replies: Iterable[ClientMessage]) -> None:
        """``user_id`` sends ``replies`` to the DS; deliver what follows."""
        for op, payload in replies:
            self.run(self.ds.handle(user_id, op, payload))
