"""The engine's DAVE member side (notetaker.voice.dave) against the simulator's DS."""

from __future__ import annotations

from typing import Any

import pytest

from discordsim.dave_participant import DaveParticipant, LocalBus
from discordsim.delivery import DeliveryService
from notetaker.errors import DecryptError
from notetaker.voice.dave import (
    DaveFrameDecryptor,
    DaveMember,
    DaveProtocolHandler,
    frame_problem,
    is_dave_frame,
)

CHANNEL = 777_000_333
BOT = 10
PEER = 20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pair(
    *, grace: float = 10.0, recognize: bool = True
) -> tuple[DeliveryService, DaveMember, DaveParticipant, LocalBus, Clock]:
    """The bot and one participant, joined through the DS (the bot's KeyPackage first)."""
    clock = Clock()
    ds = DeliveryService(CHANNEL, clock=clock)
    bot = DaveMember(BOT, CHANNEL, clock=clock, passthrough_grace=grace)
    peer = DaveParticipant(PEER, CHANNEL)
    bus = LocalBus(ds, {BOT: bot, PEER: peer})
    # The engine sends its KeyPackage at op 4, before op 25 arrives.
    first = bot.start(1)
    bus.run(ds.join(BOT))
    bus.send(BOT, first)
    if recognize:
        bot.clients_connect([PEER])
    bus.run(ds.join(PEER))
    bus.send(PEER, peer.start())
    return ds, bot, peer, bus, clock


# -- the frame check ---------------------------------------------------------------------


def _frame(body: bytes, trailer: bytes) -> bytes:
    """body ‖ 8-byte tag ‖ trailer (nonce, ranges) ‖ size ‖ FA FA."""
    supplemental = 8 + len(trailer) + 3
    return body + b"T" * 8 + trailer + bytes([supplemental]) + b"\xfa\xfa"


def test_frame_check_accepts_well_formed_frames() -> None:
    assert frame_problem(_frame(b"opus!", b"\x01")) is None
    assert frame_problem(_frame(b"opus!", b"\x80\x01")) is None  # two-byte nonce
    assert frame_problem(_frame(b"header+payload", b"\x05\x00\x03\x05\x02")) is None


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"opus", "no marker"),
        (b"\x0b\xfa\xfa", "too short"),
        (b"x" * 20 + b"\x05\xfa\xfa", "supplemental size 5"),
        (b"x" * 20 + b"\xff\xfa\xfa", "supplemental size 255"),
        (_frame(b"abc", b"\x80"), "bad LEB128"),  # unterminated nonce
        (_frame(b"abc", b""), "bad LEB128"),  # no nonce at all
        (_frame(b"abc", b"\x80\x80\x80\x80\x80\x01"), "nonce over 32 bits"),
        (_frame(b"abcdef", b"\x01\x04\x01\x00\x02"), "unencrypted range out of order or bounds"),
        (_frame(b"abc", b"\x01\x02\x05"), "unencrypted range out of order or bounds"),
    ],
)
def test_frame_check_rejects_malformed_frames(frame: bytes, problem: str) -> None:
    assert frame_problem(frame) == problem


def test_marker_detection() -> None:
    assert is_dave_frame(b"\x00\xfa\xfa")
    assert not is_dave_frame(b"\xfa")
    assert not is_dave_frame(b"\xf8\xff\xfe")


# -- the member ----------------------------------------------------------------------------


def test_alone_the_bot_stays_pending_and_plain_audio_passes() -> None:
    clock = Clock()
    ds = DeliveryService(CHANNEL, clock=clock)
    bot = DaveMember(BOT, CHANNEL, clock=clock)
    decryptor = DaveFrameDecryptor(bot)
    sent: list[Any] = []
    bus = LocalBus(ds, {BOT: bot}, tap=sent.append)
    bus.run(ds.join(BOT))
    bus.send(BOT, bot.start(1))
    assert [op for _, op, _ in sent] == [25]
    assert ds.pending == {BOT} and ds.epoch == 0
    assert not bot.ready and bot.epoch == 0
    assert decryptor.decrypt(PEER, b"plain opus") == b"plain opus"
    assert decryptor.decrypt(PEER, b"\xf8\xff\xfe") == b"\xf8\xff\xfe"
    with pytest.raises(DecryptError) as info:
        decryptor.decrypt(PEER, _frame(b"cipher", b"\x01"))
    assert info.value.reason == "dave_no_key"
    assert decryptor.passed_through == 2
    assert decryptor.failures == {"dave_no_key": 1}
    assert bot.encrypt_opus(b"mine") == b"mine"  # nothing to encrypt with yet


def test_joins_with_a_peer_reports_ready_and_executes_the_transition() -> None:
    ds, bot, peer, _, _ = pair()
    assert ds.epoch == 1
    assert bot.ready and bot.epoch == 1
    assert bot.group_user_ids == {BOT, PEER}
    [entry] = ds.log.epochs
    assert ds.log.transitions[entry.transition_id].ready == {BOT, PEER}
    assert bot.executed_transitions == [entry.transition_id]
    assert bot.voice_privacy_code
    assert bot.voice_privacy_code == peer.session.voice_privacy_code
    assert bot.errors == {}

    decryptor = DaveFrameDecryptor(bot)
    for text in (b"one", b"two", b"three"):
        assert decryptor.decrypt(PEER, peer.encrypt_opus(text)) == text
    assert peer.decrypt(BOT, bot.encrypt_opus(b"from the bot")) == b"from the bot"


def test_an_add_for_an_unrecognized_user_is_refused() -> None:
    ds, bot, _, bus, _ = pair(recognize=False)
    # The bot refused the peer's Add (no op 11 for it); the peer's commit brought it in.
    assert bot.errors == {"proposals": 1}
    assert ds.log.epochs[0].committer == PEER

    newcomer = DaveParticipant(30, CHANNEL)
    bus.members[30] = newcomer
    bus.run(ds.join(30))
    [(op, kp)] = newcomer.start()
    proposals = ds.handle(30, op, kp)
    to_bot = next(p for uid, o, p in proposals if uid == BOT)
    assert bot.handle(27, to_bot) == []
    assert bot.errors == {"proposals": 2}
    bot.clients_connect([30])
    [(reply, commit)] = bot.handle(27, to_bot)
    assert reply == 28 and isinstance(commit, bytes)


def test_bad_input_is_counted_and_never_raises() -> None:
    _, bot, _, _, _ = pair()
    epoch = bot.epoch
    bad: list[tuple[int, bytes | dict[str, Any]]] = [
        (27, b""),
        (27, b"\x07\x00"),
        (27, b"\x00\x05abc"),
        (29, b"\x01"),
        (21, {}),
        (22, {"transition_id": "x"}),
        (99, b"?"),
        (99, {}),
    ]
    for op, payload in bad:
        assert bot.handle(op, payload) == []
    assert sum(bot.errors.values()) == len(bad)
    assert bot.epoch == epoch and bot.ready


def test_a_broken_commit_answers_op_31_and_a_fresh_key_package() -> None:
    _, bot, _, _, _ = pair()
    replies = bot.handle(29, b"\x00\x2a" + b"garbage")
    assert replies[0] == (31, {"transition_id": 42})
    op, kp = replies[1]
    assert op == 26 and isinstance(kp, bytes) and len(kp) > 300
    assert bot.errors == {"commit": 1}
    assert not bot.ready and bot.group_user_ids == frozenset()


def test_recovery_through_the_ds_after_op_31() -> None:
    ds, bot, peer, bus, _ = pair()
    bus.send(BOT, bot.handle(30, b"\x00\x07" + b"not a welcome"))
    assert bot.errors == {"welcome": 1}
    # Removed (epoch 2), then re-added with the new KeyPackage (epoch 3).
    assert ds.epoch == 3
    assert bot.ready and bot.epoch == 3 and peer.epoch == 3
    assert DaveFrameDecryptor(bot).decrypt(PEER, peer.encrypt_opus(b"again")) == b"again"


def test_plain_frames_from_a_member_pass_only_during_the_grace() -> None:
    _, bot, peer, _, clock = pair(grace=5.0)
    decryptor = DaveFrameDecryptor(bot)
    assert decryptor.decrypt(PEER, b"late plain frame") == b"late plain frame"
    clock.now += 5.0
    with pytest.raises(DecryptError) as info:
        decryptor.decrypt(PEER, b"plain after the grace")
    assert info.value.reason == "dave_unencrypted"
    assert decryptor.decrypt(PEER, peer.encrypt_opus(b"ok")) == b"ok"
    assert decryptor.failures == {"dave_unencrypted": 1}


def test_downgrade_transition_stops_requiring_encryption() -> None:
    _, bot, _, _, clock = pair(grace=1.0)
    clock.now += 60
    decryptor = DaveFrameDecryptor(bot)
    assert bot.handle(21, {"protocol_version": 0, "transition_id": 9}) == [
        (23, {"transition_id": 9})
    ]
    assert decryptor.decrypt(PEER, b"plain") == b"plain"  # senders may switch early
    assert bot.handle(22, {"transition_id": 9}) == []
    assert bot.protocol_version == 0
    assert bot.executed_transitions[-1] == 9
    clock.now += 60
    assert decryptor.decrypt(PEER, b"plain later") == b"plain later"
    assert bot.encrypt_opus(b"mine") == b"mine"


def test_sole_member_reset_reinitialises() -> None:
    ds, bot, _, bus, _ = pair()
    old_epochs = list(bot.epochs)
    sent: list[Any] = []
    bus.tap = sent.append
    del bus.members[PEER]
    bot.client_disconnect(PEER)
    bus.run(ds.leave(PEER))
    assert [(uid, op) for uid, op, _ in sent] == [(BOT, 24), (BOT, 21)]
    assert bot.executed_transitions[-1] == 0
    assert not bot.ready
    assert ds.pending == {BOT}  # its fresh KeyPackage arrived
    assert bot.epochs == old_epochs


def test_unknown_execute_transition_is_counted() -> None:
    _, bot, _, _, _ = pair()
    assert bot.handle(22, {"transition_id": 4321}) == []
    assert bot.errors == {"unknown_transition": 1}


# -- the gateway adapter -----------------------------------------------------------------


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, Any]] = []

    async def send_json(self, op: int, d: Any) -> None:
        self.sent.append(("json", op, d))

    async def send_binary(self, op: int, payload: bytes) -> None:
        self.sent.append(("binary", op, payload))


async def test_protocol_handler_answers_through_the_transport() -> None:
    clock = Clock()
    ds = DeliveryService(CHANNEL, clock=clock)
    peer = DaveParticipant(PEER, CHANNEL)
    handler = DaveProtocolHandler(BOT, CHANNEL, clock=clock)
    transport = RecordingTransport()
    handler.bind(transport)
    assert handler.max_protocol_version == 1

    await handler.on_session_description(1)
    assert [(kind, op) for kind, op, _ in transport.sent] == [("binary", 26)]
    await handler.on_clients_connect([PEER])

    async def deliver(messages: list[Any]) -> None:
        queue = list(messages)
        while queue:
            uid, op, payload = queue.pop(0)
            if uid == PEER:
                for reply_op, reply in peer.handle(op, payload):
                    queue += ds.handle(PEER, reply_op, reply)
                continue
            mark = len(transport.sent)
            if isinstance(payload, bytes):
                await handler.on_binary(op, payload)
            else:
                await handler.on_json(op, payload)
            for _, reply_op, reply in transport.sent[mark:]:
                queue += ds.handle(BOT, reply_op, reply)

    await deliver(ds.join(BOT))
    await deliver(ds.handle(BOT, 26, transport.sent[0][2]))
    await deliver(ds.join(PEER))
    for op, payload in peer.start():
        await deliver(ds.handle(PEER, op, payload))

    ops = [(kind, op) for kind, op, _ in transport.sent]
    assert ("binary", 28) in ops  # it committed the peer's Add (first or not)
    assert ("json", 23) in ops
    assert ds.epoch == 1
    assert handler.member.ready
    frame = peer.encrypt_opus(b"through the pipeline hook")
    assert handler.decryptor.decrypt(PEER, frame) == b"through the pipeline hook"

    handler.bind(None)  # type: ignore[arg-type]
    await handler.on_json(21, {"protocol_version": 1, "transition_id": 3})  # no transport
    assert handler.member.errors == {}
