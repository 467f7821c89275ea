"""The DAVE delivery service behind the real voice gateway, with raw clients.

The client here is the test's own WebSocket/UDP client (``voiceclient``) with a davey
member standing in for a library's DAVE code, so each step can be checked: op 25 after
op 4, the participants' Adds, the Welcome, the frames on the wire.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voiceclient import join, simulator

from discordsim.dave_participant import DaveParticipant
from discordsim.voice import ParticipantSpec
from discordsim.voice.dave_delivery import MlsDelivery
from discordsim.voice.participants import write_tone as tone

DAVE_MARKER = b"\xfa\xfa"


async def answer(client: Any, member: DaveParticipant, msg: dict[str, Any]) -> None:
    """Feed one DS message to ``member`` and send its replies, as a library would."""
    payload = msg["binary"] if "binary" in msg else msg["d"]
    for op, reply in member.handle(msg["op"], payload):
        if isinstance(reply, bytes):
            await client.send_binary(op, reply)
        else:
            await client.send(op, reply)


async def test_dave_client_is_welcomed_and_receives_dave_frames(tmp_path: Path) -> None:
    async with simulator() as server:
        server.add_participant(ParticipantSpec("bob", tone(tmp_path / "b.wav"), speak_after=0.8))
        a = await join(server, dave=1)
        assert a.desc["dave_protocol_version"] == 1
        bot = server.world.bot.id
        member = DaveParticipant(bot, server.world.voice_channel.id)
        await answer(a.client, member, await a.client.recv(25))
        for op, kp in member.start():
            await a.client.send_binary(op, kp)
        # bob (a participant) joins: op 11, then his Add; he commits and we get a Welcome.
        joined = await a.client.recv(11)
        bob = int(joined["d"]["user_ids"][0])
        await answer(a.client, member, await a.client.recv(27))
        await answer(a.client, member, await a.client.recv(30))
        await answer(a.client, member, await a.client.recv(22))
        assert member.ready and member.user_ids == {bot, bob}
        epoch = await server.record.wait_for("dave.epoch", committer=bob)
        assert epoch["added"] == [bot]
        await server.record.wait_for("dave.execute", transition_id=epoch["transition_id"])

        # bob's frames come DAVE-encrypted inside the transport encryption; we open them.
        done = await server.record.wait_for("voice.participant_done", timeout=20)
        await a.client.wait_packets(done["sent"])
        frames = [p.opus for p in a.client.received if p.opus != b"\xf8\xff\xfe"]
        assert frames and all(f.endswith(DAVE_MARKER) for f in frames)
        plain = [member.decrypt(bob, f) for f in frames]
        assert all(p and not p.endswith(DAVE_MARKER) for p in plain)
        await a.client.aclose()


async def test_transport_only_client_gets_plain_frames_in_a_dave_call(tmp_path: Path) -> None:
    async with simulator() as server:
        spec = ParticipantSpec("bob", tone(tmp_path / "b.wav"), speak_after=0.3)
        server.add_participant(spec)
        a = await join(server, dave=0)
        assert a.desc["dave_protocol_version"] == 0
        done = await server.record.wait_for("voice.participant_done", timeout=20)
        await a.client.wait_packets(done["sent"])
        assert not any(p.opus.endswith(DAVE_MARKER) for p in a.client.received)
        assert server.record.first("dave.join", user_id=server.world.bot.id) is None
        await a.client.aclose()


async def test_legacy_2024_never_negotiates_dave() -> None:
    async with simulator("legacy-2024") as server:
        assert isinstance(server.dave, MlsDelivery) and server.dave.max_version == 0
        a = await join(server, dave=1)
        assert a.desc["dave_protocol_version"] == 0
        await a.client.aclose()


async def test_malformed_dave_ops_are_recorded_and_dropped() -> None:
    async with simulator() as server:
        a = await join(server, dave=1)
        await a.client.recv(25)
        await a.client.send_binary(26, b"\x00\x01not a key package")
        await a.client.send_binary(28, b"\xff" * 40)
        await a.client.send(23, {"transition_id": "x"})
        await a.client.send(31, ["not", "a", "dict"])
        rec = server.record
        for op, reason in (
            (26, "invalid_key_package"),
            (28, "malformed"),
            (23, "unknown_transition"),
            (31, "unexpected_op"),
        ):
            got = await rec.wait_for("dave.rejected", op=op)
            assert got["reason"] == reason
        # The connection is still up and still speaks DAVE.
        member = DaveParticipant(server.world.bot.id, server.world.voice_channel.id)
        await a.client.send_binary(26, member.start()[0][1])
        await rec.wait_for("dave.key_package", user_id=server.world.bot.id)
        assert a.client.close_code is None
        await a.client.aclose()
