"""Assertions shared by the per-library login tests (simulator/tests/test_login_*.py)."""

from __future__ import annotations

from discordsim.app import Simulator
from discordsim.record import REDACTED, fingerprint
from discordsim.testing import StubVoiceSide

NOTES = b"# Notes\n- alice: decided things\n"


def assert_ready_and_guild(sim: Simulator) -> None:
    """The library connected with v10 JSON (and a compressed stream) and got its guild."""
    connect = sim.record.of("gateway.connect")[0]["query"]
    assert connect["v"] == "10" and connect.get("encoding", "json") == "json"
    assert connect["compress"] in ("zlib-stream", "zstd-stream")
    assert [e["t"] for e in sim.record.of("gateway.dispatch")[:2]] == ["READY", "GUILD_CREATE"]
    assert not sim.record.of("rest.unknown"), sim.record.of("rest.unknown")


def assert_voice_handshake(sim: Simulator) -> None:
    """op 4 for the voice channel produced VOICE_STATE_UPDATE + VOICE_SERVER_UPDATE from a
    fresh grant."""
    w = sim.world
    stub = sim.world.voice
    assert isinstance(stub, StubVoiceSide)
    join = sim.record.ops(4)[0]["d"]
    # Libraries send the ids as ints or strings; Discord takes both.
    assert (int(join["guild_id"]), int(join["channel_id"])) == (w.guild_id, w.voice_channel.id)
    state = sim.record.dispatches("VOICE_STATE_UPDATE", user_id=str(w.bot.id))[0]["d"]
    server = sim.record.dispatches("VOICE_SERVER_UPDATE")[0]["d"]
    assert state["channel_id"] == str(w.voice_channel.id)
    assert stub.sessions[0] == (state["session_id"], w.voice_channel.id)
    assert server["endpoint"] == stub.endpoint
    assert server["token"] == fingerprint(stub.grants[0].token)


async def assert_left_voice(sim: Simulator) -> None:
    """The library sent op 4 with no channel; the voice state went and the grant was revoked."""
    w = sim.world
    stub = sim.world.voice
    assert isinstance(stub, StubVoiceSide)
    await sim.record.wait_for("gateway.op", lambda e: e["d"]["channel_id"] is None, op=4)
    await sim.record.wait_for("voice.state", channel_id=None, user_id=w.bot.id)
    assert stub.revoked == [(w.guild_id, w.bot.id)]


async def assert_resumes(sim: Simulator) -> None:
    """Drop the bot's gateway; the library resumes its session instead of identifying."""
    session_id = sim.record.dispatches("READY")[0]["d"]["session_id"]
    await sim.drop_gateway(4000)
    resume = await sim.record.wait_op(6)
    assert resume["d"]["session_id"] == session_id
    assert resume["d"]["token"] == REDACTED
    await sim.record.wait_dispatch("RESUMED")
    assert len(sim.record.ops(2)) == 1
