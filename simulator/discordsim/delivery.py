"""The DAVE delivery service and external sender of one voice call (voice-protocol.md §5.2).

:class:`DeliveryService` is a pure state machine. The voice server feeds it what happened
(a member joined or left, a DAVE op arrived, time passed) and gets back the messages to
send, as ``(user_id, op, payload)`` tuples: ``bytes`` for the binary ops (25, 27, 29, 30;
the gateway adds ``[u16 seq][u8 op]``) and a ``dict`` for the JSON ops (21, 22, 24; the
``d`` of the message). It never touches a socket or reads the time except through the
injected clock, so it runs the same in-process and behind the real voice gateway.

What it does:

* ``join`` (after op 11 for that user reached everyone) sends op 25, the external sender.
* op 26 KeyPackages are validated (identity, lifetime, signatures) and turned into signed
  external Adds: with no group yet, every pending member gets the Adds of every *other*
  pending member at epoch 0; with a group at epoch N, the members get the Add at epoch N.
* ``leave`` turns into a Remove of the member's leaf (or a revoke of its pending Add);
  when only one member would be left, the group is reset instead (op 24, then op 21).
* op 28: the first commit of the epoch that references, by ref only, exactly the
  outstanding proposals wins; later ones are dropped and recorded. The winner is
  announced with op 29 to the members and op 30 (the Welcome) to the added users.
* op 23 readiness: op 22 goes out when every member of the transition is ready, or when
  ``transition_timeout`` passes (the caller runs :meth:`tick`; :meth:`next_deadline`
  says when).
* op 31: the member failed a commit or Welcome; it is removed and re-added once its new
  KeyPackage arrives.

Everything that happens is kept in :attr:`DeliveryService.log` (epochs, committers,
transitions, rejections) and, if a ``record`` is given, mirrored there as ``dave.*``
entries.

What it does not check: a member commit's signature and membership tag (they need the
group's key schedule); commits are checked structurally and against the proposals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from discordsim import mls

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

#: A message for the gateway to send: (recipient user id, op, bytes or the JSON ``d``).
Outgoing = tuple[int, int, bytes | dict[str, Any]]


class RecordLike(Protocol):
    """Where events are mirrored (``discordsim.record.Record`` fits)."""

    def add(self, kind: str, **data: Any) -> Any: ...


@dataclass
class EpochEntry:
    """One accepted commit: the group moved from ``epoch - 1`` to ``epoch``."""

    epoch: int
    committer: int
    transition_id: int
    added: tuple[int, ...]
    removed: tuple[int, ...]
    members: dict[int, int]
    """user id -> leaf index after the commit."""


@dataclass
class TransitionEntry:
    """A transition the DS announced and, later, executed."""

    transition_id: int
    epoch: int
    awaiting: set[int]
    ready: set[int] = field(default_factory=set)
    deadline: float | None = None
    executed: str | None = None
    """``all_ready`` or ``timeout`` once op 22 went out; None while pending."""


@dataclass
class Rejection:
    """Something a member sent that the DS dropped."""

    user_id: int
    op: int
    reason: str


@dataclass
class DaveLog:
    """Everything the DS decided, for tests to assert on."""

    epochs: list[EpochEntry] = field(default_factory=list)
    transitions: dict[int, TransitionEntry] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    resets: list[int] = field(default_factory=list)
    """The sole remaining member of each group reset."""

    def committers(self) -> list[int]:
        return [entry.committer for entry in self.epochs]

    def rejected(self, reason: str | None = None, op: int | None = None) -> list[Rejection]:
        return [
            r
            for r in self.rejections
            if (reason is None or r.reason == reason) and (op is None or r.op == op)
        ]


@dataclass
class _Outstanding:
    """A proposal sent this epoch and not yet committed or revoked."""

    kind: int
    user_id: int
    proposal: mls.ExternalProposal
    key_package: mls.KeyPackage | None = None


class DeliveryService:
    """The voice server's DAVE side for one call (protocol version 1)."""

    def __init__(
        self,
        channel_id: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        transition_timeout: float = 2.0,
        key: mls.SigningKey | None = None,
        record: RecordLike | None = None,
    ) -> None:
        self.channel_id = channel_id
        self.group_id = channel_id.to_bytes(8, "big")
        self.clock = clock
        self.transition_timeout = transition_timeout
        self.key = key or mls.SigningKey()
        self.record = record
        #: The op 25 payload every member gets.
        self.external_sender = mls.encode_external_sender(self.key.public_point)
        self.log = DaveLog()
        #: 0 while there is no group; then the epoch the members are in.
        self.epoch = 0
        #: Group members, user id -> leaf index.
        self.members: dict[int, int] = {}
        self._joined: set[int] = set()
        self._key_packages: dict[int, mls.KeyPackage] = {}
        #: Epoch 0: one Add per pending user (the same message goes to every other one).
        self._pending_adds: dict[int, mls.ExternalProposal] = {}
        #: Epoch >= 1: the proposals outstanding this epoch, by ref.
        self._outstanding: dict[bytes, _Outstanding] = {}
        #: Members being removed (left, or op 31); they get no proposals meanwhile.
        self._departing: set[int] = set()
        self._next_transition = 1

    # -- queries -------------------------------------------------------------------------

    @property
    def pending(self) -> set[int]:
        """Users with a valid KeyPackage who are not (yet) group members."""
        return {uid for uid in self._key_packages if uid not in self.members}

    @property
    def joined(self) -> set[int]:
        return set(self._joined)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has a transition to time out (clock units), if ever."""
        deadlines = [
            t.deadline
            for t in self.log.transitions.values()
            if t.executed is None and t.deadline is not None
        ]
        return min(deadlines) if deadlines else None

    # -- events --------------------------------------------------------------------------

    def join(self, user_id: int) -> list[Outgoing]:
        """``user_id`` is in the call with DAVE (op 4 sent, op 11 seen by everyone)."""
        self._joined.add(user_id)
        self._event("dave.join", user_id=user_id)
        return [(user_id, OP_EXTERNAL_SENDER, self.external_sender)]

    def leave(self, user_id: int) -> list[Outgoing]:
        """``user_id`` left the call."""
        if user_id not in self._joined:
            return []
        self._joined.discard(user_id)
        self._event("dave.leave", user_id=user_id)
        out = self._forget_pending(user_id)
        self._key_packages.pop(user_id, None)
        for transition in self.log.transitions.values():
            if transition.executed is None:
                transition.awaiting.discard(user_id)
        if user_id in self.members:
            out += self._remove_member(user_id, left=True)
        out += self._check_transitions()
        return out

    def handle(self, user_id: int, op: int, payload: bytes | dict[str, Any]) -> list[Outgoing]:
        """A DAVE op from ``user_id``: bytes after the opcode (26, 28) or the JSON ``d``."""
        if user_id not in self._joined:
            self._reject(user_id, op, "not_joined")
            return []
        if op == OP_KEY_PACKAGE and isinstance(payload, bytes | bytearray):
            return self._on_key_package(user_id, bytes(payload))
        if op == OP_COMMIT_WELCOME and isinstance(payload, bytes | bytearray):
            return self._on_commit(user_id, bytes(payload))
        if op == OP_TRANSITION_READY and isinstance(payload, dict):
            return self._on_ready(user_id, payload)
        if op == OP_INVALID_COMMIT_WELCOME and isinstance(payload, dict):
            return self._on_invalid(user_id, payload)
        self._reject(user_id, op, "unexpected_op")
        return []

    def tick(self) -> list[Outgoing]:
        """Execute the transitions whose readiness timed out."""
        now = self.clock()
        out: list[Outgoing] = []
        for transition in list(self.log.transitions.values()):
            if (
                transition.executed is None
                and transition.deadline is not None
                and now >= transition.deadline
            ):
                out += self._execute(transition, "timeout")
        return out

    # -- op 26 ---------------------------------------------------------------------------

    def _on_key_package(self, user_id: int, payload: bytes) -> list[Outgoing]:
        try:
            kp = mls.validate_key_package(payload, user_id)
        except mls.MLSError as exc:
            self._reject(user_id, OP_KEY_PACKAGE, "invalid_key_package", detail=str(exc))
            return []
        out = self._forget_pending(user_id)
        self._key_packages[user_id] = kp
        self._event("dave.key_package", user_id=user_id)
        if user_id in self.members:
            # A member that reinitialised (op 31 or op 24) is re-added once its Remove is
            # committed; its new KeyPackage waits until then.
            return out
        if self.epoch == 0:
            out += self._propose_epoch0(user_id, kp)
        else:
            out += self._propose_add(user_id, kp)
        return out

    def _propose_epoch0(self, user_id: int, kp: mls.KeyPackage) -> list[Outgoing]:
        """No group: everyone pending gets the Adds of every other pending user."""
        add = mls.external_proposal(self.key, self.group_id, 0, mls.add_proposal(kp.raw))
        self._pending_adds[user_id] = add
        out: list[Outgoing] = []
        others = [uid for uid in self._pending_adds if uid != user_id]
        if others:
            messages = [self._pending_adds[uid].message for uid in others]
            out.append((user_id, OP_PROPOSALS, mls.encode_proposals(messages)))
        for uid in others:
            out.append((uid, OP_PROPOSALS, mls.encode_proposals([add.message])))
        return out

    def _propose_add(self, user_id: int, kp: mls.KeyPackage) -> list[Outgoing]:
        add = mls.external_proposal(self.key, self.group_id, self.epoch, mls.add_proposal(kp.raw))
        self._outstanding[add.ref] = _Outstanding(mls.PROPOSAL_ADD, user_id, add, kp)
        return self._to_members([add.message])

    def _remove_member(self, user_id: int, *, left: bool) -> list[Outgoing]:
        """Propose the Remove of ``user_id``'s leaf.

        If it ``left`` the call and one member would stay with nobody waiting to join, the
        group is reset instead (voice-protocol.md §5.2, "sole-member reset").
        """
        if user_id in self._departing:
            return []
        self._departing.add(user_id)
        staying = [uid for uid in self.members if uid not in self._departing]
        if not staying:
            # The group is gone; whoever waited to join it starts a new one.
            self._dissolve()
            out: list[Outgoing] = []
            for uid in sorted(self.pending):
                out += self._propose_epoch0(uid, self._key_packages[uid])
            return out
        if left and len(staying) == 1 and not self.pending:
            return self._reset_sole(staying[0])
        leaf = self.members[user_id]
        remove = mls.external_proposal(
            self.key, self.group_id, self.epoch, mls.remove_proposal(leaf)
        )
        self._outstanding[remove.ref] = _Outstanding(mls.PROPOSAL_REMOVE, user_id, remove)
        return self._to_members([remove.message])

    def _forget_pending(self, user_id: int) -> list[Outgoing]:
        """Revoke whatever Add for ``user_id`` is outstanding (it left or sent a new one)."""
        out: list[Outgoing] = []
        add = self._pending_adds.pop(user_id, None)
        if add is not None:
            revoke = mls.encode_revoke([add.ref])
            out += [(uid, OP_PROPOSALS, revoke) for uid in self._pending_adds]
        for ref, item in list(self._outstanding.items()):
            if item.kind == mls.PROPOSAL_ADD and item.user_id == user_id:
                del self._outstanding[ref]
                out += self._to_members([], revoke=[ref])
        return out

    def _to_members(
        self, messages: list[bytes], revoke: list[bytes] | None = None
    ) -> list[Outgoing]:
        payload = mls.encode_revoke(revoke) if revoke else mls.encode_proposals(messages)
        return [(uid, OP_PROPOSALS, payload) for uid in self.members if uid not in self._departing]

    # -- op 28 ---------------------------------------------------------------------------

    def _on_commit(self, user_id: int, payload: bytes) -> list[Outgoing]:
        try:
            split = mls.split_commit_welcome(payload)
        except mls.MLSError as exc:
            self._reject(user_id, OP_COMMIT_WELCOME, "malformed", detail=str(exc))
            return []
        commit = split.commit
        body = commit.commit
        assert body is not None  # split_commit_welcome only returns commits
        reason = self._commit_problem(user_id, commit, body)
        if reason is None:
            expected = self._expected_for(user_id)
            added_kps = [
                self._key_packages[uid]
                for uid, kind in expected.values()
                if kind == mls.PROPOSAL_ADD
            ]
            reason = self._welcome_problem(split.welcome, added_kps)
        if reason is not None:
            self._reject(user_id, OP_COMMIT_WELCOME, reason, epoch=commit.epoch)
            return []
        return self._accept(user_id, split, body)

    def _expected_for(self, user_id: int) -> dict[bytes, tuple[int, int]]:
        """ref -> (user id, proposal type) a commit from ``user_id`` must cover, in any order."""
        if self.epoch == 0:
            return {
                add.ref: (uid, mls.PROPOSAL_ADD)
                for uid, add in self._pending_adds.items()
                if uid != user_id
            }
        return {ref: (o.user_id, o.kind) for ref, o in self._outstanding.items()}

    def _commit_problem(
        self, user_id: int, commit: mls.PublicMessage, body: mls.Commit
    ) -> str | None:
        if commit.group_id != self.group_id:
            return "wrong_group"
        if commit.epoch != self.epoch:
            return "stale_epoch"
        if commit.sender_type != mls.SENDER_MEMBER:
            return "not_member_sender"
        if self.epoch == 0:
            if user_id not in self._pending_adds:
                return "not_pending"
            if commit.sender_index != 0:
                return "wrong_leaf"
        else:
            if user_id not in self.members or user_id in self._departing:
                return "not_member"
            if commit.sender_index != self.members[user_id]:
                return "wrong_leaf"
        if body.inline:
            return "inline_proposal"
        expected = self._expected_for(user_id)
        if not expected:
            return "nothing_to_commit"
        if len(body.refs) != len(set(body.refs)) or set(body.refs) != set(expected):
            return "proposals_mismatch"
        return None

    @staticmethod
    def _welcome_problem(welcome: mls.Welcome | None, added: list[mls.KeyPackage]) -> str | None:
        if not added:
            return None if welcome is None else "unexpected_welcome"
        if welcome is None:
            return "missing_welcome"
        if welcome.cipher_suite != mls.CIPHER_SUITE:
            return "welcome_suite"
        if not {kp.ref for kp in added} <= set(welcome.new_members):
            return "welcome_incomplete"
        return None

    def _accept(self, user_id: int, split: mls.CommitWelcome, body: mls.Commit) -> list[Outgoing]:
        expected = self._expected_for(user_id)
        previous = {user_id: 0} if self.epoch == 0 else dict(self.members)
        leaves: dict[int, int] = dict(previous)
        # RFC 9420 §12.3: Removes before Adds; an Add takes the leftmost blank leaf.
        removed = [expected[ref][0] for ref in body.refs if expected[ref][1] == mls.PROPOSAL_REMOVE]
        added = [expected[ref][0] for ref in body.refs if expected[ref][1] == mls.PROPOSAL_ADD]
        for uid in removed:
            leaves.pop(uid, None)
        for uid in added:
            taken = set(leaves.values())
            leaves[uid] = next(i for i in range(len(taken) + 1) if i not in taken)

        self.epoch += 1
        self.members = leaves
        for uid in leaves:  # the committer's KeyPackage is used up too
            self._key_packages.pop(uid, None)
        self._departing -= set(removed)
        self._pending_adds.clear()
        self._outstanding.clear()

        tid = self._new_transition_id()
        stay = [uid for uid in leaves if uid in previous]
        transition = TransitionEntry(
            tid,
            self.epoch,
            awaiting=set(leaves),
            deadline=self.clock() + self.transition_timeout,
        )
        self.log.transitions[tid] = transition
        entry = EpochEntry(self.epoch, user_id, tid, tuple(added), tuple(removed), dict(leaves))
        self.log.epochs.append(entry)
        self._event(
            "dave.epoch",
            epoch=self.epoch,
            committer=user_id,
            transition_id=tid,
            added=list(added),
            removed=list(removed),
            members=dict(leaves),
        )

        prefix = tid.to_bytes(2, "big")
        out: list[Outgoing] = [
            (uid, OP_ANNOUNCE_COMMIT, prefix + split.commit_bytes) for uid in stay
        ]
        if added:
            assert split.welcome is not None  # checked by _welcome_problem
            out += [(uid, OP_WELCOME, prefix + split.welcome.raw) for uid in added]
        # Whoever waits to be (re-)added gets proposed in the new epoch.
        for uid in sorted(self.pending):
            if uid in self._joined:
                out += self._propose_add(uid, self._key_packages[uid])
        return out

    # -- transitions ---------------------------------------------------------------------

    def _new_transition_id(self) -> int:
        tid = self._next_transition
        self._next_transition = tid % 0xFFFF + 1
        return tid

    def _on_ready(self, user_id: int, d: dict[str, Any]) -> list[Outgoing]:
        tid = d.get("transition_id")
        transition = self.log.transitions.get(tid) if isinstance(tid, int) else None
        if transition is None or transition.executed is not None:
            self._reject(user_id, OP_TRANSITION_READY, "unknown_transition")
            return []
        transition.ready.add(user_id)
        self._event("dave.ready", user_id=user_id, transition_id=tid)
        return self._check_transitions()

    def _check_transitions(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        for transition in list(self.log.transitions.values()):
            if transition.executed is None and transition.awaiting <= transition.ready:
                out += self._execute(transition, "all_ready")
        return out

    def _execute(self, transition: TransitionEntry, how: str) -> list[Outgoing]:
        transition.executed = how
        self._event("dave.execute", transition_id=transition.transition_id, how=how)
        d = {"transition_id": transition.transition_id}
        return [
            (uid, OP_EXECUTE_TRANSITION, dict(d))
            for uid in sorted(transition.awaiting | transition.ready)
            if uid in self._joined
        ]

    def _on_invalid(self, user_id: int, d: dict[str, Any]) -> list[Outgoing]:
        """op 31: the member could not use a commit or Welcome; remove it, then re-add it."""
        self._event("dave.invalid_commit_welcome", user_id=user_id, d=dict(d))
        for transition in self.log.transitions.values():
            if transition.executed is None:
                transition.awaiting.discard(user_id)
        out: list[Outgoing] = []
        if user_id in self.members and user_id not in self._departing:
            out += self._remove_member(user_id, left=False)
        out += self._check_transitions()
        return out

    def _reset_sole(self, user_id: int) -> list[Outgoing]:
        """One member left: drop the group; it starts over at epoch 1 when someone joins."""
        self._dissolve()
        self._key_packages.pop(user_id, None)
        self.log.resets.append(user_id)
        self._event("dave.reset", user_id=user_id)
        return [
            (user_id, OP_PREPARE_EPOCH, {"protocol_version": 1, "epoch": 1, "transition_id": 0}),
            (user_id, OP_PREPARE_TRANSITION, {"protocol_version": 1, "transition_id": 0}),
        ]

    def _dissolve(self) -> None:
        self.epoch = 0
        self.members = {}
        self._departing.clear()
        self._outstanding.clear()
        self._pending_adds.clear()

    # -- bookkeeping ---------------------------------------------------------------------

    def _reject(self, user_id: int, op: int, reason: str, **extra: Any) -> None:
        self.log.rejections.append(Rejection(user_id, op, reason))
        self._event("dave.rejected", user_id=user_id, op=op, reason=reason, **extra)

    def _event(self, kind: str, **data: Any) -> None:
        if self.record is not None:
            self.record.add(kind, channel_id=self.channel_id, **data)
