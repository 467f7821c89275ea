"""DAVE end to end: core's receive engine against the simulator's delivery service.

Every scripted participant is a real MLS member (davey) that DAVE-encrypts its Opus inside
the transport encryption; the engine (EngineLink with DaveProtocolHandler) is another
member. Assertions read the simulator's record (what the delivery service decided), the
engine's own DAVE state and stats, and the decoded audio in the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("notetaker")

from discordsim.app import Simulator
from discordsim.dave_participant import OPUS_SILENCE
from discordsim.scenarios import SCENARIOS, Scenario
from discordsim.voice.dave_delivery import MlsDelivery
from discordsim.voice.participants import ParticipantSpec, decode_pcm
from discordsim.voice.participants import write_tone as tone
from discordsim.voice.server import VoiceServer
from notetaker.errors import VoiceStopped
from notetaker.policy import DEFAULT_RULES, ReconnectPolicy
from notetaker.sink import AudioFrame, CaptureSink
from notetaker.supervisor import Supervisor
from notetaker.voice.dave import DAVE_MARKER, DaveProtocolHandler
from notetaker.voice.dave_hook import DaveHandler
from notetaker.voice.link import EngineLink
from notetaker.voice.opus import Decoder
from notetaker.voice.session_state import VoiceCredentials
from notetaker_harness.engine_rig import engine_rig, watched_sink

POLICY = ReconnectPolicy(base_delay=0.05, max_delay=0.2, reset_wait=0.05, move_grace=0.3)
WAIT = 20.0
RATE = 48_000
#: Frames a speaker may lose to one group transition: those sent between its switch to
#: the new keys and the engine's (davey members switch when they process the commit).
PER_TRANSITION = 5


@dataclass
class Rig:
    sim: Simulator
    voice: VoiceServer
    link: EngineLink
    sup: Supervisor
    sink: Any  #: notetaker_harness.engine_rig.watched_sink()
    handlers: list[DaveProtocolHandler] = field(default_factory=list)

    def uid(self, name: str) -> int:
        return self.sim.world.user(name).id


@contextlib.asynccontextmanager
async def rig(
    scenario: Scenario, speakers: tuple[ParticipantSpec, ...] = (), *, dave: bool = True
) -> AsyncIterator[Rig]:
    handlers: list[DaveProtocolHandler] = []

    def make_dave(creds: VoiceCredentials) -> DaveHandler:
        assert creds.channel_id is not None
        handler = DaveProtocolHandler(creds.user_id, creds.channel_id)
        handlers.append(handler)
        return handler

    sink = watched_sink()
    async with engine_rig(
        scenario, speakers, policy=POLICY, sink=sink, dave=make_dave if dave else None
    ) as (sim, voice, _main, link, sup):
        yield Rig(sim, voice, link, sup, sink, handlers)


def decoded(frames: list[AudioFrame]) -> np.ndarray:
    """The frames' Opus decoded in order, mono float (raises if any packet is not Opus)."""
    decoder = Decoder()
    pcm = b"".join(decoder.decode(f.opus) for f in frames)
    stereo = np.frombuffer(pcm, dtype="<i2").astype(np.float64).reshape(-1, 2)
    return stereo.mean(axis=1)


def similarity(got: np.ndarray, source: Path) -> float:
    """How well ``got`` matches ``source``: the median, over 0.1 s windows of ``got``, of the
    best normalised correlation with a stretch of the source (lag up to one frame).

    Windows, not one long stretch, because a frame the engine rightly dropped (a decrypt
    failure while keys change) leaves a phase jump in the concatenated audio.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    ref = decode_pcm(source).astype(np.float64).mean(axis=1)
    n, lags = RATE // 10, 960
    stretch = ref[n : n + n + lags]  # past the source's first frames
    candidates = sliding_window_view(stretch, n)[:lags]
    candidates = candidates - candidates.mean(axis=1, keepdims=True)
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True) + 1e-9
    scores = []
    for start in range(n, len(got) - n, n):  # the first window holds the decoder's warm-up
        window = got[start : start + n] - got[start : start + n].mean()
        norm = np.linalg.norm(window)
        if norm == 0:
            continue
        scores.append(float((candidates @ (window / norm)).max()))
    assert len(scores) >= 3, "not enough decoded audio"
    return float(np.median(scores))


def frames_of(sink: CaptureSink, user_id: int) -> list[AudioFrame]:
    return [f for f in sink.frames if f.user_id == user_id]


async def wait_done(r: Rig, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while len(r.sim.record.of("voice.participant_done")) < count:
            await r.sim.record.wait_for("voice.participant_done", timeout=WAIT)
            await asyncio.sleep(0)


async def settle(r: Rig, user_ids: set[int]) -> None:
    """Wait until the engine has accounted for every packet each participant sent."""
    sent = {e["user_id"]: e["sent"] for e in r.sim.record.of("voice.participant_done")}

    def accounted(uid: int) -> int:
        got = len(frames_of(r.sink, uid))
        dropped = sum(
            r.link.stats()["session"]["receive"]["users"].get(uid, {}).get("dropped", {}).values()
        )
        return got + dropped

    async with asyncio.timeout(WAIT):
        while any(accounted(uid) < sent[uid] for uid in user_ids):
            r.sink.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await r.sink.changed.wait()


@pytest.mark.parametrize(
    "participants_commit", [True, False], ids=["sim-commits", "engine-commits"]
)
async def test_engine_decrypts_every_speaker_across_two_epoch_changes(
    tmp_path: Path, participants_commit: bool
) -> None:
    alice_f = tone(tmp_path / "alice.wav", 330.0, 1.4)
    bob_f = tone(tmp_path / "bob.wav", 523.0, 3.6)
    carol_f = tone(tmp_path / "carol.wav", 784.0, 1.4)
    speakers = (
        ParticipantSpec("alice", alice_f, join_at=0.0, speak_after=0.6, leave_at=2.4),
        ParticipantSpec("bob", bob_f, join_at=0.0, speak_after=0.6),
        ParticipantSpec("carol", carol_f, join_at=3.0, speak_after=0.6),
    )
    scenario = SCENARIOS["modern"].with_(dave_participants_commit=participants_commit)
    async with rig(scenario, speakers) as r:
        await r.sup.connect(r.sim.world.voice_channel.id)
        rec = r.sim.record
        bot = r.sim.world.bot.id
        alice, bob, carol = r.uid("alice"), r.uid("bob"), r.uid("carol")
        await wait_done(r, 3)
        await settle(r, {alice, bob, carol})

        # Protocol version 1 on both ends.
        identify = rec.first("voice.identify", user_id=bot)
        assert identify is not None and identify["dave_max"] == 1 and identify["dave_version"] == 1
        (handler,) = r.handlers
        assert handler.member.protocol_version == 1
        session = r.link.session
        assert session is not None and session.dave_protocol_version == 1

        # The delivery service recorded the leave and the join as two epoch changes.
        epochs = rec.of("dave.epoch")
        left = [e for e in epochs if e["removed"] == [alice]]
        joined = [e for e in epochs if carol in e["added"]]
        assert len(left) == 1 and len(joined) == 1
        assert left[0]["epoch"] < joined[0]["epoch"]
        assert set(joined[0]["members"]) == {bot, bob, carol}
        assert all(e["committer"] != alice for e in epochs[epochs.index(left[0]) :])
        if not participants_commit:
            # Only the engine committed: its commits and Welcomes built every epoch.
            assert {e["committer"] for e in epochs} == {bot}
            # Only races are rejected: a commit that missed a proposal appended meanwhile
            # (alice and bob join together), or one that lost to another commit.
            reasons = {e["reason"] for e in rec.of("dave.rejected")}
            assert reasons <= {"proposals_mismatch", "stale_epoch"}
        executed = {e["transition_id"] for e in rec.of("dave.execute")}
        assert {left[0]["transition_id"], joined[0]["transition_id"]} <= executed
        # The engine went through those epochs too, and ends in the last one.
        assert {left[0]["epoch"], joined[0]["epoch"]} <= set(handler.member.epochs)
        assert handler.member.epoch == epochs[-1]["epoch"]
        assert handler.member.group_user_ids == {bot, bob, carol}

        # What went out was DAVE (the simulator counted it) and the engine decrypted it.
        delivery = r.voice.dave
        assert isinstance(delivery, MlsDelivery)
        call = delivery.calls[r.sim.world.voice_channel.id]
        for uid in (alice, bob, carol):
            assert call.frames[uid].encrypted > 0
        assert handler.member.errors == {}
        stats = r.link.stats()["session"]["receive"]
        # Every participant's audio is its own source, across both changes.
        sources = {alice: alice_f, bob: bob_f, carol: carol_f}
        for uid, source in sources.items():
            frames = frames_of(r.sink, uid)
            assert not any(f.opus.endswith(DAVE_MARKER) for f in frames)
            audio = decoded(frames)
            assert similarity(audio, source) > 0.8, uid
            for other, other_source in sources.items():
                if other != uid:
                    assert similarity(audio, other_source) < 0.5
        # bob spoke through both epoch changes and was heard before, between and after them.
        # (A sender switches keys when it processes a commit; frames that overtake the
        # commit on its way to the engine fail, as with real clients: a handful at most.)
        bob_frames = frames_of(r.sink, bob)
        t_left, t_joined = left[0].at, joined[0].at
        assert any(f.arrival < t_left for f in bob_frames)
        assert any(t_left < f.arrival < t_joined for f in bob_frames)
        assert any(f.arrival > t_joined for f in bob_frames)
        bob_dropped = stats["users"][bob]["dropped"]
        assert set(bob_dropped) <= {"dave_auth"}, bob_dropped
        # Frames that overtake a commit fail, a handful per transition at most: the two
        # changes (alice leaving, carol joining) may cost bob at most PER_TRANSITION each.
        failed = sum(bob_dropped.values())
        assert failed <= 2 * PER_TRANSITION, bob_dropped
        # Every other frame of bob's arrived (silence frames are neither encrypted nor counted).
        spoken = [f for f in bob_frames if f.opus != OPUS_SILENCE]
        assert len(spoken) == call.frames[bob].encrypted + call.frames[bob].plain - failed


async def test_corrupted_dave_frames_are_dropped_not_played(tmp_path: Path) -> None:
    good_f = tone(tmp_path / "good.wav", 523.0, 1.5)
    bad_f = tone(tmp_path / "bad.wav", 330.0, 1.5)
    speakers = (
        ParticipantSpec("good", good_f, speak_after=0.6),
        ParticipantSpec("mallory", bad_f, speak_after=0.6, corrupt_dave=True),
    )
    async with rig(SCENARIOS["modern"], speakers) as r:
        await r.sup.connect(r.sim.world.voice_channel.id)
        good, bad = r.uid("good"), r.uid("mallory")
        await wait_done(r, 2)
        await settle(r, {good, bad})
        delivery = r.voice.dave
        assert isinstance(delivery, MlsDelivery)
        counts = delivery.calls[r.sim.world.voice_channel.id].frames[bad]
        assert counts.corrupted > 0

        users = r.link.stats()["session"]["receive"]["users"]
        (handler,) = r.handlers
        # Every corrupted frame failed authentication, was counted, and reached no one.
        assert users[bad]["dropped"].get("dave_auth", 0) == counts.corrupted
        assert handler._decryptor.failures.get("dave_auth", 0) == counts.corrupted
        bad_frames = frames_of(r.sink, bad)
        # Only what it sent before its group was ready (plain, if anything) got through.
        assert len([f for f in bad_frames if f.opus != OPUS_SILENCE]) == counts.plain
        decoded(bad_frames)  # whatever got through is valid Opus
        assert not any(f.opus.endswith(DAVE_MARKER) for f in bad_frames)
        missing = sum(g.count for g in r.sink.gaps if g.user_id == bad and g.reason == "decrypt")
        assert missing > 0
        # The honest speaker next to it is unaffected.
        assert users[good]["dropped"].get("dave_auth", 0) == 0
        assert similarity(decoded(frames_of(r.sink, good)), good_f) > 0.8


async def test_no_dave_client_gets_4017_and_the_policy_names_the_fix() -> None:
    async with rig(SCENARIOS["dave-required-4017"], dave=False) as r:
        with pytest.raises(VoiceStopped) as stopped:
            await r.sup.connect(r.sim.world.voice_channel.id)
        assert stopped.value.code == 4017
        assert stopped.value.reason == DEFAULT_RULES[4017].reason
        assert "transport=engine" in stopped.value.reason
        assert "DAVE support" in stopped.value.reason
        assert r.sup.stop_reason == DEFAULT_RULES[4017].reason
        identify = r.sim.record.first("voice.op", op=0)
        assert identify is not None and identify["d"]["max_dave_protocol_version"] == 0
        close = r.sim.record.first("voice.close", code=4017)
        assert close is not None and close["by"] == "server"


async def test_a_dave_client_gets_into_dave_required(tmp_path: Path) -> None:
    speakers = (ParticipantSpec("bob", tone(tmp_path / "b.wav", 523.0, 1.0), speak_after=0.6),)
    async with rig(SCENARIOS["dave-required-4017"], speakers) as r:
        await r.sup.connect(r.sim.world.voice_channel.id)
        bob = r.uid("bob")
        await wait_done(r, 1)
        await settle(r, {bob})
        assert r.sim.record.first("voice.close", code=4017) is None
        (handler,) = r.handlers
        assert handler.member.ready and bob in handler.member.group_user_ids
        assert similarity(decoded(frames_of(r.sink, bob)), speakers[0].file) > 0.8
