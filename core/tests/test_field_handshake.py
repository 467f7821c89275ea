"""The handshake edges seen in the field (field-behaviours.md L1-L3), engine vs simulator.

Each scenario makes the simulator do one thing real servers do that the docs do not show:
an IP discovery reply without the SSRC echoed (``discovery-variant``), Hello only after
Identify (``hello-late``), a VOICE_SERVER_UPDATE with ``endpoint: null`` before the real
one (``null-endpoint``). The engine must connect on its first attempt, with no reconnect,
and lose no audio. Assertions read the simulator's record and the supervisor's own events
and counters.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from notetaker.errors import VoiceTimeout
from notetaker.policy import ReconnectPolicy
from notetaker.session import StateChanged, VoiceState
from notetaker.voice.adapter import GatewayAdapter
from notetaker.voice.link import EngineLink

discordsim = pytest.importorskip("discordsim")

from discordsim.record import Entry, Record  # noqa: E402
from discordsim.scenarios import SCENARIOS  # noqa: E402
from discordsim.voice.participants import ParticipantSpec, write_tone  # noqa: E402
from notetaker_harness.engine_rig import engine_rig, watched_sink  # noqa: E402

POLICY = ReconnectPolicy(base_delay=0.05, max_delay=0.2, reset_wait=0.05, move_grace=0.3)
WAIT = 15.0


def _bot_conn_entries(rec: Record, conn: str) -> list[Entry]:
    return [e for e in rec if e.get("conn") == conn and e.kind in ("voice.op", "voice.send")]


async def _connect_and_receive(scenario: str, tmp_path: Path) -> tuple[Any, Any, Any]:
    """Connect the engine in ``scenario`` with one scripted speaker; check the connect took
    exactly one attempt and every frame the speaker sent arrived. Returns the record, the
    link's stats and the bot's voice connection id, for the scenario's own checks."""
    alice = ParticipantSpec("alice", write_tone(tmp_path / "a.wav", seconds=1.0), speak_after=0.2)
    sink = watched_sink(WAIT)
    async with engine_rig(SCENARIOS[scenario], (alice,), policy=POLICY, sink=sink) as (
        sim,
        _voice,
        _main,
        link,
        sup,
    ):
        events = sup.events()
        await sup.connect(sim.world.voice_channel.id)
        assert sup.state is VoiceState.CONNECTED
        rec = sim.record
        done = await rec.wait_for("voice.participant_done", timeout=WAIT)
        sent = [e["seq"] for e in rec.of("voice.rtp_out", action="sent")]
        assert len(sent) == done["sent"] > 0
        await sink.until(lambda: len(sink.frames) >= len(sent))
        # Every frame, in order, nothing lost, no gap.
        assert [f.sequence for f in sink.frames] == sent
        assert {f.user_id for f in sink.frames} == {sim.world.user("alice").id}
        assert sink.gaps == []
        stats = link.stats()
        receive = stats["session"]["receive"]
        assert receive["delivered"] == len(sent)
        assert receive["lost"] == 0
        # The supervisor connected on its first attempt: no failure, no reconnect, one
        # voice session, and its state changes were exactly join -> connect -> connected.
        sup_stats = sup.stats()
        assert sup_stats["attempt"] == 1
        assert sup_stats["consecutive_failures"] == 0
        assert sup_stats["reconnects"] == 0 and sup_stats["resumes"] == 0
        assert sup_stats["voice_sessions"] == 1
        changes: list[VoiceState] = []
        while len(changes) < 3:
            event = await events.get(WAIT)
            if isinstance(event, StateChanged):
                changes.append(event.new)
        assert changes == [VoiceState.JOINING, VoiceState.CONNECTING, VoiceState.CONNECTED]
        bot = sim.world.bot.id
        (identify,) = rec.of("voice.identify", user_id=bot)
        assert len(rec.of("voice.connect")) == 1  # one voice WebSocket in all
        return rec, stats, identify["conn"]


async def test_discovery_variant_reply_without_ssrc(tmp_path: Path) -> None:
    rec, stats, conn = await _connect_and_receive("discovery-variant", tmp_path)
    discovery = rec.first("voice.discovery", conn=conn)
    assert discovery is not None
    assert discovery["ssrc"] == stats["session"]["ssrc"] != 0
    assert discovery["reply_ssrc"] == 0  # not echoed, and the engine took it
    select = rec.first("voice.select", conn=conn)
    assert select is not None and tuple(select["address"]) == tuple(discovery["address"])


async def test_hello_late_identify_goes_first(tmp_path: Path) -> None:
    rec, _, conn = await _connect_and_receive("hello-late", tmp_path)
    order = [(e.kind, e.get("op")) for e in _bot_conn_entries(rec, conn)]
    assert order[:2] == [("voice.op", 0), ("voice.send", 8)]  # Identify, then Hello
    assert order.count(("voice.send", 8)) == 1
    # Hello's interval drives heartbeats: v8 ones with seq_ack reach the server.
    await rec.wait_for("voice.seq_ack", timeout=WAIT, conn=conn)


async def test_null_endpoint_waits_for_the_real_one(tmp_path: Path) -> None:
    rec, _, _ = await _connect_and_receive("null-endpoint", tmp_path)
    endpoints = [e["d"]["endpoint"] for e in rec.dispatches("VOICE_SERVER_UPDATE")]
    assert len(endpoints) == 2 and endpoints[0] is None and endpoints[1]
    (grant,) = rec.of("voice.grant")
    assert endpoints[1] == grant["endpoint"]


# -- EngineLink alone: what a null endpoint means during a join -----------------------------


class ScriptedAdapter(GatewayAdapter):
    """Answers op 4 with the voice state and the scripted VOICE_SERVER_UPDATE payloads."""

    def __init__(self, servers: list[dict[str, Any]]) -> None:
        self.servers = servers
        self.link: EngineLink | None = None

    async def send_voice_state(
        self, guild_id: int, channel_id: int | None, self_mute: bool, self_deaf: bool
    ) -> None:
        link = self.link
        assert link is not None
        if channel_id is None:
            return
        link.on_voice_state_update(
            {"user_id": "2", "guild_id": "1", "channel_id": str(channel_id), "session_id": "s"}
        )
        for payload in self.servers:
            asyncio.get_running_loop().call_soon(link.on_voice_server_update, payload)


def _link(servers: list[dict[str, Any]], timeout: float) -> EngineLink:
    adapter = ScriptedAdapter(servers)
    link = EngineLink(adapter, guild_id=1, user_id=2, voice_state_timeout=timeout)
    adapter.link = link
    return link


async def test_a_null_endpoint_is_not_the_answer_to_a_join() -> None:
    null = {"guild_id": "1", "token": "field-null-token", "endpoint": None}
    real = {**null, "endpoint": "127.0.0.1:4321"}
    link = _link([null, real], timeout=WAIT)
    await link.request_voice_state(3)
    creds = link._credentials()
    assert (creds.endpoint.host, creds.endpoint.port) == ("127.0.0.1", 4321)


async def test_only_null_endpoints_time_out_and_say_so() -> None:
    null = {"guild_id": "1", "token": "field-null-token", "endpoint": None}
    link = _link([null], timeout=0.2)
    with pytest.raises(VoiceTimeout, match=r"with an endpoint \(only 1 with endpoint null\)"):
        await link.request_voice_state(3)
