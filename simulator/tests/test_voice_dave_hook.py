"""The place where the DAVE delivery service plugs in: a strategy object on the server."""

from __future__ import annotations

from typing import Any

from voiceclient import join, simulator

from discordsim.voice import TransportOnly
from discordsim.voice.gateway import VoiceSession


class Probe(TransportOnly):
    """A stand-in delivery service that negotiates DAVE 1 and shows every call it gets."""

    def __init__(self) -> None:
        self.client_ops: list[tuple[int, Any]] = []
        self.joined: list[int] = []

    def negotiate(self, client_max: int) -> int:
        return min(client_max, 1)

    async def on_session_live(self, session: VoiceSession) -> None:
        if session.dave_version:
            await session.send_binary(25, b"external-sender")

    async def on_client_op(self, session: VoiceSession, op: int, data: Any) -> None:
        self.client_ops.append((op, data))

    async def on_member_join(self, session: VoiceSession, user_id: int) -> None:
        self.joined.append(user_id)


async def test_dave_strategy_negotiates_and_exchanges_binary_frames() -> None:
    probe = Probe()
    async with simulator(dave=probe) as server:
        a = await join(server, dave=1)
        assert a.desc["dave_protocol_version"] == 1
        frame = await a.client.recv(25)
        assert frame["binary"] == b"external-sender"
        # Binary frames share the JSON messages' seq counter.
        bob = server.world.add_user("bob")
        b = await join(server, bob.id, dave=1)
        joined = await a.client.recv(11)
        assert joined["seq"] == (frame["seq"] + 1) & 0xFFFF
        assert sorted(probe.joined) == sorted([bob.id, server.world.bot.id])
        await a.client.send_binary(26, b"key-package")
        await a.client.send(23, {"transition_id": 3})
        await server.record.wait_for("voice.op", op=23)
        assert probe.client_ops == [(26, b"key-package"), (23, {"transition_id": 3})]
        await b.client.aclose()
        await a.client.aclose()


async def test_transport_only_ignores_dave_ops_and_records_them() -> None:
    # The default is the real delivery service now; this checks the transport-only one.
    async with simulator(dave=TransportOnly()) as server:
        a = await join(server, dave=1)
        assert a.desc["dave_protocol_version"] == 0
        await a.client.send_binary(26, b"key-package")
        ignored = await server.record.wait_for("voice.dave_ignored")
        assert ignored["op"] == 26
        await a.client.aclose()


async def test_binary_frames_are_replayed_on_resume() -> None:
    async with simulator("crash-4015", dave=Probe(), crash_after_s=0.2) as server:
        a = await join(server, dave=1)
        first = await a.client.recv(25)
        assert await a.client.closed() == 4015
        await a.client.connect(server.endpoint)
        await a.client.send(
            7,
            {
                "server_id": str(a.grant.guild_id),
                "session_id": a.session_id,
                "token": a.grant.token,
                "seq_ack": -1,  # nothing seen: everything still buffered comes again
            },
        )
        await a.client.recv(9)
        again = await a.client.recv(25)
        assert (again["seq"], again["binary"]) == (first["seq"], first["binary"])
        await a.client.aclose()
