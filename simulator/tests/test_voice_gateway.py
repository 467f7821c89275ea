"""The voice gateway over real TLS: handshake, heartbeats, sequencing, resume, close codes."""

from __future__ import annotations

import asyncio
import secrets
import ssl

import aiohttp
import pytest
from voiceclient import XCHACHA, VoiceClient, join, simulator

from discordsim.scenarios import DISCONTINUED_MODES, MODERN_MODES


async def test_v8_handshake_over_tls() -> None:
    async with simulator() as server:
        j = await join(server)
        hello = j.client.ops(8)[0]["d"]
        assert hello["v"] == 8 and hello["heartbeat_interval"] > 0
        assert j.ready["modes"] == list(MODERN_MODES)
        assert j.ready["port"] == server.udp_port and j.ready["ssrc"] > 0
        assert j.desc["mode"] == XCHACHA
        assert j.desc["dave_protocol_version"] == 0
        assert len(j.desc["secret_key"]) == 32
        ident = server.record.first("voice.identify")
        assert ident is not None and ident["dave_version"] == 0 and ident["version"] == 8
        # The endpoint handed out carries a port, and it is not 443.
        host, _, port = server.endpoint.rpartition(":")
        assert host == "127.0.0.1" and int(port) != 443
        await j.client.aclose()


async def test_untrusted_client_is_refused_by_tls() -> None:
    async with simulator() as server:
        client = VoiceClient(ssl.create_default_context())  # system CAs only
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await client.connect(server.endpoint)
        await client.aclose()


async def test_heartbeats_v8_form_and_v4_bare_int() -> None:
    async with simulator() as server:
        client = VoiceClient(server.tls.client_context())
        await client.connect(server.endpoint, 8)
        # Heartbeats before Identify are answered (clients heartbeat immediately).
        await client.send(3, {"t": 1234, "seq_ack": -1})
        assert (await client.recv(6))["d"] == {"t": 1234}
        await client.aclose()

        old = VoiceClient(server.tls.client_context())
        hello = await old.connect(server.endpoint, 4)
        assert hello["v"] == 4
        await old.send(3, 98765)
        assert (await old.recv(6))["d"] == 98765
        await old.aclose()
        acks = server.record.of("voice.send", op=6)
        assert [a["d"] for a in acks] == [{"t": 1234}, 98765]


async def test_sequenced_messages_and_seq_ack() -> None:
    async with simulator() as server:
        a = await join(server)
        bob = server.world.add_user("bob")
        b = await join(server, bob.id)
        connect = await a.client.recv(11)
        assert connect["d"]["user_ids"] == [str(bob.id)]
        seqs = [m["seq"] for m in a.client.messages if "seq" in m]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one counter, +1 each
        # Hello, Ready, Session Description and ACKs carry no seq.
        assert all("seq" not in m for m in a.client.messages if m["op"] in (2, 4, 8))
        await a.client.send(3, {"t": 1, "seq_ack": a.client.last_seq})
        await a.client.recv(6)
        entry = await server.record.wait_for("voice.seq_ack", seq_ack=a.client.last_seq)
        assert entry["seq_ack"] == seqs[-1]
        await b.client.aclose()
        await a.client.aclose()


async def test_crash_4015_then_resume_replays_missed_messages() -> None:
    async with simulator("crash-4015", crash_after_s=0.3) as server:
        a = await join(server)
        assert await a.client.closed() == 4015
        seen = a.client.last_seq
        # While A is away, Bob connects: A's op 11 about him is buffered.
        bob = server.world.add_user("bob")
        b = await join(server, bob.id)
        await server.record.wait_for("voice.send", op=11, d={"user_ids": [str(bob.id)]})

        await a.client.connect(server.endpoint, 8)
        await a.client.send(
            7,
            {
                "server_id": str(a.grant.guild_id),
                "session_id": a.session_id,
                "token": a.grant.token,
                "seq_ack": seen,
            },
        )
        await a.client.recv(9)
        replayed = await a.client.recv(11)
        assert replayed["d"]["user_ids"] == [str(bob.id)]
        assert replayed["seq"] == (seen + 1) & 0xFFFF
        resumed = await server.record.wait_for("voice.resumed")
        assert resumed["replayed"] >= 1
        # The session kept its SSRC and key: audio sent after the resume is accepted.
        a.client.send_audio(1, 960, b"\xfc\xff\xfe")
        got = await server.record.wait_for("voice.rtp_in", ssrc=a.client.ssrc)
        assert got["seq"] == 1
        await b.client.aclose()
        await a.client.aclose()


async def test_resume_with_wrong_token_gets_4006() -> None:
    async with simulator("crash-4015", crash_after_s=0.2) as server:
        a = await join(server)
        assert await a.client.closed() == 4015
        await a.client.connect(server.endpoint, 8)
        await a.client.send(
            7, {"server_id": str(a.grant.guild_id), "session_id": a.session_id, "token": "nope"}
        )
        assert await a.client.closed() == 4006
        await a.client.aclose()


async def test_stale_session_or_token_gets_4006() -> None:
    async with simulator("stale-session-4006") as server:
        w = server.world
        old_sid, new_sid = secrets.token_hex(8), secrets.token_hex(8)
        old = server.grant(w.guild_id, w.bot.id, old_sid, w.voice_channel.id)
        new = server.grant(w.guild_id, w.bot.id, new_sid, w.voice_channel.id)
        for grant, sid in ((old, new_sid), (new, old_sid)):
            c = VoiceClient(server.tls.client_context())
            await c.connect(server.endpoint)
            await c.send(
                0,
                {
                    "server_id": str(w.guild_id),
                    "user_id": str(w.bot.id),
                    "session_id": sid,
                    "token": grant.token,
                    "max_dave_protocol_version": 0,
                },
            )
            assert await c.closed() == 4006
            await c.aclose()
        c = VoiceClient(server.tls.client_context())
        await c.connect(server.endpoint)
        assert (await c.identify(new, new_sid))["ssrc"] > 0
        await c.aclose()


async def test_modern_accepts_older_token_but_not_unknown_one() -> None:
    async with simulator("modern") as server:
        w = server.world
        sid = secrets.token_hex(8)
        old = server.grant(w.guild_id, w.bot.id, sid, w.voice_channel.id)
        server.grant(w.guild_id, w.bot.id, sid, w.voice_channel.id)
        c = VoiceClient(server.tls.client_context())
        await c.connect(server.endpoint)
        assert (await c.identify(old, sid))["ssrc"] > 0
        await c.aclose()
        c = VoiceClient(server.tls.client_context())
        await c.connect(server.endpoint)
        await c.send(
            0,
            {
                "server_id": str(w.guild_id),
                "user_id": str(w.bot.id),
                "session_id": sid,
                "token": "x",
            },
        )
        assert await c.closed() == 4004
        await c.aclose()


async def test_discontinued_mode_gets_4016_in_modern() -> None:
    async with simulator("modern") as server:
        with pytest.raises(ConnectionError, match="4016"):
            await join(server, mode="xsalsa20_poly1305_lite")
        assert server.record.first("voice.close", code=4016) is not None


@pytest.mark.parametrize("mode", ["xsalsa20_poly1305_lite", "aead_aes256_gcm"])
async def test_legacy_2024_offers_and_accepts_discontinued_modes(mode: str) -> None:
    async with simulator("legacy-2024", listen_443=False) as server:
        c = VoiceClient(server.tls.client_context())
        await c.connect(server.endpoint, 4)
        w = server.world
        sid = secrets.token_hex(8)
        grant = server.grant(w.guild_id, w.bot.id, sid, w.voice_channel.id)
        ready = await c.identify(grant, sid)
        assert set(DISCONTINUED_MODES) <= set(ready["modes"])
        address = await c.discover(ready)
        await c.send(
            1,
            {"protocol": "udp", "data": {"address": address[0], "port": address[1], "mode": mode}},
        )
        assert (await c.recv(4))["d"]["mode"] == mode
        await c.aclose()


@pytest.mark.parametrize("scenario", ["dave-required-4017", "today"])
@pytest.mark.parametrize("dave", [0, None])
async def test_dave_required_4017(scenario: str, dave: int | None) -> None:
    async with simulator(scenario) as server:
        with pytest.raises(ConnectionError, match="4017"):
            await join(server, dave=dave)
        assert server.record.first("voice.close", code=4017) is not None


async def test_today_is_discord_as_of_2026_12() -> None:
    """v8 over TLS on a non-443 port, rtpsize modes only, DAVE negotiated (and required:
    above); older gateway versions and discontinued modes are refused."""
    async with simulator("today") as server:
        assert not server.listen_443
        host, _, port = server.endpoint.rpartition(":")
        assert host == "127.0.0.1" and int(port) != 443
        j = await join(server, dave=1)
        assert j.client.ops(8)[0]["d"]["v"] == 8
        assert j.ready["modes"] == list(MODERN_MODES)
        assert j.desc["mode"] == XCHACHA and j.desc["dave_protocol_version"] == 1
        await j.client.aclose()
        with pytest.raises(ConnectionError, match="4016"):
            await join(server, dave=1, mode="xsalsa20_poly1305_lite")
        with pytest.raises(ConnectionError, match="4006"):
            await join(server, dave=1, version=3)


async def test_dave_required_lets_a_dave_client_in() -> None:
    async with simulator("dave-required-4017") as server:
        j = await join(server, dave=1)
        assert j.desc["dave_protocol_version"] == 1
        # DAVE starts: the external sender (op 25) comes once the session is live.
        assert (await j.client.recv(25))["binary"]
        await j.client.aclose()


async def test_failover_dispatches_new_endpoint_and_token() -> None:
    async with simulator("failover", failover_after_s=0.2) as server:
        dispatched: list[tuple[int, str, dict[str, object]]] = []
        got = asyncio.Event()

        async def capture(user_id: int, event: str, payload: dict[str, object]) -> None:
            dispatched.append((user_id, event, payload))
            got.set()

        server.world.dispatch = capture
        a = await join(server)
        await asyncio.wait_for(got.wait(), 10)
        user_id, event, payload = dispatched[0]
        assert (user_id, event) == (server.world.bot.id, "VOICE_SERVER_UPDATE")
        assert payload["endpoint"] != a.grant.endpoint and payload["token"] != a.grant.token
        assert payload["guild_id"] == str(server.world.guild_id)
        # The client moves: a fresh Identify (never Resume) at the new endpoint.
        await a.client.close()
        c = VoiceClient(server.tls.client_context())
        await c.connect(str(payload["endpoint"]))
        new_grant = type(a.grant)(a.grant.guild_id, a.grant.user_id, None, str(payload["token"]))
        assert (await c.identify(new_grant, a.session_id))["ssrc"] != a.ready["ssrc"]
        entry = server.record.first("voice.failover")
        assert entry is not None and entry["dispatched"] is True
        await c.aclose()
        await a.client.aclose()


async def test_kick_4014_ends_the_session() -> None:
    async with simulator("kick-4014", kick_after_s=0.2) as server:
        states: list[dict[str, object]] = []

        async def capture(user_id: int, event: str, payload: dict[str, object]) -> None:
            states.append(payload)

        server.world.dispatch = capture
        a = await join(server)
        assert await a.client.closed() == 4014
        assert states and states[-1]["channel_id"] is None
        assert states[-1]["user_id"] == str(server.world.bot.id)
        await a.client.connect(server.endpoint)
        await a.client.send(
            7,
            {
                "server_id": str(a.grant.guild_id),
                "session_id": a.session_id,
                "token": a.grant.token,
            },
        )
        assert await a.client.closed() == 4006
        await a.client.aclose()


async def test_clients_connect_disconnect_and_speaking() -> None:
    async with simulator() as server:
        a = await join(server)
        bob = server.world.add_user("bob")
        b = await join(server, bob.id)
        assert (await b.client.recv(11))["d"]["user_ids"] == [str(server.world.bot.id)]
        assert (await a.client.recv(11))["d"]["user_ids"] == [str(bob.id)]
        await b.client.send(5, {"speaking": 1, "delay": 0})  # py-cord omits ssrc
        speaking = (await a.client.recv(5))["d"]
        assert speaking == {"speaking": 1, "ssrc": b.ready["ssrc"], "user_id": str(bob.id)}
        await b.client.aclose()
        assert (await a.client.recv(13))["d"] == {"user_id": str(bob.id)}
        await a.client.aclose()


async def test_protocol_errors_close_with_their_codes() -> None:
    async with simulator() as server:
        cases = [
            ({"op": 1, "d": {"protocol": "udp", "data": {}}}, 4003),
            ({"op": 99, "d": None}, 4001),
            ("not json", 4002),
        ]
        for payload, code in cases:
            c = VoiceClient(server.tls.client_context())
            await c.connect(server.endpoint)
            assert c._ws is not None
            if isinstance(payload, str):
                await c._ws.send_str(payload)
            else:
                await c.send(payload["op"], payload["d"])
            assert await c.closed() == code
            await c.aclose()
        j = await join(server)
        await j.client.send(0, {"server_id": "1", "user_id": "1", "session_id": "x", "token": "y"})
        assert await j.client.closed() == 4005
        await j.client.aclose()


@pytest.mark.parametrize("version", [None, 3])
async def test_versions_below_4_are_refused_in_modern(version: int | None) -> None:
    async with simulator() as server:
        c = VoiceClient(server.tls.client_context())
        with pytest.raises(ConnectionError, match="4006"):
            await c.connect(server.endpoint, version)
        await c.aclose()


async def test_port_strip_reaches_443_and_gets_4006() -> None:
    async with simulator("port-strip-4006") as server:
        if server.record.first("voice.listen_443", bound=True) is None:
            pytest.skip("port 443 cannot be bound here (needs root, and no other owner)")
        w = server.world
        sid = secrets.token_hex(8)
        grant = server.grant(w.guild_id, w.bot.id, sid, w.voice_channel.id)
        # What py-cord <= 2.6 / nextcord <= 3.1 do with the endpoint: drop ":port".
        stripped, _, _ = (grant.endpoint or "").rpartition(":")
        c = VoiceClient(server.tls.client_context())
        await c.connect(stripped, 4)  # wss://127.0.0.1/?v=4 -> port 443
        await c.send(
            0,
            {
                "server_id": str(w.guild_id),
                "user_id": str(w.bot.id),
                "session_id": sid,
                "token": grant.token,
            },
        )
        assert await c.closed() == 4006
        connect = server.record.first("voice.connect", listener="port-443")
        assert connect is not None and connect["port"] == 443
        # The real endpoint, with its port, works.
        await c.connect(grant.endpoint or "", 8)
        assert (await c.identify(grant, sid))["ssrc"] > 0
        await c.aclose()


async def test_legacy_2024_serves_the_gateway_on_443() -> None:
    async with simulator("legacy-2024") as server:
        if server.record.first("voice.listen_443", bound=True) is None:
            pytest.skip("port 443 cannot be bound here (needs root, and no other owner)")
        w = server.world
        sid = secrets.token_hex(8)
        grant = server.grant(w.guild_id, w.bot.id, sid, w.voice_channel.id)
        c = VoiceClient(server.tls.client_context())
        await c.connect("127.0.0.1", 4)
        assert (await c.identify(grant, sid))["ssrc"] > 0
        await c.aclose()


async def test_slow_ready_keeps_answering_heartbeats() -> None:
    async with simulator(
        "slow-ready", ready_delay_s=3.0, session_description_delay_s=0.0
    ) as server:
        w = server.world
        sid = secrets.token_hex(8)
        grant = server.grant(w.guild_id, w.bot.id, sid, w.voice_channel.id)
        c = VoiceClient(server.tls.client_context())
        await c.connect(server.endpoint)
        identify = {
            "server_id": str(w.guild_id),
            "user_id": str(w.bot.id),
            "session_id": sid,
            "token": grant.token,
            "max_dave_protocol_version": 0,
        }
        await c.send(0, identify)
        await c.send(3, {"t": 7, "seq_ack": -1})
        await c.recv(6)
        assert c.ops(2) == []  # the ACK came while Ready was still being delayed
        assert (await c.recv(2))["d"]["ssrc"] > 0
        await c.aclose()
