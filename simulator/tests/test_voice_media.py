"""UDP media over real sockets: participants' audio to the client, client audio in, loss."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest
from voiceclient import AESGCM_MODE, XCHACHA, best_correlation, decode_by_timestamp, join, simulator

from discordsim.voice import ParticipantSpec, load_script
from discordsim.voice.crypto import MODES, SILENCE_FRAME, CryptoError, TransportCipher, rtp_header

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")

SOURCE_RATE = 22_050
# (start, end) seconds of the two sweeps; between them 0.6 s of silence (a pause).
SEGMENTS = ((0.0, 1.0), (1.6, 2.4))


def speech_like(t: np.ndarray) -> np.ndarray:
    """Two 200 Hz -> 3 kHz sweeps with a pause between them, evaluated at times ``t``."""
    out = np.zeros_like(t)
    for start, end in SEGMENTS:
        inside = (t >= start) & (t < end)
        local = t[inside] - start
        dur = end - start
        phase = 2 * np.pi * (200 * local + (3000 - 200) * local**2 / (2 * dur))
        out[inside] = 0.5 * np.sin(phase)
    return out


def write_wav(path: Path, rate: int = SOURCE_RATE) -> Path:
    total = SEGMENTS[-1][1]
    samples = speech_like(np.arange(int(total * rate)) / rate)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


@pytest.mark.parametrize(
    ("scenario", "mode", "version"),
    [
        ("modern", XCHACHA, 8),
        ("modern", AESGCM_MODE, 8),
        ("legacy-2024", "xsalsa20_poly1305_lite", 4),  # what py-cord 2.6 selects
    ],
)
async def test_participant_audio_reaches_client_and_correlates(
    tmp_path: Path, scenario: str, mode: str, version: int
) -> None:
    wav = write_wav(tmp_path / "speech.wav")
    async with simulator(scenario, listen_443=False) as server:
        server.add_participant(ParticipantSpec("alice", wav, speak_after=0.1))
        j = await join(server, mode=mode, version=version)
        done = await server.record.wait_for("voice.participant_done", timeout=30)
        ident = server.record.first("voice.identify")
        assert ident is not None
        sent = server.record.of("voice.rtp_out", conn=ident["conn"])
        assert done["sent"] == len(sent) > 0
        await j.client.wait_packets(len(sent))
        alice = server.world.user("alice")
        # op 5 mapped the SSRC to alice before her first packet went out.
        speaking = [m for m in j.client.ops(5) if m["d"]["user_id"] == str(alice.id)]
        assert speaking and speaking[0]["d"]["ssrc"] == j.client.received[0].ssrc
        first_op5 = server.record.first("voice.send", op=5)
        assert first_op5 is not None and first_op5.seq < sent[0].seq
        # Every forwarded packet carries Discord's 8-byte header extension.
        assert all(len(p.extension) == 8 for p in j.client.received)
        # A pause: exactly five silence frames, then a gap in the RTP timestamps.
        payloads = [p.opus for p in j.client.received]
        first_silence = payloads.index(SILENCE_FRAME)
        assert payloads[first_silence : first_silence + 6].count(SILENCE_FRAME) == 5
        gap = (
            j.client.received[first_silence + 5].timestamp
            - j.client.received[first_silence + 4].timestamp
        )
        assert gap > 960 * 10
        decoded = decode_by_timestamp(j.client.received)
        reference = speech_like(np.arange(len(decoded)) / 48_000)
        score = best_correlation(reference, decoded)
        print(f"{mode}: normalised cross-correlation {score:.3f}")
        assert score > 0.8
        await j.client.aclose()


async def test_unrelated_audio_does_not_correlate(tmp_path: Path) -> None:
    # The correlation check above can fail: noise against the sweeps scores low.
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(48_000 * 2)
    reference = speech_like(np.arange(len(noise)) / 48_000)
    assert best_correlation(reference, noise, max_lag=200) < 0.2


async def test_client_audio_keepalive_and_rtcp_receiver_reports() -> None:
    async with simulator(rtcp_interval_s=0.2) as server:
        j = await join(server, mode=AESGCM_MODE)
        await j.client.send(5, {"speaking": 1, "delay": 0, "ssrc": j.client.ssrc})
        await server.record.wait_for("voice.speaking")
        j.client.send_raw_udp(struct.pack("<I", 0x80) + b"\x00" * 4)  # discord.js keepalive
        enc = av.CodecContext.create("libopus", "w")
        enc.sample_rate, enc.layout, enc.format = 48_000, "stereo", "s16"
        enc.open()
        tone = (np.sin(np.arange(960) / 4) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = 48_000
        packets = [bytes(p) for _ in range(3) for p in enc.encode(frame)]
        for i, opus in enumerate(packets):
            j.client.send_audio(i + 1, 960 * (i + 1), opus)
        got = await server.record.wait_for("voice.rtp_in", seq=len(packets))
        assert got["size"] == len(packets[-1]) and got["before_speaking"] is False
        assert server.record.first("voice.keepalive") is not None
        assert server.record.first("voice.udp_drop") is None  # the keepalive was not "RTP"
        session = next(iter(server.sessions.values()))
        assert [p for _, _, p in session.received] == packets
        report = await j.client.wait_rtcp()
        assert report[1] == 201 and report[0] & 0x1F == 1
        assert struct.unpack_from(">I", report, 8)[0] == j.client.ssrc
        await j.client.aclose()


async def test_undecryptable_packet_is_counted_not_fatal() -> None:
    async with simulator() as server:
        j = await join(server)
        header = struct.pack(">BBHII", 0x80, 0x78, 1, 960, j.client.ssrc)
        j.client.send_raw_udp(header + b"\x00" * 40)
        drop = await server.record.wait_for("voice.udp_drop")
        assert "authentication failed" in drop["reason"]
        j.client.send_audio(2, 1920, b"\xfc\xff\xfe")
        assert (await server.record.wait_for("voice.rtp_in"))["seq"] == 2
        await j.client.aclose()


async def test_udp_loss_records_what_was_sent_and_dropped(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "speech.wav")
    async with simulator("udp-loss", loss_pct=20, reorder_pct=10, dup_pct=10, seed=7) as server:
        server.add_participant(ParticipantSpec("alice", wav, speak_after=0.0))
        j = await join(server)
        await server.record.wait_for("voice.participant_done", timeout=30)
        outs = server.record.of("voice.rtp_out")
        by_action: dict[str, list[int]] = {}
        for e in outs:
            by_action.setdefault(e["action"], []).append(e["seq"])
        assert by_action.get("dropped") and by_action.get("duplicated") and by_action.get("held")
        released = by_action["held"][:-1] if outs[-1]["action"] == "held" else by_action["held"]
        expected = len(by_action["sent"]) + 2 * len(by_action["duplicated"]) + len(released)
        await j.client.wait_packets(expected)
        got = [p.seq for p in j.client.received]
        assert set(got) == set(by_action["sent"]) | set(by_action["duplicated"]) | set(released)
        assert not set(got) & set(by_action["dropped"])
        assert len(got) - len(set(got)) == len(by_action["duplicated"])
        assert got != sorted(got)  # reordered on the wire
        await j.client.aclose()


async def test_participants_join_and_leave_mid_call(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "speech.wav")
    script = tmp_path / "cast.toml"
    script.write_text(
        '[[participant]]\nname = "alice"\nfile = "speech.wav"\njoin_at = 0.2\nleave_at = 1.0\n'
        '[[participant]]\nname = "bob"\nfile = "speech.wav"\njoin_at = 0.1\nspeak_after = 0.0\n'
    )
    specs = load_script(script)
    assert [s.file for s in specs] == [wav.resolve()] * 2
    async with simulator() as server:
        states: list[dict[str, object]] = []

        async def capture(user_id: int, event: str, payload: dict[str, object]) -> None:
            if event == "VOICE_STATE_UPDATE":
                states.append(payload)

        server.world.dispatch = capture
        for spec in specs:
            server.add_participant(spec)
        j = await join(server)
        alice, bob = server.world.user("alice"), server.world.user("bob")
        joined = {(await j.client.recv(11))["d"]["user_ids"][0] for _ in range(2)}
        assert joined == {str(alice.id), str(bob.id)}
        assert (await j.client.recv(13))["d"] == {"user_id": str(alice.id)}
        await server.record.wait_for("voice.participant_done", user_id=bob.id, timeout=30)
        assert [
            (s["user_id"], s["channel_id"] is None) for s in states if s["user_id"] == str(alice.id)
        ] == [
            (str(alice.id), False),
            (str(alice.id), True),
        ]
        ssrcs = {p.ssrc for p in j.client.received}
        assert len(ssrcs) == 2  # both spoke; alice was cut off when she left
        await j.client.aclose()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_round_trips_and_detects_tampering(mode: str) -> None:
    key = bytes(range(32))
    sender, receiver = TransportCipher(mode, key), TransportCipher(mode, key)
    packet = sender.encrypt_rtp(
        rtp_header(7, 960, 1234, extension=True), b"\x10\x20" + b"\x00" * 6, b"opus!"
    )
    opened = receiver.decrypt_rtp(packet)
    assert (opened.seq, opened.timestamp, opened.ssrc, opened.payload) == (7, 960, 1234, b"opus!")
    assert opened.extension == b"\x10\x20" + b"\x00" * 6
    tampered = bytearray(packet)
    tampered[14] ^= 1
    with pytest.raises(CryptoError):
        receiver.decrypt_rtp(bytes(tampered))
    rtcp = struct.pack(">BBHI", 0x81, 201, 7, 99) + b"\x01" * 24
    assert receiver.decrypt_rtcp(sender.encrypt_rtcp(rtcp)) == rtcp
