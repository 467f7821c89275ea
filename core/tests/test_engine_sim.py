"""The receive engine against the simulator: real TLS WebSockets, real UDP, real crypto.

The supervisor drives :class:`EngineLink` with the default close-code table; the main
gateway is played by :class:`MainGatewayClient` over the simulator's real main gateway.
Assertions read the simulator's record (what it saw and sent), never our own logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from notetaker.errors import VoiceStopped
from notetaker.policy import DEFAULT_RULES, ReconnectPolicy
from notetaker.session import (
    Reconnected,
    Resumed,
    SpeakerChanged,
    Stopped,
    VoiceEvent,
    VoiceState,
)
from notetaker.supervisor import EventSubscription, Supervisor
from notetaker.voice.link import EngineLink
from notetaker.voice.transport_crypto import choose_mode

discordsim = pytest.importorskip("discordsim")

from discordsim.app import Simulator  # noqa: E402
from discordsim.record import Entry  # noqa: E402
from discordsim.scenarios import MODERN_MODES, SCENARIOS, Scenario  # noqa: E402
from discordsim.voice.gateway import VoiceSession  # noqa: E402
from discordsim.voice.participants import ParticipantSpec, write_tone  # noqa: E402
from discordsim.voice.server import VoiceServer  # noqa: E402
from notetaker_harness.engine_rig import MainGatewayClient, engine_rig, watched_sink  # noqa: E402

#: Fast, but the same table as production.
POLICY = ReconnectPolicy(base_delay=0.05, max_delay=0.2, reset_wait=0.05, move_grace=0.3)
WAIT = 15.0
E = TypeVar("E", bound=VoiceEvent)


@dataclass
class Rig:
    sim: Simulator
    voice: VoiceServer
    main: MainGatewayClient
    link: EngineLink
    sup: Supervisor
    events: EventSubscription
    sink: Any  #: notetaker_harness.engine_rig.watched_sink()

    def server_session(self) -> VoiceSession:
        return next(s for s in self.voice.sessions.values() if s.user_id == self.sim.world.bot.id)

    async def next_event(self, kind: type[E], within: float = WAIT) -> E:
        """The next event of ``kind`` the supervisor published (others are skipped)."""
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get(within)
                if isinstance(event, kind):
                    return event


@contextlib.asynccontextmanager
async def rig(scenario: Scenario, speakers: tuple[ParticipantSpec, ...] = ()) -> AsyncIterator[Rig]:
    sink = watched_sink(WAIT)
    async with engine_rig(scenario, speakers, policy=POLICY, sink=sink) as (
        sim,
        voice,
        main,
        link,
        sup,
    ):
        yield Rig(sim, voice, main, link, sup, sup.events(), sink)


def identifies(record: list[Entry]) -> list[Entry]:
    return [e for e in record if e.kind == "voice.op" and e.get("op") == 0]


async def test_modern_connects_and_receives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = ParticipantSpec("alice", write_tone(tmp_path / "a.wav", seconds=1.0), speak_after=0.2)
    async with rig(SCENARIOS["modern"], (alice,)) as r:
        await r.sup.connect(r.sim.world.voice_channel.id)
        assert r.sup.state is VoiceState.CONNECTED
        rec = r.sim.record
        # The endpoint's non-443 port was kept: we reached the primary listener.
        connect = rec.first("voice.connect")
        assert connect is not None
        assert connect["listener"] == "primary" and connect["port"] == r.voice.primary.port
        assert connect["path"] == "/?v=8"
        (identify,) = identifies(list(rec))
        grant = rec.of("voice.grant")[-1]
        assert identify["d"]["token"] == grant["token"]
        assert identify["d"]["max_dave_protocol_version"] == 0
        select = rec.first("voice.select")
        assert select is not None and select["mode"] == choose_mode(MODERN_MODES)
        await rec.wait_for("voice.speaking", timeout=WAIT)
        # v8 heartbeats carry seq_ack.
        await rec.wait_for("voice.seq_ack", timeout=WAIT)

        # alice's audio arrives, mapped to her, complete and in order.
        alice_id = r.sim.world.user("alice").id
        changed = await r.next_event(SpeakerChanged)
        assert changed.user_id == alice_id
        done = await rec.wait_for("voice.participant_done", timeout=WAIT)
        sent = [e["seq"] for e in rec.of("voice.rtp_out", action="sent")]
        assert len(sent) == done["sent"]
        await r.sink.until(lambda: len(r.sink.frames) >= len(sent))
        assert [f.sequence for f in r.sink.frames] == sent
        assert {f.user_id for f in r.sink.frames} == {alice_id}
        assert r.sink.gaps == []
        stats = r.link.stats()["session"]["receive"]
        assert stats["delivered"] == len(sent) and stats["lost"] == 0
        session = r.link.session
        assert session is not None
        token = session.credentials.token
        assert token not in caplog.text  # not even before redaction


async def test_crash_4015_resumes_without_identify(tmp_path: Path) -> None:
    alice = ParticipantSpec("alice", write_tone(tmp_path / "a.wav", seconds=1.0), speak_after=0.1)
    async with rig(SCENARIOS["crash-4015"].with_(crash_after_s=0.3), (alice,)) as r:
        await r.sup.connect(r.sim.world.voice_channel.id)
        resumed = await r.next_event(Resumed)
        assert r.sup.state is VoiceState.CONNECTED
        rec = r.sim.record
        crash = rec.first("voice.crash")
        assert crash is not None
        resume = await rec.wait_for("voice.resumed", timeout=WAIT)
        assert resume["session"] == crash["conn"]
        assert len(identifies(list(rec))) == 1  # no new Identify
        assert len(rec.ops(4)) == 1  # and no new voice state
        (op7,) = [e for e in rec.of("voice.op") if e.get("op") == 7]
        seen = [
            e["seq"]
            for e in rec.entries[: crash.seq]
            if e.kind == "voice.send" and e["conn"] == crash["conn"] and e["seq"] is not None
        ]
        assert seen, "the server sent sequenced ops (11, 18, 20, 5) before the crash"
        assert op7["d"]["seq_ack"] == seen[-1]
        assert resumed.attempt == r.sup.attempt
        assert r.link.stats()["resumes"] == 1
        # UDP, SSRC and key outlived the WebSocket: alice's audio is all there.
        done = await rec.wait_for("voice.participant_done", timeout=WAIT)
        await r.sink.until(lambda: len(r.sink.frames) >= done["sent"])
        sent = [e["seq"] for e in rec.of("voice.rtp_out", action="sent")]
        assert [f.sequence for f in r.sink.frames] == sent


async def test_stale_session_4006_starts_a_new_session() -> None:
    async with rig(SCENARIOS["stale-session-4006"]) as r:
        channel = r.sim.world.voice_channel.id
        await r.sup.connect(channel)
        rec = r.sim.record
        # The library loses a voice state change: our session and token go stale.
        r.main.hold_voice = True
        await r.sim.gateway.set_voice_state(r.sim.world.bot.id, channel)
        await r.main.wait_held(2)  # VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE
        r.main.hold_voice = False
        before = len(rec)
        await r.server_session().close(4015, "test crash")

        await r.next_event(Reconnected)
        assert r.sup.state is VoiceState.CONNECTED
        closes = [e for e in rec.entries[before:] if e.kind == "voice.close"]
        assert 4006 in [e["code"] for e in closes]
        later = rec.entries[before:]
        assert any(e.kind == "gateway.op" and e["op"] == 4 for e in later)  # fresh voice state
        new_identify = identifies(later)[-1]
        assert new_identify["d"]["token"] == rec.of("voice.grant")[-1]["token"]  # new token
        assert r.link.stats()["voice_sessions"] == 2


async def test_failover_identifies_at_the_new_endpoint() -> None:
    async with rig(SCENARIOS["failover"].with_(failover_after_s=0.3)) as r:
        await r.sup.connect(r.sim.world.voice_channel.id)
        await r.next_event(Reconnected)
        assert r.sup.state is VoiceState.CONNECTED
        rec = r.sim.record
        failover = await rec.wait_for("voice.failover", timeout=WAIT)
        conn = rec.first("voice.connect", listener="failover")
        assert conn is not None
        (identify,) = [e for e in identifies(list(rec)) if e["conn"] == conn["conn"]]
        assert identify["d"]["token"] == failover["token"]
        assert identify["d"]["token"] != identifies(list(rec))[0]["d"]["token"]
        assert r.link.stats()["voice_sessions"] == 2


async def test_kick_4014_stops_with_the_user_facing_reason() -> None:
    async with rig(SCENARIOS["kick-4014"].with_(kick_after_s=0.3)) as r:
        await r.sup.connect(r.sim.world.voice_channel.id)
        stopped = await r.next_event(Stopped)
        assert stopped.code == 4014
        assert stopped.reason == DEFAULT_RULES[4014].reason
        assert r.sup.state is VoiceState.STOPPED
        assert r.sup.stop_reason == DEFAULT_RULES[4014].reason
        assert len(identifies(list(r.sim.record))) == 1  # it did not reconnect by itself


async def test_udp_loss_delivers_every_surviving_packet_in_order(tmp_path: Path) -> None:
    alice = ParticipantSpec("alice", write_tone(tmp_path / "a.wav", seconds=3.0), speak_after=0.2)
    scenario = SCENARIOS["udp-loss"].with_(loss_pct=10.0, reorder_pct=5.0, dup_pct=2.0, seed=7)
    async with rig(scenario, (alice,)) as r:
        await r.sup.connect(r.sim.world.voice_channel.id)
        rec = r.sim.record
        await rec.wait_for("voice.participant_done", timeout=WAIT)
        out = rec.of("voice.rtp_out")
        actions = [e["action"] for e in out]
        # A packet held back for reordering goes out after the next one that is sent; one
        # still held at the end never went out.
        last_sent = max(i for i, a in enumerate(actions) if a in ("sent", "duplicated"))
        expected = [
            e["seq"]
            for i, e in enumerate(out)
            if e["action"] in ("sent", "duplicated") or (e["action"] == "held" and i < last_sent)
        ]
        dropped = {e["seq"] for e in out if e["action"] == "dropped"}
        assert dropped and "held" in actions and "duplicated" in actions

        await r.sink.until(lambda: len(r.sink.frames) >= len(expected))
        got = [f.sequence for f in r.sink.frames]
        assert got == expected  # every surviving packet, once, in RTP order
        gaps = {(g.first_sequence + k) & 0xFFFF for g in r.sink.gaps for k in range(g.count)}
        first, last = out.index(next(e for e in out if e["seq"] == expected[0])), last_sent
        inside = {e["seq"] for e in out[first:last] if e["action"] == "dropped"}
        assert inside <= gaps  # every loss between the first and last packet is reported
        assert not gaps & set(got)
        assert {g.reason for g in r.sink.gaps} == {"loss"}
        stats = r.link.stats()["session"]["receive"]
        assert stats["delivered"] == len(got)
        assert stats["lost"] == len(gaps)
        assert stats["dropped"].get("duplicate", 0) == actions.count("duplicated")


async def test_dave_required_4017_during_the_handshake_stops() -> None:
    async with rig(SCENARIOS["dave-required-4017"]) as r:
        with pytest.raises(VoiceStopped) as stopped:
            await r.sup.connect(r.sim.world.voice_channel.id)
        assert stopped.value.code == 4017
        assert stopped.value.reason == DEFAULT_RULES[4017].reason
        (identify,) = identifies(list(r.sim.record))
        assert identify["d"]["max_dave_protocol_version"] == 0
