"""The receive pipeline end to end: real Opus, real AEAD, injected loss/reorder/dup."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from notetaker.errors import DecryptError
from notetaker.sink import OPUS_SILENCE, AudioFrame, AudioSink, CaptureSink, Gap
from notetaker.voice.discovery import build_request
from notetaker.voice.opus import Decoder, Encoder, OpusError
from notetaker.voice.pipeline import FrameDecryptor, PassthroughDecryptor, ReceivePipeline
from notetaker.voice.transport_crypto import (
    AES_GCM_MODE,
    XCHACHA_MODE,
    AesGcmCipher,
    Packetizer,
    TransportCipher,
    make_cipher,
)

KEY = bytes(range(100, 132))
DISCORD_EXT = bytes.fromhex("10 7f 00 00 00 00 00 00")


def sine_opus(freq: float, frames: int, amplitude: int = 8000) -> list[bytes]:
    encoder = Encoder(bitrate=64_000)
    n = np.arange(frames * 960)
    mono = (amplitude * np.sin(2 * np.pi * freq * n / 48_000)).astype("<i2")
    stereo = np.repeat(mono, 2)
    return [encoder.encode(stereo[i * 1920 : (i + 1) * 1920].tobytes()) for i in range(frames)]


@dataclass
class Stream:
    user_id: int
    ssrc: int
    first_seq: int
    opus: list[bytes]
    packets: list[bytes] = field(default_factory=list)

    def seq(self, i: int) -> int:
        return (self.first_seq + i) & 0xFFFF


def make_stream(
    cipher: TransportCipher, user_id: int, ssrc: int, first_seq: int, freq: float
) -> Stream:
    stream = Stream(user_id, ssrc, first_seq, sine_opus(freq, 150))
    sender = Packetizer(
        cipher,
        ssrc,
        sequence=first_seq,
        timestamp=first_seq * 7,
        nonce=first_seq,
        extension_body=DISCORD_EXT,
    )
    stream.packets = [sender.packet(p) for p in stream.opus]
    return stream


def runs(missing: list[int]) -> list[tuple[int, int]]:
    """Consecutive indices grouped into (first, count)."""
    out: list[tuple[int, int]] = []
    for i in missing:
        if out and out[-1][0] + out[-1][1] == i:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((i, 1))
    return out


@pytest.mark.parametrize("mode", [AES_GCM_MODE, XCHACHA_MODE])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_speakers_with_loss_reorder_and_duplicates(mode: str, seed: int) -> None:
    rng = random.Random(seed)
    cipher = make_cipher(mode, KEY)
    alice = make_stream(cipher, 1001, 0xA11CE, 65500, 440.0)  # crosses 65535 -> 0
    bob = make_stream(cipher, 2002, 0xB0B, rng.randrange(65536), 660.0)

    schedule: list[tuple[float, bytes]] = []
    sent: dict[int, list[int]] = {}
    duplicates = 0
    for stream, offset in ((alice, 0.0), (bob, 0.007)):
        received = []
        for i, packet in enumerate(stream.packets):
            if 0 < i < len(stream.packets) - 1 and rng.random() < 0.06:
                continue  # lost in the network
            at = offset + i * 0.02 + rng.uniform(0.0, 0.05)  # reordered within 50 ms
            schedule.append((at, packet))
            received.append(i)
            if rng.random() < 0.04:
                schedule.append((at + rng.uniform(0.0, 0.3), packet))
                duplicates += 1
        sent[stream.user_id] = received
    # Noise on the socket: keepalives, an encrypted RTCP report, garbage, a forged packet.
    schedule.append((0.5, (7).to_bytes(4, "little") + bytes(4)))
    schedule.append((0.6, cipher.encrypt_rtcp(b"\x81\xc9\x00\x07" + bytes(28), 1)))
    schedule.append((0.7, b"\x80\x78garbage"))
    schedule.append((0.8, build_request(1)))
    forged = bytearray(bob.packets[20])
    forged[-10] ^= 0xFF
    schedule.append((0.9, bytes(forged)))
    schedule.sort(key=lambda item: item[0])

    sink = CaptureSink()
    pipeline = ReceivePipeline(cipher, sink, max_held=16, max_wait=0.1, prefill=3)
    pipeline.map_ssrc(alice.ssrc, alice.user_id)
    bob_mapped = False
    for at, datagram in schedule:
        if not bob_mapped and at > 0.25:
            pipeline.map_ssrc(bob.ssrc, bob.user_id)  # op 5 arrives late: held packets replay
            bob_mapped = True
        pipeline.feed(datagram, at)
        pipeline.tick(at)
    pipeline.close()

    by_user = sink.by_user()
    for stream in (alice, bob):
        got = by_user[stream.user_id]
        indices = sent[stream.user_id]
        assert [f.sequence for f in got] == [stream.seq(i) for i in indices]
        assert [f.opus for f in got] == [stream.opus[i] for i in indices]
        assert all(f.ssrc == stream.ssrc and f.pcm is None for f in got)
        assert [f.rtp_timestamp for f in got] == [
            (stream.first_seq * 7 + 960 * i) & 0xFFFFFFFF for i in indices
        ]
        missing = sorted(set(range(indices[0], indices[-1] + 1)) - set(indices))
        expected_gaps = [
            Gap(stream.user_id, stream.ssrc, stream.seq(first), count, "loss")
            for first, count in runs(missing)
        ]
        assert [g for g in sink.gaps if g.user_id == stream.user_id] == expected_gaps
        user = pipeline.stats.users[stream.user_id]
        assert user.delivered == len(indices)
        assert user.lost == len(missing)

    stats = pipeline.stats
    frames = len(sent[alice.user_id]) + len(sent[bob.user_id])
    assert stats.received == len(schedule)
    assert stats.delivered == len(sink.frames) == frames
    assert stats.dropped == {"duplicate": duplicates, "malformed": 1, "decrypt": 1}
    assert stats.ignored == {"keepalive": 1, "rtcp": 1, "discovery": 1}
    assert stats.decrypted == frames + duplicates
    assert stats.lost == sum(g.count for g in sink.gaps)
    assert pipeline.pending == 0
    assert stats.received == stats.ignored_total + stats.dropped_total + stats.delivered
    assert sink.closed
    assert "rx=" in stats.summary() and stats.snapshot()["delivered"] == frames


def test_pcm_decode_reproduces_the_sine() -> None:
    cipher = make_cipher(AES_GCM_MODE, KEY)
    stream = make_stream(cipher, 7, 77, 10, 440.0)
    sink = CaptureSink(wants_pcm=True)
    pipeline = ReceivePipeline(cipher, sink)
    pipeline.map_ssrc(stream.ssrc, stream.user_id)
    for i, packet in enumerate(stream.packets):
        pipeline.feed(packet, i * 0.02)
    pipeline.close()
    assert len(sink.frames) == len(stream.packets)
    assert all(f.pcm is not None and len(f.pcm) == 3840 for f in sink.frames)
    pcm = np.frombuffer(b"".join(f.pcm or b"" for f in sink.frames), "<i2").astype(float)
    left = pcm[0::2][4800:]  # skip the encoder's start-up
    spectrum = np.abs(np.fft.rfft(left * np.hanning(len(left))))
    peak_hz = np.argmax(spectrum) * 48_000 / len(left)
    assert abs(peak_hz - 440.0) < 2.0
    t = np.arange(len(left)) / 48_000
    basis = np.stack([np.sin(2 * np.pi * 440 * t), np.cos(2 * np.pi * 440 * t)])
    fit, *_ = np.linalg.lstsq(basis.T, left, rcond=None)
    correlation = np.corrcoef(basis.T @ fit, left)[0, 1]
    assert correlation > 0.95


class MarkerDecryptor:
    """A stand-in end-to-end layer: frames ending in FA FA carry an XOR-ed payload."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def decrypt(self, user_id: int, frame: bytes) -> bytes:
        self.calls.append(frame)
        if frame == b"bad\xfa\xfa":
            raise DecryptError("dave: no valid cryptor", reason="dave")
        if frame.endswith(b"\xfa\xfa"):
            return bytes(b ^ 0x55 for b in frame[:-2])
        return frame


def test_frame_decryptor_hook() -> None:
    cipher = make_cipher(AES_GCM_MODE, KEY)
    sender = Packetizer(cipher, 5)
    plain = b"\xfc\x01\x02"
    frames = [
        bytes(b ^ 0x55 for b in plain) + b"\xfa\xfa",
        OPUS_SILENCE,
        b"bad\xfa\xfa",
        plain,  # unmarked: passed through
    ]
    decryptor = MarkerDecryptor()
    assert isinstance(decryptor, FrameDecryptor)
    sink = CaptureSink()
    pipeline = ReceivePipeline(cipher, sink, decryptor, prefill=1)
    pipeline.map_ssrc(5, 50)
    for i, frame in enumerate(frames):
        pipeline.feed(sender.packet(frame), i * 0.02)
    pipeline.close()
    assert [f.opus for f in sink.frames] == [plain, OPUS_SILENCE, plain]
    assert [f.sequence for f in sink.frames] == [0, 1, 3]
    assert sink.gaps == [Gap(50, 5, 2, 1, "decrypt")]
    assert OPUS_SILENCE not in decryptor.calls
    assert pipeline.stats.dropped == {"dave": 1}
    assert pipeline.stats.users[50].dropped == {"dave": 1}
    assert pipeline.stats.lost == 0


def test_passthrough_is_the_default() -> None:
    pipeline = ReceivePipeline(make_cipher(AES_GCM_MODE, KEY), CaptureSink())
    assert isinstance(pipeline.decryptor, PassthroughDecryptor)
    assert pipeline.decryptor.decrypt(1, b"x") == b"x"


def test_unknown_ssrc_is_held_bounded_and_expires() -> None:
    cipher = make_cipher(AES_GCM_MODE, KEY)
    sender = Packetizer(cipher, 9)
    sink = CaptureSink()
    pipeline = ReceivePipeline(
        cipher, sink, prefill=1, unknown_hold_packets=5, unknown_hold_seconds=1.0
    )
    for i in range(8):
        pipeline.feed(sender.packet(b"\xfc" + bytes([i])), i * 0.02)
    assert pipeline.pending == 5
    assert pipeline.stats.dropped == {"unknown_ssrc": 3}
    pipeline.map_ssrc(9, 90)
    assert [f.sequence for f in sink.frames] == [3, 4, 5, 6, 7]
    assert sink.gaps == []  # nothing before the first replayed packet counts as lost

    late = Packetizer(cipher, 10)
    pipeline.feed(late.packet(b"\xfc"), 5.0)
    pipeline.feed(late.packet(b"\xfc"), 5.5)
    pipeline.tick(6.2)  # the first is now older than a second
    assert pipeline.stats.dropped["unknown_ssrc"] == 4
    pipeline.map_ssrc(10, 100, now=6.6)  # and so is the second, measured at now
    assert pipeline.stats.dropped["unknown_ssrc"] == 5
    assert pipeline.user_for(10) == 100
    pipeline.close()
    s = pipeline.stats
    assert s.received == s.dropped_total + s.delivered + s.ignored_total


def test_too_many_unknown_ssrcs_evicts_the_oldest() -> None:
    cipher = make_cipher(AES_GCM_MODE, KEY)
    pipeline = ReceivePipeline(cipher, CaptureSink(), unknown_max_ssrcs=2)
    for ssrc in (1, 2, 3):
        sender = Packetizer(cipher, ssrc)
        pipeline.feed(sender.packet(b"\xfc"), 0.0)
        pipeline.feed(sender.packet(b"\xfc"), 0.0)
    assert pipeline.stats.dropped == {"unknown_ssrc": 2}
    assert pipeline.pending == 4


def test_forget_user_flushes_and_unmaps() -> None:
    cipher = make_cipher(AES_GCM_MODE, KEY)
    sender = Packetizer(cipher, 3)
    sink = CaptureSink()
    pipeline = ReceivePipeline(cipher, sink, prefill=1, max_wait=10.0)
    pipeline.map_ssrc(3, 30)
    packets = [sender.packet(b"\xfc" + bytes([i])) for i in range(4)]
    for packet in (packets[0], packets[2], packets[3]):
        pipeline.feed(packet, 0.0)
    assert [f.sequence for f in sink.frames] == [0]
    pipeline.forget_user(30)
    assert [f.sequence for f in sink.frames] == [0, 2, 3]
    assert sink.gaps == [Gap(30, 3, 1, 1, "loss")]
    assert pipeline.user_for(3) is None
    pipeline.feed(packets[1], 0.1)  # now an unknown SSRC again: held, not delivered
    assert pipeline.pending == 1


def test_remapping_an_ssrc_to_another_user() -> None:
    cipher = make_cipher(AES_GCM_MODE, KEY)
    sender = Packetizer(cipher, 3)
    sink = CaptureSink()
    pipeline = ReceivePipeline(cipher, sink, prefill=1)
    pipeline.map_ssrc(3, 30)
    pipeline.feed(sender.packet(b"\xfc"), 0.0)
    pipeline.map_ssrc(3, 30)  # same mapping again: no effect
    pipeline.map_ssrc(3, 31)
    pipeline.feed(sender.packet(b"\xfc"), 0.02)
    assert [(f.user_id, f.sequence) for f in sink.frames] == [(30, 0), (31, 1)]


class ExplodingSink(AudioSink):
    def __init__(self) -> None:
        self.writes = 0

    def write(self, frame: AudioFrame) -> None:
        self.writes += 1
        raise RuntimeError("disk full")


def test_sink_errors_are_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    cipher = make_cipher(AES_GCM_MODE, KEY)
    sender = Packetizer(cipher, 3)
    sink = ExplodingSink()
    now = [0.0]
    pipeline = ReceivePipeline(cipher, sink, prefill=1, clock=lambda: now[0])
    pipeline.map_ssrc(3, 30)
    with caplog.at_level(logging.ERROR, logger="notetaker.voice.pipeline"):
        for i in range(5):
            pipeline.feed(sender.packet(b"\xfc"), i * 0.02)
        now[0] = 61.0
        pipeline.feed(sender.packet(b"\xfc"), 0.2)
    assert sink.writes == 6
    logged = [r for r in caplog.records if "sink.write" in r.getMessage()]
    assert len(logged) == 2  # once, then again after the mute interval
    assert pipeline.stats.delivered == 6


def test_wrong_key_counts_decrypt_errors() -> None:
    sender = Packetizer(make_cipher(AES_GCM_MODE, bytes(32)), 3)
    pipeline = ReceivePipeline(make_cipher(AES_GCM_MODE, KEY), CaptureSink())
    for i in range(3):
        pipeline.feed(sender.packet(b"\xfc"), i * 0.02)
    assert pipeline.stats.dropped == {"decrypt": 3}
    assert pipeline.stats.decrypted == 0


def test_feed_after_close_is_counted() -> None:
    sink = CaptureSink()
    pipeline = ReceivePipeline(make_cipher(AES_GCM_MODE, KEY), sink)
    pipeline.close(close_sink=False)
    assert not sink.closed
    pipeline.close()
    assert not sink.closed  # close is idempotent: the first call decided
    pipeline.feed(b"\x00" * 8, 0.0)
    assert pipeline.stats.dropped == {"closed": 1}


def test_undecodable_opus_is_not_written_as_audio() -> None:
    cipher = make_cipher(AES_GCM_MODE, KEY)
    sender = Packetizer(cipher, 3)
    sink = CaptureSink(wants_pcm=True)
    pipeline = ReceivePipeline(cipher, sink, prefill=1)
    pipeline.map_ssrc(3, 30)
    good = sine_opus(440.0, 2)
    pipeline.feed(sender.packet(good[0]), 0.0)
    pipeline.feed(sender.packet(b"\xff\xff\xff"), 0.02)  # not a valid Opus packet
    pipeline.feed(sender.packet(good[1]), 0.04)
    pipeline.close()
    assert [f.sequence for f in sink.frames] == [0, 2]
    assert sink.gaps == [Gap(30, 3, 1, 1, "decode")]
    assert pipeline.stats.dropped == {"opus": 1}


def load_hex(name: str) -> list[bytes]:
    path = Path(__file__).parent / "fixtures" / name
    return [bytes.fromhex(x) for x in path.read_text().splitlines() if x and x[0] != "#"]


def test_opus_fixture_decodes_to_440_hz_and_conceals_loss() -> None:
    frames = load_hex("opus_sine_440.hex")
    decoder = Decoder()
    pcm = [decoder.decode(frame) for frame in frames]
    assert all(len(p) == 960 * 2 * 2 for p in pcm)
    concealed = decoder.decode(None)  # packet loss concealment: one 20 ms frame
    assert len(concealed) == 3840
    left = np.frombuffer(b"".join(pcm[3:]), "<i2")[0::2].astype(float)
    crossings = np.count_nonzero(np.diff(np.signbit(left)))
    # 440 Hz has 880 zero crossings a second; 7 frames are 0.14 s.
    assert abs(crossings - 880 * 0.14) <= 4
    assert len(decoder.decode(OPUS_SILENCE)) == 3840
    with pytest.raises(OpusError):
        decoder.decode(b"\xff\xff\xff")


def test_opus_encoder_checks_pcm_size() -> None:
    with pytest.raises(ValueError, match="expected 3840"):
        Encoder().encode(bytes(100))


class BrokenDecryptor:
    def decrypt(self, user_id: int, frame: bytes) -> bytes:
        raise RuntimeError("davey blew up")


class BrokenCipher(AesGcmCipher):
    __slots__ = ()

    def _open(self, nonce4: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        raise ZeroDivisionError("bug")


def test_unexpected_errors_are_counted_as_internal(caplog: pytest.LogCaptureFixture) -> None:
    cipher = make_cipher(AES_GCM_MODE, KEY)
    sender = Packetizer(cipher, 3)
    sink = CaptureSink()
    pipeline = ReceivePipeline(cipher, sink, prefill=1)
    assert isinstance(pipeline.decryptor, PassthroughDecryptor)
    pipeline.decryptor = BrokenDecryptor()  # e.g. DAVE became active mid-call
    pipeline.map_ssrc(3, 30)
    with caplog.at_level(logging.ERROR, logger="notetaker.voice.pipeline"):
        for i in range(3):
            pipeline.feed(sender.packet(b"\xfc"), i * 0.02)
        pipeline.set_cipher(BrokenCipher(KEY))
        pipeline.feed(sender.packet(b"\xfc"), 0.1)
    assert pipeline.stats.dropped == {"internal": 4}
    assert sink.frames == []
    assert [g.reason for g in sink.gaps] == ["decrypt"] * 3
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # one per (place, error type), repeats muted
    assert "RuntimeError in decryptor" in messages[0]
    assert "ZeroDivisionError in feed" in messages[1]
