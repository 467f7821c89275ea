"""The simulator's main gateway, driven by a bare WebSocket client."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from discordsim.app import Simulator
from discordsim.record import REDACTED, fingerprint
from discordsim.testing import StubVoiceSide
from discordsim.testing.rawgateway import RawGateway


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(lifetime=60) as s:
        s.world.voice = StubVoiceSide()
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def stub(sim: Simulator) -> StubVoiceSide:
    assert isinstance(sim.world.voice, StubVoiceSide)
    return sim.world.voice


async def test_identify_gets_ready_then_guild_create(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    gw = await RawGateway.open(http, sim)
    ready = await gw.identify(sim.token, intents=641)
    w = sim.world
    assert ready["user"]["id"] == str(w.bot.id) and ready["user"]["bot"] is True
    assert ready["application"]["id"] == str(w.application_id)
    assert ready["guilds"] == [{"id": str(w.guild_id), "unavailable": True}]
    assert ready["resume_gateway_url"] == sim.gateway_url
    assert len(ready["session_id"]) == 32

    guild = await gw.recv_dispatch("GUILD_CREATE")
    assert guild["id"] == str(w.guild_id)
    kinds = {c["name"]: c["type"] for c in guild["channels"]}
    assert kinds == {"general": 0, "Meeting Room": 2}
    names = {m["user"]["username"] for m in guild["members"]}
    assert names == {"alice", "notetaker-bot"}
    assert guild["member_count"] == 2
    assert [r["name"] for r in guild["roles"]] == ["@everyone"]

    identify = sim.record.ops(2)[0]
    assert identify["d"]["intents"] == 641
    assert identify["d"]["token"] == REDACTED
    assert all(sim.token not in repr(e.data) for e in sim.record)
    assert sim.world.dispatch is not None


async def test_heartbeat_is_acknowledged(sim: Simulator, http: aiohttp.ClientSession) -> None:
    gw = await RawGateway.open(http, sim)
    hello = await gw.recv()
    assert hello["d"]["heartbeat_interval"] == 41250
    await gw.send(1, None)
    assert (await gw.recv())["op"] == 11


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ({"op": 2, "d": {"token": "wrong", "intents": 0, "properties": {}}}, 4004),
        ({"op": 4, "d": {"guild_id": "1", "channel_id": None}}, 4003),
        ({"op": 99, "d": None}, 4003),
    ],
)
async def test_bad_first_op_closes(
    sim: Simulator, http: aiohttp.ClientSession, first: dict[str, object], code: int
) -> None:
    gw = await RawGateway.open(http, sim)
    await gw.recv()
    await gw.send(first["op"], first["d"])  # type: ignore[arg-type]
    assert await gw.closed_with() == code
    assert sim.record.first("gateway.close", code=code, by="server") is not None


async def test_unknown_op_and_garbage_close_with_their_codes(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    await gw.send(99, None)
    assert await gw.closed_with() == 4001

    gw = await RawGateway.open(http, sim)
    await gw.recv()
    await gw.ws.send_str("{not json")
    assert await gw.closed_with() == 4002


async def test_second_identify_closes_4005(sim: Simulator, http: aiohttp.ClientSession) -> None:
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    await gw.send(2, {"token": sim.token, "intents": 0, "properties": {}})
    assert await gw.closed_with() == 4005


async def test_zlib_stream_compresses_every_message(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    gw = await RawGateway.open(http, sim, zlib_stream=True)
    ready = await gw.identify(sim.token)
    assert ready["session_id"]
    await gw.recv_dispatch("GUILD_CREATE")
    # Hello, READY and GUILD_CREATE each arrive as one binary frame ending in the flush marker,
    # and a fresh inflater could not read the second frame alone: it is one stream.
    assert len(gw.raw_frames) == 3
    assert all(f.endswith(b"\x00\x00\xff\xff") for f in gw.raw_frames)
    with pytest.raises(zlib.error):
        zlib.decompressobj().decompress(gw.raw_frames[1])
    assert sim.record.of("gateway.connect")[0]["query"]["compress"] == "zlib-stream"


async def test_zstd_stream_when_the_client_asks(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """discord.py asks for zstd-stream when zstandard (or Python 3.14's compression.zstd)
    is installed."""
    pytest.importorskip("zstandard")
    gw = await RawGateway.open(http, sim, zstd_stream=True)
    ready = await gw.identify(sim.token)
    assert ready["session_id"]
    guild = await gw.recv_dispatch("GUILD_CREATE")
    assert guild["id"] == str(sim.world.guild_id)
    assert len(gw.raw_frames) == 3


async def test_op4_join_move_leave(sim: Simulator, http: aiohttp.ClientSession) -> None:
    w = sim.world
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    room = w.voice_channel
    other = w.add_channel("Other Room", 2)
    join = {"guild_id": str(w.guild_id), "self_mute": False, "self_deaf": True}

    await gw.send(4, {**join, "channel_id": str(room.id)})
    state = await gw.recv_dispatch("VOICE_STATE_UPDATE")
    server = await gw.recv_dispatch("VOICE_SERVER_UPDATE")
    assert state["channel_id"] == str(room.id) and state["user_id"] == str(w.bot.id)
    assert state["self_deaf"] is True and state["member"]["user"]["id"] == str(w.bot.id)
    grant = stub(sim).grants[0]
    assert server == {"token": grant.token, "guild_id": str(w.guild_id), "endpoint": "127.0.0.1:1"}
    assert stub(sim).sessions[0] == (state["session_id"], room.id)
    assert w.voice_states[w.bot.id].channel_id == room.id

    # A move: a fresh session id and a fresh grant.
    await gw.send(4, {**join, "channel_id": str(other.id)})
    moved = await gw.recv_dispatch("VOICE_STATE_UPDATE")
    server2 = await gw.recv_dispatch("VOICE_SERVER_UPDATE")
    assert moved["channel_id"] == str(other.id)
    assert moved["session_id"] != state["session_id"]
    assert server2["token"] == stub(sim).grants[1].token != grant.token

    await gw.send(4, {**join, "channel_id": None})
    left = await gw.recv_dispatch("VOICE_STATE_UPDATE")
    assert left["channel_id"] is None
    assert stub(sim).revoked == [(w.guild_id, w.bot.id)]
    assert w.bot.id not in w.voice_states

    # The record keeps the voice token out, but a fingerprint lets tests match it.
    recorded = sim.record.dispatches("VOICE_SERVER_UPDATE")
    assert [e["d"]["token"] for e in recorded] == [
        fingerprint(grant.token),
        fingerprint(stub(sim).grants[1].token),
    ]


async def test_op4_for_a_text_channel_is_ignored(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    w = sim.world
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    await gw.send(4, {"guild_id": str(w.guild_id), "channel_id": str(w.text_channel.id)})
    await sim.record.wait_for("voice.ignored")
    assert stub(sim).grants == []
    assert not sim.record.dispatches("VOICE_STATE_UPDATE")


async def test_op4_without_a_voice_side_only_sends_the_state(http: aiohttp.ClientSession) -> None:
    async with Simulator(lifetime=60) as sim:
        gw = await RawGateway.open(http, sim)
        await gw.identify(sim.token)
        w = sim.world
        await gw.send(4, {"guild_id": str(w.guild_id), "channel_id": str(w.voice_channel.id)})
        await gw.recv_dispatch("VOICE_STATE_UPDATE")
        await sim.record.wait_for("voice.no_side")
        assert not sim.record.dispatches("VOICE_SERVER_UPDATE")


async def test_world_dispatch_reaches_the_bot(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """What the voice side uses to announce a failover or a scripted participant."""
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    await gw.recv_dispatch("GUILD_CREATE")
    w = sim.world
    assert w.dispatch is not None
    await w.dispatch(
        w.bot.id, "VOICE_SERVER_UPDATE", {"token": "t2", "guild_id": "1", "endpoint": None}
    )
    got = await gw.recv_dispatch("VOICE_SERVER_UPDATE")
    assert got["endpoint"] is None

    alice = w.user("alice")
    rec = await sim.set_voice_state(alice, w.voice_channel)
    state = await gw.recv_dispatch("VOICE_STATE_UPDATE")
    assert state["user_id"] == str(alice.id) and state["session_id"] == rec.session_id
    assert stub(sim).grants == []  # only the bot's own joins get a voice server


async def test_guild_create_lists_present_voice_states(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    w = sim.world
    alice = w.user("alice")
    await sim.set_voice_state(alice, w.voice_channel)  # before anyone is connected: dropped
    assert sim.record.first("gateway.dispatch_dropped") is not None
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    guild = await gw.recv_dispatch("GUILD_CREATE")
    assert [(v["user_id"], v["channel_id"]) for v in guild["voice_states"]] == [
        (str(alice.id), str(w.voice_channel.id))
    ]


async def test_resume_replays_missed_dispatches(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    gw = await RawGateway.open(http, sim)
    ready = await gw.identify(sim.token)
    await gw.recv_dispatch("GUILD_CREATE")
    seen = gw.seq
    await sim.drop_gateway(4000)
    assert await gw.closed_with() == 4000
    # Sent while the bot is away: buffered for the resume.
    await sim.dispatch(sim.world.bot.id, "TYPING_START", {"channel_id": "1"})

    gw2 = await RawGateway.open(http, sim)
    await gw2.recv()
    await gw2.send(6, {"token": sim.token, "session_id": ready["session_id"], "seq": seen})
    missed = await gw2.recv()
    assert (missed["t"], missed["s"]) == ("TYPING_START", (seen or 0) + 1)
    resumed = await gw2.recv()
    assert resumed["t"] == "RESUMED"
    assert sim.record.ops(6)[0]["d"]["token"] == REDACTED


async def test_resume_of_unknown_session_is_invalid(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    gw = await RawGateway.open(http, sim)
    await gw.recv()
    await gw.send(6, {"token": sim.token, "session_id": "nope", "seq": 3})
    invalid = await gw.recv()
    assert invalid == {"op": 9, "d": False, "s": None, "t": None}


async def test_clean_close_ends_the_session_and_leaves_voice(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    w = sim.world
    gw = await RawGateway.open(http, sim)
    ready = await gw.identify(sim.token)
    await gw.send(4, {"guild_id": str(w.guild_id), "channel_id": str(w.voice_channel.id)})
    await gw.recv_dispatch("VOICE_SERVER_UPDATE")
    await gw.ws.close(code=1000)
    await sim.record.wait_for("gateway.close", by="client", code=1000)
    assert stub(sim).revoked == [(w.guild_id, w.bot.id)]
    assert w.bot.id not in w.voice_states

    gw2 = await RawGateway.open(http, sim)
    await gw2.recv()
    await gw2.send(6, {"token": sim.token, "session_id": ready["session_id"], "seq": 1})
    assert (await gw2.recv())["op"] == 9


async def test_request_guild_members(sim: Simulator, http: aiohttp.ClientSession) -> None:
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    await gw.send(
        8, {"guild_id": str(sim.world.guild_id), "query": "al", "limit": 0, "nonce": "n1"}
    )
    chunk = await gw.recv_dispatch("GUILD_MEMBERS_CHUNK")
    assert [m["user"]["username"] for m in chunk["members"]] == ["alice"]
    assert chunk["nonce"] == "n1"


async def test_reconnect_op7(sim: Simulator, http: aiohttp.ClientSession) -> None:
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    await gw.recv_dispatch("GUILD_CREATE")
    await sim.request_reconnect()
    assert (await gw.recv())["op"] == 7


async def test_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Simulator(host="0.0.0.0")


async def test_stops_by_itself(http: aiohttp.ClientSession) -> None:
    sim = Simulator(lifetime=0.05)
    await sim.start()
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    # The watchdog closes the gateway (1001, going away) and the listening socket.
    assert await gw.closed_with(timeout=10) == 1001
    async with asyncio.timeout(10):
        await sim.stopped.wait()
    assert sim.record.first("sim.expired") is not None
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(sim.api_base + "/gateway")
    await sim.stop()  # idempotent
