"""Sessions and servers end when they should: resume window, heartbeat timeout, lifetime."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import pytest
from voiceclient import VoiceClient, join, simulator

from discordsim.voice import VoiceServer
from discordsim.world import World


def resume_payload(j: object, seq_ack: int | None = None) -> dict[str, object]:
    grant = j.grant  # type: ignore[attr-defined]
    d: dict[str, object] = {
        "server_id": str(grant.guild_id),
        "session_id": j.session_id,  # type: ignore[attr-defined]
        "token": grant.token,
    }
    if seq_ack is not None:
        d["seq_ack"] = seq_ack
    return d


async def test_v4_resume_replays_what_was_missed_without_seq() -> None:
    async with simulator("crash-4015", crash_after_s=0.2) as server:
        a = await join(server, version=4)
        assert await a.client.closed() == 4015
        bob = server.world.add_user("bob")
        b = await join(server, bob.id)
        await server.record.wait_for("voice.send", op=11, d={"user_ids": [str(bob.id)]})
        await a.client.connect(server.endpoint, 4)
        await a.client.send(7, resume_payload(a))
        await a.client.recv(9)
        replayed = await a.client.recv(11)
        assert replayed["d"]["user_ids"] == [str(bob.id)] and "seq" not in replayed
        await b.client.aclose()
        await a.client.aclose()


async def test_resume_after_the_window_gets_4006() -> None:
    async with simulator("crash-4015", crash_after_s=0.1, resume_window_s=0.2) as server:
        a = await join(server)
        assert await a.client.closed() == 4015
        await server.record.wait_for("voice.session_expired")
        await a.client.connect(server.endpoint)
        await a.client.send(7, resume_payload(a, a.client.last_seq))
        assert await a.client.closed() == 4006
        await a.client.aclose()


async def test_silent_client_is_closed_4009() -> None:
    async with simulator(heartbeat_interval_ms=100, heartbeat_timeout_intervals=2) as server:
        a = await join(server)
        assert await a.client.closed() == 4009
        await server.record.wait_for("voice.session_end")
        await a.client.aclose()


async def test_failover_without_main_gateway_is_recorded_not_dispatched() -> None:
    async with simulator("failover", failover_after_s=0.1) as server:
        assert server.world.dispatch is None
        a = await join(server)
        entry = await server.record.wait_for("voice.failover")
        assert entry["dispatched"] is False and entry["endpoint"] != server.endpoint
        await a.client.aclose()


async def test_server_stops_itself_and_frees_its_ports() -> None:
    world = World.default()
    server = VoiceServer(world, "modern", max_lifetime_s=0.3)
    await server.start()
    endpoint = server.endpoint
    j = await join(server)
    await asyncio.wait_for(server.stopped.wait(), 10)
    assert await j.client.closed() == 1001
    await j.client.aclose()
    c = VoiceClient(server.tls.client_context())
    with pytest.raises(aiohttp.ClientConnectorError):
        await c.connect(endpoint)
    await c.aclose()
    assert server.record.first("voice.lifetime_expired") is not None
    await server.stop()  # idempotent


async def test_revoke_closes_4014() -> None:
    async with simulator() as server:
        a = await join(server)
        server.revoke(server.world.guild_id, server.world.bot.id)
        assert await a.client.closed() == 4014
        c = VoiceClient(server.tls.client_context())
        await c.connect(server.endpoint)
        await c.send(
            0,
            {
                "server_id": str(server.world.guild_id),
                "user_id": str(server.world.bot.id),
                "session_id": secrets.token_hex(4),
                "token": a.grant.token,
            },
        )
        assert await c.closed() == 4006
        await c.aclose()
        await a.client.aclose()
