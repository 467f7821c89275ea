"""The handshake-edge scenarios (field-behaviours.md L1-L3) do what their rows say.

Checked from the wire and the record, with the small test client: ``discovery-variant``
answers IP discovery with SSRC 0, ``hello-late`` sends Hello only after Identify (or
Resume), ``null-endpoint`` dispatches a join's VOICE_SERVER_UPDATE with ``endpoint: null``
before the real one. ``modern`` is the control: it does none of these.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest
from voiceclient import XCHACHA, VoiceClient, join, simulator

from discordsim import cli
from discordsim.app import Simulator
from discordsim.record import Entry, fingerprint
from discordsim.scenarios import SCENARIOS
from discordsim.testing.rawgateway import RawGateway
from discordsim.voice import VoiceServer

DISCOVERY = struct.Struct(">HHI64sH")


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def _discovery_reply(server: VoiceServer, ssrc: int) -> bytes:
    """Send one IP discovery request for ``ssrc``; the raw reply."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _Udp, local_addr=("127.0.0.1", 0), remote_addr=(server.udp_host, server.udp_port)
    )
    try:
        transport.sendto(DISCOVERY.pack(1, 70, ssrc, b"", 0))
        return await asyncio.wait_for(proto.queue.get(), 10)
    finally:
        transport.close()


@pytest.mark.parametrize(("scenario", "echoed"), [("discovery-variant", False), ("modern", True)])
async def test_discovery_variant_replies_with_ssrc_zero(scenario: str, echoed: bool) -> None:
    async with simulator(scenario) as server:
        j = await join(server)  # the test client ignores the reply's SSRC, as libraries do
        ssrc = j.ready["ssrc"]
        reply = await _discovery_reply(server, ssrc)
        kind, length, reply_ssrc, address, port = DISCOVERY.unpack(reply)
        # Everything but the SSRC is the documented layout.
        assert (kind, length, len(reply)) == (2, 70, 74)
        assert address.rstrip(b"\x00") == b"127.0.0.1" and port > 0
        assert reply_ssrc == (ssrc if echoed else 0)
        entries = server.record.of("voice.discovery", ssrc=ssrc)
        assert [e["reply_ssrc"] for e in entries] == [reply_ssrc] * len(entries)
        await j.client.aclose()


def _order(entries: list[Entry], conn: str) -> list[tuple[str, int | None]]:
    """What one connection's messages were, in order: ("in", op) or ("out", op)."""
    return [
        ("in" if e.kind == "voice.op" else "out", e.get("op"))
        for e in entries
        if e.get("conn") == conn and e.kind in ("voice.op", "voice.send")
    ]


async def test_hello_late_sends_hello_only_after_identify() -> None:
    async with simulator("hello-late") as server:
        world = server.world
        grant = server.grant(world.guild_id, world.bot.id, "sess-late", world.voice_channel.id)
        client = VoiceClient(server.tls.client_context())
        await client.connect(grant.endpoint or "", hello=False)
        # A heartbeat before Identify is answered, and no Hello came before its ACK.
        await client.send(3, {"t": 1, "seq_ack": -1})
        await client.recv(6)
        assert client.ops(8) == []
        ready = await client.identify(grant, "sess-late")
        hello = client.ops(8)
        assert len(hello) == 1 and hello[0]["d"]["v"] == 8
        assert hello[0]["d"]["heartbeat_interval"] == server.scenario.heartbeat_interval_ms
        assert ready["ssrc"] > 0
        (conn,) = {e["conn"] for e in server.record.of("voice.connect")}
        assert _order(list(server.record), conn) == [
            ("in", 3),
            ("out", 6),
            ("in", 0),
            ("out", 8),  # Hello answers Identify ...
            ("out", 2),  # ... and comes before Ready
        ]
        await client.aclose()


async def test_hello_late_answers_resume_with_hello_too() -> None:
    async with simulator(SCENARIOS["hello-late"].with_(crash_after_s=0.2)) as server:
        world = server.world
        grant = server.grant(world.guild_id, world.bot.id, "sess-late", world.voice_channel.id)
        client = VoiceClient(server.tls.client_context())
        await client.connect(grant.endpoint or "", hello=False)
        ready = await client.identify(grant, "sess-late")  # Identify, Hello, Ready
        await client.select(XCHACHA, await client.discover(ready))
        assert await client.closed() == 4015  # the crash: the session stays resumable
        await client.connect(server.endpoint, hello=False)
        resume = {
            "server_id": str(grant.guild_id),
            "session_id": "sess-late",
            "token": grant.token,
            "seq_ack": client.last_seq,
        }
        await client.send(7, resume)
        await client.recv(9)
        resumed = await server.record.wait_for("voice.resumed")
        order = _order(list(server.record), resumed["conn"])
        assert order[:3] == [("in", 7), ("out", 8), ("out", 9)]  # Resume, Hello, Resumed
        await client.aclose()


async def test_modern_sends_hello_at_open() -> None:
    async with simulator("modern") as server:
        j = await join(server)
        (identify,) = server.record.of("voice.identify")
        conn = identify["conn"]
        assert _order(list(server.record), conn)[:2] == [("out", 8), ("in", 0)]
        await j.client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _joined(http: aiohttp.ClientSession, sim: Simulator) -> RawGateway:
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    w = sim.world
    d = {"guild_id": str(w.guild_id), "channel_id": str(w.voice_channel.id)}
    await gw.send(4, {**d, "self_mute": True, "self_deaf": False})
    return gw


async def test_null_endpoint_comes_before_the_real_one(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(lifetime=60) as sim,
        VoiceServer(sim.world, "null-endpoint", record=sim.record, max_lifetime_s=60) as voice,
    ):
        gw = await _joined(http, sim)
        state = await gw.recv_dispatch("VOICE_STATE_UPDATE")
        first = await gw.recv_dispatch("VOICE_SERVER_UPDATE")
        second = await gw.recv_dispatch("VOICE_SERVER_UPDATE")
        assert first["endpoint"] is None
        assert second["endpoint"] == voice.endpoint
        assert first["token"] == second["token"] and first["guild_id"] == second["guild_id"]
        (grant,) = sim.record.of("voice.grant")
        assert fingerprint(second["token"]) == grant["token"]
        assert state["channel_id"] == str(sim.world.voice_channel.id)
        recorded = sim.record.dispatches("VOICE_SERVER_UPDATE")
        assert [e["d"]["endpoint"] for e in recorded] == [None, voice.endpoint]
        await gw.ws.close()


async def test_null_endpoint_then_leave_sends_no_stale_endpoint(
    http: aiohttp.ClientSession,
) -> None:
    scenario = SCENARIOS["null-endpoint"].with_(null_endpoint_for_s=2.0)
    async with (
        Simulator(lifetime=60) as sim,
        VoiceServer(sim.world, scenario, record=sim.record, max_lifetime_s=60),
    ):
        gw = await _joined(http, sim)
        first = await gw.recv_dispatch("VOICE_SERVER_UPDATE")
        assert first["endpoint"] is None
        w = sim.world
        await gw.send(4, {"guild_id": str(w.guild_id), "channel_id": None})
        dropped = await sim.record.wait_for("voice.endpoint_dropped", timeout=10)
        assert dropped["user_id"] == w.bot.id
        assert [e["d"]["endpoint"] for e in sim.record.dispatches("VOICE_SERVER_UPDATE")] == [None]
        await gw.ws.close()


def test_the_new_rows_are_listed_with_their_descriptions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["scenarios"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name in ("discovery-variant", "hello-late", "null-endpoint"):
        assert lines[name].split(None, 1)[1] == SCENARIOS[name].description
