"""Field media behaviours against the engine, under DAVE (field-behaviours.md M3, op5-late):
RTP padding, padding-only packets at silence boundaries, and a speaker's first packets
arriving before the op 5 that names them. Each costs no audio: the budget is 0 frames.

Real TLS, real UDP, real DAVE (davey members in the simulator, the engine's davey), real
Opus; the simulator's record says what was sent, the sink what arrived.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("discordsim")

from discordsim.app import Simulator
from discordsim.record import Entry
from discordsim.scenarios import SCENARIOS, Scenario
from discordsim.voice.participants import ParticipantSpec, write_tone
from discordsim.voice.server import VoiceServer
from notetaker.policy import ReconnectPolicy
from notetaker.session import Reconnected, Resumed
from notetaker.supervisor import Supervisor
from notetaker.voice.dave import DaveProtocolHandler
from notetaker.voice.dave_hook import DaveHandler
from notetaker.voice.link import EngineLink
from notetaker.voice.session_state import VoiceCredentials
from notetaker_harness.engine_rig import engine_rig, watched_sink

POLICY = ReconnectPolicy(base_delay=0.05, max_delay=0.2, reset_wait=0.05, move_grace=0.3)
WAIT = 20.0


@dataclass
class Rig:
    sim: Simulator
    voice: VoiceServer
    link: EngineLink
    sup: Supervisor
    sink: Any

    def uid(self, name: str) -> int:
        return self.sim.world.user(name).id

    def bot_conn(self) -> Any:
        (session,) = [s for s in self.voice.sessions.values() if s.user_id == self.sim.world.bot.id]
        return session.conn_id

    def out(self, user: int, *kinds: str) -> list[Entry]:
        """What the simulator sent the bot of ``user``'s stream, of the given kinds."""
        ssrc = next(p.ssrc for p in self.voice.participants if p.user_id == user)
        return [
            e
            for e in self.sim.record.of("voice.rtp_out", conn=self.bot_conn(), ssrc=ssrc)
            if e.get("what") in kinds
        ]

    def receive(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.link.stats()["session"]["receive"]
        return stats


@contextlib.asynccontextmanager
async def rig(scenario: Scenario, speakers: tuple[ParticipantSpec, ...]) -> AsyncIterator[Rig]:
    def make_dave(creds: VoiceCredentials) -> DaveHandler:
        assert creds.channel_id is not None
        return DaveProtocolHandler(creds.user_id, creds.channel_id)

    sink = watched_sink(WAIT)
    async with engine_rig(scenario, speakers, policy=POLICY, sink=sink, dave=make_dave) as (
        sim,
        voice,
        _main,
        link,
        sup,
    ):
        r = Rig(sim, voice, link, sup, sink)
        await sup.connect(sim.world.voice_channel.id)
        events = sup.events()
        yield r
        # Neither scenario is a reason to reconnect: the supervisor did nothing.
        assert not [e for e in events.drain() if isinstance(e, Reconnected | Resumed)]
        assert sup.stats()["reconnects"] == 0


async def _all_sent(r: Rig, names: list[str]) -> None:
    for name in names:
        await r.sim.record.wait_for("voice.participant_done", timeout=WAIT, user_id=r.uid(name))


async def _arrived(r: Rig, user: int, count: int) -> list[int]:
    await r.sink.until(lambda: len([f for f in r.sink.frames if f.user_id == user]) >= count)
    return [f.sequence for f in r.sink.frames if f.user_id == user]


def _pausing_speaker(tmp_path: Path, name: str, hz: float) -> ParticipantSpec:
    # Three sentences with pauses between them: a silence boundary after each.
    tone = write_tone(tmp_path / f"{name}.wav", hz, seconds=0.6)
    return ParticipantSpec(name, tone, speak_after=1.0, repeat=3, gap_s=0.5)


async def test_padding_and_padding_only_packets_cost_no_audio(tmp_path: Path) -> None:
    # dave starts once the others are done: its frames come after their last padding-only
    # burst on the same socket, so once a few arrive, every earlier packet was processed.
    last = ParticipantSpec("dave", write_tone(tmp_path / "dave.wav", 880, 5.0), speak_after=5.0)
    speakers = (_pausing_speaker(tmp_path, "bob", 330), _pausing_speaker(tmp_path, "carol", 550))
    scenario = SCENARIOS["padding"].with_(padding_pct=20.0)  # more padded packets per run
    async with rig(scenario, (*speakers, last)) as r:
        await _all_sent(r, ["bob", "carol"])
        await _arrived(r, r.uid("dave"), 10)
        padding_only = 0
        for name in ("bob", "carol"):
            user = r.uid(name)
            audio = [e["seq"] for e in r.out(user, "audio", "padded")]
            padded = r.out(user, "padded")
            bursts = r.out(user, "padding-only")
            # The scenario did what it says: padded audio, and a burst at each of the
            # three silence boundaries.
            assert padded and len(bursts) == 3 * scenario.padding_burst
            padding_only += len(bursts)
            # Every audio frame arrived, in order, none lost, none failed, no gap.
            assert await _arrived(r, user, len(audio)) == audio
            users = r.receive()["users"]
            assert users[user]["dropped"] == {}
            assert users[user]["lost"] == 0
        assert [g for g in r.sink.gaps if g.user_id != r.uid("dave")] == []
        receive = r.receive()
        # Padding-only packets are neither decrypt failures nor gaps: counted as such.
        assert receive["ignored"].get("padding_only") == padding_only
        assert not any(k.startswith("dave") for k in receive["dropped"])


async def test_packets_before_op5_are_held_and_played_not_dropped(tmp_path: Path) -> None:
    speakers = (
        ParticipantSpec("bob", write_tone(tmp_path / "bob.wav", 330, 1.0), speak_after=1.0),
    )
    scenario = SCENARIOS["op5-late"]
    async with rig(scenario, speakers) as r:
        await _all_sent(r, ["bob"])
        bob = r.uid("bob")
        late = r.sim.record.of("voice.op5_late", user_id=bob)
        assert len(late) == 1  # the bot's session got packets before op 5
        op5 = r.sim.record.first("voice.send", conn=r.bot_conn(), op=5)
        first_out = r.out(bob, "audio")[0]
        assert op5 is not None and op5.seq > first_out.seq  # op 5 came later
        sent = [e["seq"] for e in r.out(bob, "audio")]
        # All of them, the first op5_late_packets included, in order; nothing dropped.
        assert await _arrived(r, bob, len(sent)) == sent
        assert r.receive()["dropped"] == {}
        assert r.sink.gaps == []
