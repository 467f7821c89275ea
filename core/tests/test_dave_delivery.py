"""The DAVE delivery service with real davey members: three participants and the engine."""

from __future__ import annotations

from typing import Any

import pytest

from discordsim import mls
from discordsim.dave_participant import DaveParticipant, LocalBus
from discordsim.delivery import DeliveryService, Outgoing
from discordsim.record import Record
from notetaker.errors import DecryptError
from notetaker.voice.dave import DaveFrameDecryptor, DaveMember

CHANNEL = 555_000_111
BOT = 1000
A, B, C, D = 2001, 2002, 2003, 2004


class Call:
    """A DS, the engine's member as the bot, and simulated participants, all in-process."""

    def __init__(self, *, record: Record | None = None) -> None:
        self.now = 100.0
        self.ds = DeliveryService(CHANNEL, clock=self.clock, record=record)
        self.bot = DaveMember(BOT, CHANNEL, clock=self.clock)
        self.decryptor = DaveFrameDecryptor(self.bot)
        self.people: dict[int, DaveParticipant] = {}
        self.sent: list[Outgoing] = []
        self.bus = LocalBus(self.ds, {BOT: self.bot}, tap=self.sent.append)

    def clock(self) -> float:
        return self.now

    def connect_bot(self) -> None:
        self.bot.clients_connect(self.people)
        self.bus.run(self.ds.join(BOT))
        self.bus.send(BOT, self.bot.start(1))

    def add(self, user_id: int) -> DaveParticipant:
        person = DaveParticipant(user_id, CHANNEL)
        self.people[user_id] = person
        self.bus.members[user_id] = person
        self.bot.clients_connect([user_id])  # op 11 reaches the bot before any Add
        self.bus.run(self.ds.join(user_id))
        self.bus.send(user_id, person.start())
        return person

    def remove(self, user_id: int) -> None:
        self.bot.client_disconnect(user_id)
        del self.bus.members[user_id]
        self.people.pop(user_id)
        self.bus.run(self.ds.leave(user_id))

    def form_group_at_once(self, *user_ids: int) -> None:
        """Everyone is pending before any commit lands: one group at epoch 1."""
        for uid in user_ids:
            person = DaveParticipant(uid, CHANNEL)
            self.people[uid] = person
            self.bus.members[uid] = person
        self.bot.clients_connect(user_ids)
        everyone = [BOT, *user_ids]
        for uid in everyone:
            self.bus.run(self.ds.join(uid))
        proposals: list[Outgoing] = []
        for uid in everyone:
            start = self.bot.start(1) if uid == BOT else self.people[uid].start()
            for op, payload in start:
                proposals += self.ds.handle(uid, op, payload)
        self.bus.run(proposals)

    def members(self) -> dict[int, Any]:
        return {BOT: self.bot, **self.people}


def assert_agreement(call: Call) -> None:
    """Everyone is at the DS's epoch, sees the same users, at the leaves the DS tracks."""
    ds = call.ds
    assert set(ds.members) == {BOT, *call.people}
    for uid, person in call.people.items():
        assert person.epoch == ds.epoch
        assert person.user_ids == set(ds.members)
        assert person.leaf_index == ds.members[uid]
    assert call.bot.epoch == ds.epoch
    assert call.bot.group_user_ids == set(ds.members)
    assert call.bot.session is not None
    assert call.bot.session.own_leaf_index == ds.members[BOT]


def speak(call: Call, user_id: int, text: bytes) -> bytes:
    return call.people[user_id].encrypt_opus(text)


def test_group_forms_at_epoch_1_and_everyone_agrees() -> None:
    call = Call()
    call.form_group_at_once(A, B, C)

    assert call.ds.epoch == 1
    assert_agreement(call)
    [entry] = call.ds.log.epochs
    assert entry.epoch == 1
    assert set(entry.added) | {entry.committer} == {BOT, A, B, C}
    assert entry.members[entry.committer] == 0
    transition = call.ds.log.transitions[entry.transition_id]
    assert transition.executed == "all_ready"
    assert transition.ready == {BOT, A, B, C}
    assert call.bot.executed_transitions == [entry.transition_id]
    for person in call.people.values():
        assert person.executed_transitions == [entry.transition_id]
    # Commits made before every Add had arrived were dropped, not announced.
    announced = [m for m in call.sent if m[1] == 29]
    assert [m[0] for m in announced] == [entry.committer]


def test_engine_decrypts_every_speaker_across_epoch_changes() -> None:
    call = Call()
    call.form_group_at_once(A, B, C)
    for uid in (A, B, C):
        text = f"epoch 1 from {uid}".encode()
        frame = speak(call, uid, text)
        assert frame != text and frame.endswith(b"\xfa\xfa")
        assert call.decryptor.decrypt(uid, frame) == text
    in_flight = speak(call, A, b"sent just before B left")

    call.remove(B)
    assert call.ds.epoch == 2
    assert_agreement(call)
    assert call.decryptor.decrypt(A, in_flight) == b"sent just before B left"
    for uid in (A, C):
        assert call.decryptor.decrypt(uid, speak(call, uid, b"epoch 2")) == b"epoch 2"

    call.add(D)
    assert call.ds.epoch == 3
    assert_agreement(call)
    for uid in (A, C, D):
        text = f"epoch 3 from {uid}".encode()
        assert call.decryptor.decrypt(uid, speak(call, uid, text)) == text
    # Participants can check what the bot would send, too.
    from_bot = call.bot.encrypt_opus(b"bot audio")
    assert from_bot != b"bot audio"
    assert call.people[D].decrypt(BOT, from_bot) == b"bot audio"

    log = call.ds.log
    assert [e.epoch for e in log.epochs] == [1, 2, 3]
    assert log.epochs[1].removed == (B,) and log.epochs[1].added == ()
    assert log.epochs[2].added == (D,) and log.epochs[2].removed == ()
    # MLS reuses the leftmost blank leaf: D takes the leaf B left.
    assert log.epochs[2].members[D] == log.epochs[0].members[B]
    assert all(t.executed == "all_ready" for t in log.transitions.values())
    assert call.bot.epochs == [1, 2, 3]
    assert call.decryptor.failures == {}
    assert call.decryptor.decrypted == 3 + 1 + 2 + 3


def test_silence_passes_and_corrupt_frames_are_counted_never_returned() -> None:
    call = Call()
    call.form_group_at_once(A, B)
    assert speak(call, A, b"\xf8\xff\xfe") == b"\xf8\xff\xfe"
    assert call.decryptor.decrypt(A, b"\xf8\xff\xfe") == b"\xf8\xff\xfe"

    good = speak(call, A, b"some opus payload")
    flipped = bytes([good[0] ^ 0x40]) + good[1:]
    with pytest.raises(DecryptError) as info:
        call.decryptor.decrypt(A, flipped)
    assert info.value.reason == "dave_auth"

    bad_size = good[:-3] + bytes([len(good) + 1]) + b"\xfa\xfa"
    with pytest.raises(DecryptError) as info:
        call.decryptor.decrypt(A, bad_size)
    assert info.value.reason == "dave_malformed"

    with pytest.raises(DecryptError) as info:
        call.decryptor.decrypt(A, b"\x01\xfa\xfa")
    assert info.value.reason == "dave_malformed"

    # Sent by A but claimed to be B's: B's ratchet does not open it.
    with pytest.raises(DecryptError) as info:
        call.decryptor.decrypt(B, good)
    assert info.value.reason == "dave_auth"

    assert call.decryptor.decrypt(A, good) == b"some opus payload"
    with pytest.raises(DecryptError) as info:
        call.decryptor.decrypt(A, good)  # a replay
    assert info.value.reason == "dave_auth"

    assert call.decryptor.failures == {"dave_auth": 3, "dave_malformed": 2}
    assert call.decryptor.decrypted == 1


def test_frame_from_an_unknown_user_fails_cleanly() -> None:
    call = Call()
    call.form_group_at_once(A, B)
    frame = speak(call, A, b"hello")
    with pytest.raises(DecryptError) as info:
        call.decryptor.decrypt(4242, frame)
    assert info.value.reason == "dave_unknown_user"
    # Someone outside the group can only be sending plain Opus, which passes.
    assert call.decryptor.decrypt(4242, b"plain") == b"plain"

    leaver = call.people[B]
    call.remove(B)
    after_leaving = leaver.encrypt_opus(b"still talking")
    with pytest.raises(DecryptError) as info:
        call.decryptor.decrypt(B, after_leaving)
    assert info.value.reason == "dave_unknown_user"
    assert call.decryptor.failures == {"dave_unknown_user": 2}


def test_first_commit_of_the_epoch_wins() -> None:
    call = Call()
    call.form_group_at_once(A, B)
    assert call.ds.epoch == 1

    person = DaveParticipant(C, CHANNEL)
    call.people[C] = person
    call.bot.clients_connect([C])
    call.bus.members[C] = person
    call.bus.run(call.ds.join(C))
    [(_, kp)] = person.start()
    assert isinstance(kp, bytes)
    proposals = call.ds.handle(C, 26, kp)
    assert sorted(uid for uid, op, _ in proposals if op == 27) == sorted([BOT, A, B])

    commits: dict[int, bytes] = {}
    for uid, op, payload in proposals:
        [(reply_op, commit)] = call.members()[uid].handle(op, payload)
        assert reply_op == 28 and isinstance(commit, bytes)
        commits[uid] = commit

    announce = call.ds.handle(B, 28, commits[B])
    assert call.ds.epoch == 2
    assert call.ds.handle(A, 28, commits[A]) == []
    assert call.ds.handle(BOT, 28, commits[BOT]) == []
    assert [r.reason for r in call.ds.log.rejected(op=28)][-2:] == ["stale_epoch"] * 2
    assert call.ds.log.epochs[-1].committer == B
    assert call.ds.log.epochs[-1].added == (C,)

    # The losers merge B's commit (dropping their own), the joiner takes the Welcome.
    assert {(uid, op) for uid, op, _ in announce} == {(BOT, 29), (A, 29), (B, 29), (C, 30)}
    call.bus.run(announce)
    assert call.ds.epoch == 2
    assert_agreement(call)
    assert call.decryptor.decrypt(C, speak(call, C, b"new here")) == b"new here"


def test_a_commit_missing_a_proposal_is_dropped_and_the_recommit_wins() -> None:
    call = Call()
    call.form_group_at_once(A)
    joiners = {uid: DaveParticipant(uid, CHANNEL) for uid in (C, D)}
    outs: dict[int, list[Outgoing]] = {}
    for uid, person in joiners.items():
        call.people[uid] = person
        call.bus.members[uid] = person
        call.bot.clients_connect([uid])
        call.bus.run(call.ds.join(uid))
        [(op, kp)] = person.start()
        outs[uid] = call.ds.handle(uid, op, kp)
    add_c = next(p for uid, op, p in outs[C] if uid == A)
    add_d = next(p for uid, op, p in outs[D] if uid == A)
    for uid, op, payload in outs[C] + outs[D]:
        if uid == BOT:
            call.bot.handle(op, payload)  # its commits are held back
    [(_, only_c)] = call.people[A].handle(27, add_c)
    assert call.ds.handle(A, 28, only_c) == []
    assert call.ds.log.rejected(op=28)[-1].reason == "proposals_mismatch"
    [(_, both)] = call.people[A].handle(27, add_d)
    assert isinstance(both, bytes)
    call.bus.run(call.ds.handle(A, 28, both))
    assert call.ds.epoch == 2
    assert set(call.ds.log.epochs[-1].added) == {C, D}
    assert_agreement(call)


def test_transition_executes_on_timeout_when_someone_never_gets_ready() -> None:
    call = Call()
    call.form_group_at_once(A)
    silent = DaveParticipant(B, CHANNEL)  # handled by hand: it never answers op 23
    call.bot.clients_connect([B])
    held: list[Outgoing] = []
    call.bus.remote = held.append
    call.bus.run(call.ds.join(B))
    silent.handle(25, call.ds.external_sender)
    call.bus.send(B, silent.start())
    [welcome] = [m for m in held if m[1] == 30]
    silent.handle(welcome[1], welcome[2])  # joins, but its op 23 is never sent
    tid = call.ds.log.epochs[-1].transition_id
    transition = call.ds.log.transitions[tid]
    assert transition.ready == {BOT, A}
    assert transition.executed is None
    deadline = call.ds.next_deadline()
    assert deadline == pytest.approx(call.now + 2.0)

    assert deadline is not None
    call.now = deadline - 0.01
    assert call.ds.tick() == []
    call.now = deadline
    executed = call.ds.tick()
    assert sorted((uid, op) for uid, op, _ in executed) == [(BOT, 22), (A, 22), (B, 22)]
    assert all(d == {"transition_id": tid} for _, _, d in executed)
    assert transition.executed == "timeout"
    assert call.ds.next_deadline() is None
    call.bus.run(executed)
    assert call.bot.executed_transitions[-1] == tid


def test_invalid_key_packages_are_rejected() -> None:
    call = Call()
    call.form_group_at_once(A)
    call.bot.clients_connect([B])
    call.bus.run(call.ds.join(B))
    impostor = DaveParticipant(C, CHANNEL).start()[0][1]
    assert isinstance(impostor, bytes)
    assert call.ds.handle(B, 26, impostor) == []
    assert call.ds.handle(B, 26, b"\x00\x01garbage") == []
    assert [r.reason for r in call.ds.log.rejected(op=26)] == ["invalid_key_package"] * 2
    assert call.ds.pending == set()
    # Not joined at all: nothing is taken from it.
    assert call.ds.handle(D, 26, impostor) == []
    assert call.ds.log.rejections[-1].reason == "not_joined"


def test_member_that_cannot_process_a_commit_is_removed_and_readded() -> None:
    call = Call()
    call.form_group_at_once(A, B)
    assert call.ds.epoch == 1
    replies = call.people[B].handle(29, b"\x00\x09" + b"not a commit")
    assert [op for op, _ in replies] == [31, 26]
    call.bus.send(B, replies)
    # Epoch 2 removes B, epoch 3 adds it back with its new KeyPackage.
    assert call.ds.epoch == 3
    assert call.ds.log.epochs[1].removed == (B,)
    assert call.ds.log.epochs[2].added == (B,)
    assert_agreement(call)
    assert call.decryptor.decrypt(B, speak(call, B, b"back")) == b"back"

    # Again, with op 31 and the new KeyPackage both arriving before the Remove is committed.
    replies = call.people[A].handle(30, b"\x00\x0a" + b"not a welcome")
    held: list[Outgoing] = []
    for op, payload in replies:
        held += call.ds.handle(A, op, payload)
    assert call.ds.epoch == 3
    call.bus.run(held)
    assert call.ds.epoch == 5
    assert call.ds.log.epochs[3].removed == (A,)
    assert call.ds.log.epochs[4].added == (A,)
    assert_agreement(call)
    assert call.decryptor.decrypt(A, speak(call, A, b"me too")) == b"me too"


def test_sole_member_reset_then_a_new_group() -> None:
    call = Call()
    call.form_group_at_once(A)
    assert call.ds.epoch == 1
    mark = len(call.sent)
    call.remove(A)
    to_bot = [(op, d) for uid, op, d in call.sent[mark:] if uid == BOT]
    assert to_bot[:2] == [
        (24, {"protocol_version": 1, "epoch": 1, "transition_id": 0}),
        (21, {"protocol_version": 1, "transition_id": 0}),
    ]
    assert call.ds.log.resets == [BOT]
    assert call.ds.epoch == 0 and call.ds.members == {}
    # The bot re-initialised and sent a fresh KeyPackage; alone, it stays pending.
    assert call.ds.pending == {BOT}
    assert not call.bot.ready
    assert call.decryptor.decrypt(A, b"plain while alone") == b"plain while alone"

    call.add(C)
    assert call.ds.epoch == 1
    assert_agreement(call)
    assert call.decryptor.decrypt(C, speak(call, C, b"hi again")) == b"hi again"


def test_pending_user_who_leaves_has_its_add_revoked() -> None:
    call = Call()
    call.form_group_at_once(A)
    call.bot.clients_connect([B])
    call.bus.run(call.ds.join(B))
    [(op, kp)] = DaveParticipant(B, CHANNEL).start()
    adds = call.ds.handle(B, op, kp)  # held: nobody commits yet
    assert {uid for uid, _, _ in adds} == {BOT, A}
    revokes = call.ds.leave(B)
    assert {uid for uid, _, _ in revokes} == {BOT, A}
    payload = adds[0][2]
    assert isinstance(payload, bytes)
    ref = mls.parse_mls_message(mls.parse_proposals_payload(payload)[1][0]).proposal_ref
    assert all(p == mls.encode_revoke([ref]) for _, _, p in revokes)
    call.bus.run(adds + revokes)  # members commit, then withdraw: nothing lands
    assert call.ds.epoch == 1
    assert call.bot.errors == {}


def test_events_are_mirrored_into_the_simulator_record() -> None:
    record = Record()
    call = Call(record=record)
    call.form_group_at_once(A)
    call.remove(A)
    kinds = [e.kind for e in record]
    assert "dave.join" in kinds and "dave.key_package" in kinds
    [epoch] = record.of("dave.epoch")
    assert epoch["epoch"] == 1 and epoch["channel_id"] == CHANNEL
    assert record.first("dave.execute", how="all_ready") is not None
    assert record.first("dave.reset", user_id=BOT) is not None


def test_a_joiner_left_waiting_when_the_group_empties_starts_the_next_one() -> None:
    ds = DeliveryService(CHANNEL)
    people = {uid: DaveParticipant(uid, CHANNEL) for uid in (A, B, C, D)}
    bus = LocalBus(ds, {A: people[A], B: people[B]})
    for uid in (A, B):
        bus.run(ds.join(uid))
        bus.send(uid, people[uid].start())
    assert ds.epoch == 1

    people[C].handle(25, ds.external_sender)
    ds.join(C)
    [(op, kp)] = people[C].start()
    held = ds.handle(C, op, kp)  # the Add for C never reaches A or B
    assert {uid for uid, _, _ in held} == {A, B}
    assert [op for _, op, _ in ds.leave(A)] == [27]  # Remove(A), to B
    assert ds.leave(B) == []  # nobody left to tell
    assert ds.epoch == 0 and ds.members == {} and ds.pending == {C}

    bus.members = {C: people[C], D: people[D]}
    bus.run(ds.join(D))
    bus.send(D, people[D].start())
    assert ds.epoch == 1
    assert set(ds.members) == {C, D}
    assert people[C].user_ids == people[D].user_ids == {C, D}
    assert people[C].decrypt(D, people[D].encrypt_opus(b"fresh group")) == b"fresh group"
