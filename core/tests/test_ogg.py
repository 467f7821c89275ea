"""Ogg pages and Ogg Opus headers: CRC, golden bytes, lacing, round trips, decoders."""

from __future__ import annotations

import io
import random
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from notetaker.errors import RecordingError
from notetaker.recorder.ogg import (
    FLAG_BOS,
    FLAG_EOS,
    OggOpusWriter,
    build_page,
    crc32_ogg,
    crc32_ogg_reference,
    opus_packet_samples,
)
from notetaker.sink import OPUS_SILENCE


class KeepOpen(io.BytesIO):
    """A BytesIO that keeps its bytes readable after the writer closes it."""

    def close(self) -> None:
        pass


# -- a tiny independent Ogg parser ---------------------------------------------------


def parse_pages(data: bytes) -> list[dict[str, object]]:
    """Split ``data`` into pages, checking capture pattern and CRC (RFC 3533)."""
    pages = []
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS", f"no capture pattern at {pos}"
        version, flags, granule, serial, seq, crc, nseg = struct.unpack_from(
            "<BBqIIIB", data, pos + 4
        )
        assert version == 0
        lacing = data[pos + 27 : pos + 27 + nseg]
        body_start = pos + 27 + nseg
        body_len = sum(lacing)
        raw = bytearray(data[pos : body_start + body_len])
        raw[22:26] = b"\0\0\0\0"
        assert crc32_ogg_reference(bytes(raw)) == crc, f"bad CRC in page {seq}"
        packets, cur, body_pos = [], bytearray(), body_start
        for lace in lacing:
            cur += data[body_pos : body_pos + lace]
            body_pos += lace
            if lace < 255:
                packets.append(bytes(cur))
                cur = bytearray()
        assert not cur, "this writer never continues a packet across pages"
        pages.append(
            {"flags": flags, "granule": granule, "serial": serial, "seq": seq, "packets": packets}
        )
        pos = body_start + body_len
    return pages


# -- CRC -------------------------------------------------------------------------------


def test_crc_known_answer() -> None:
    # CRC-32/CKSUM (poly 0x04C11DB7, init 0, not reflected) checks "123456789" as
    # 0x765E7680 after its final xor with 0xFFFFFFFF; Ogg's CRC has no final xor.
    assert crc32_ogg_reference(b"123456789") == 0x765E7680 ^ 0xFFFFFFFF
    assert crc32_ogg(b"123456789") == 0x89A1897F
    assert crc32_ogg(b"") == 0


@given(st.binary(max_size=2000))
def test_fast_crc_matches_the_table_driven_definition(data: bytes) -> None:
    assert crc32_ogg(data) == crc32_ogg_reference(data)


def test_crc_validates_pages_written_by_libogg(tmp_path: Path) -> None:
    out = tmp_path / "ffmpeg.opus"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
         "-c:a", "libopus", str(out)],
        check=True,
    )  # fmt: skip
    pages = parse_pages(out.read_bytes())  # asserts every CRC
    assert len(pages) >= 3
    assert pages[0]["flags"] == FLAG_BOS
    assert pages[-1]["flags"] == FLAG_EOS


# -- headers: golden bytes ----------------------------------------------------------------


GOLDEN_HEAD_PAGE = bytes.fromhex(
    "4f676753"  # "OggS"
    "00"  # version
    "02"  # beginning of stream
    "0000000000000000"  # granule 0
    "45544f4e"  # serial 0x4E4F5445, little-endian
    "00000000"  # page sequence 0
    "959334f8"  # CRC
    "01"  # one segment
    "13"  # of 19 bytes
    "4f70757348656164"  # "OpusHead"
    "01"  # version 1
    "02"  # 2 channels
    "0000"  # pre-skip 0
    "80bb0000"  # input sample rate 48000
    "0000"  # output gain 0
    "00"  # mapping family 0
)
GOLDEN_TAGS_PAGE = bytes.fromhex(
    "4f676753" "00" "00" "0000000000000000" "45544f4e"
    "01000000"  # page sequence 1
    "94afb8f2"  # CRC
    "01" "2e"  # one segment of 46 bytes
    "4f70757354616773"  # "OpusTags"
    "09000000" "6e6f746574616b6572"  # vendor "notetaker"
    "01000000"  # one comment
    "11000000" "4e4f544554414b45525f555345523d3432"  # "NOTETAKER_USER=42"
)  # fmt: skip


def test_header_pages_match_golden_bytes() -> None:
    buf = KeepOpen()
    OggOpusWriter(buf, serial=0x4E4F5445, comments=["NOTETAKER_USER=42"])
    assert buf.getvalue() == GOLDEN_HEAD_PAGE + GOLDEN_TAGS_PAGE


def test_golden_pages_parse() -> None:
    head, tags = parse_pages(GOLDEN_HEAD_PAGE + GOLDEN_TAGS_PAGE)
    assert head["packets"] == [GOLDEN_HEAD_PAGE[28:]]
    assert tags["seq"] == 1 and tags["granule"] == 0


# -- lacing and paging ------------------------------------------------------------------


def test_lacing_of_long_packets_round_trips() -> None:
    packets = [b"", b"a" * 254, b"b" * 255, b"c" * 256, b"d" * 510, b"e" * 1275]
    page = build_page(packets, granule=12345, serial=7, sequence=3)
    (parsed,) = parse_pages(page)
    assert parsed["packets"] == packets
    assert parsed["granule"] == 12345 and parsed["serial"] == 7 and parsed["seq"] == 3
    # A multiple of 255 bytes needs a terminating zero lacing value: 1+1+2+2+3+6.
    assert page[26] == 15


def test_writer_round_trip_with_page_rules() -> None:
    rng = random.Random(5)
    buf = KeepOpen()
    writer = OggOpusWriter(buf, serial=99, max_packets=7, page_samples=48_000)
    sent: list[tuple[bytes, int]] = []
    granule = 0
    for i in range(200):
        size = rng.choice([3, 60, 120, 254, 255, 700])
        packet = bytes([0xFC]) + rng.randbytes(size - 1)  # TOC: CELT 20 ms, code 0
        granule += 960
        sent.append((packet, granule))
        writer.add(packet, granule)
        if i == 100:
            assert writer.flush()
    writer.close()
    pages = parse_pages(buf.getvalue())
    assert [p["seq"] for p in pages] == list(range(len(pages)))
    assert {p["serial"] for p in pages} == {99}
    assert pages[-1]["flags"] == FLAG_EOS
    audio = pages[2:]
    got = [pkt for p in audio for pkt in p["packets"]]  # type: ignore[attr-defined]
    assert got == [p for p, _ in sent]
    # Each page's granule is the end of its last packet; no page exceeds the limits.
    i = 0
    for page in audio:
        packets = page["packets"]
        assert isinstance(packets, list)
        assert len(packets) <= 7
        i += len(packets)
        if packets:
            assert page["granule"] == sent[i - 1][1]


def test_page_samples_bounds_a_page() -> None:
    buf = KeepOpen()
    writer = OggOpusWriter(buf, serial=1, max_packets=255, page_samples=48_000)
    for i in range(1, 121):
        writer.add(OPUS_SILENCE, i * 960)
    audio = parse_pages(buf.getvalue())[2:]
    assert [len(p["packets"]) for p in audio] == [50, 50]  # type: ignore[arg-type]
    assert writer.pending == 20
    assert writer.flushed_granule == 100 * 960


def test_segment_overflow_starts_a_new_page() -> None:
    buf = KeepOpen()
    writer = OggOpusWriter(buf, serial=1, max_packets=255, page_samples=10**9)
    big = b"\xfc" + b"x" * 599  # 3 segments each
    for i in range(1, 90):
        writer.add(big, i * 960)
    audio = parse_pages(buf.getvalue())[2:]
    assert [len(p["packets"]) for p in audio] == [85]  # type: ignore[arg-type]
    assert writer.pending == 4


def test_oversized_packet_is_refused() -> None:
    writer = OggOpusWriter(KeepOpen(), serial=1)
    with pytest.raises(RecordingError):
        writer.add(b"x" * 70_000, 960)


@pytest.mark.parametrize("pending", [0, 1, 17, 49])
@pytest.mark.parametrize("count", [1, 49, 50, 51, 333])
def test_repeated_silence_equals_adding_one_by_one(pending: int, count: int) -> None:
    fast, slow = KeepOpen(), KeepOpen()
    w_fast = OggOpusWriter(fast, serial=3, max_packets=50)
    w_slow = OggOpusWriter(slow, serial=3, max_packets=50)
    granule = 0
    for _ in range(pending):
        granule += 960
        w_fast.add(b"\xfc\x01\x02", granule)
        w_slow.add(b"\xfc\x01\x02", granule)
    w_fast.add_repeated(OPUS_SILENCE, 960, count)
    for _ in range(count):
        granule += 960
        w_slow.add(OPUS_SILENCE, granule)
    assert fast.getvalue() == slow.getvalue()
    assert w_fast.pending == w_slow.pending
    w_fast.close()
    w_slow.close()
    assert fast.getvalue() == slow.getvalue()


def test_every_page_written_leaves_a_valid_stream() -> None:
    """What a SIGKILL right after any page write leaves behind parses and is whole."""
    buf = KeepOpen()
    writer = OggOpusWriter(buf, serial=1, max_packets=10)
    written_at = []
    for i in range(1, 101):
        before = len(buf.getvalue())
        wrote = writer.add(OPUS_SILENCE, i * 960)
        assert wrote == (len(buf.getvalue()) > before)  # True exactly when bytes went out
        pages = parse_pages(buf.getvalue())
        if wrote:
            written_at.append(i)
            assert pages[-1]["granule"] == i * 960 == writer.flushed_granule
        else:  # between page writes the file still ends on the last whole page
            assert pages[-1]["granule"] == writer.flushed_granule == (i // 10) * 10 * 960
    # 10 packets a page (and 9600 samples, under page_samples): a page after every 10th.
    assert written_at == list(range(10, 101, 10))


# -- Opus packet durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (OPUS_SILENCE, 960),  # CELT FB 20 ms, one frame
        (bytes([0 << 3]), 480),  # SILK NB 10 ms
        (bytes([3 << 3]), 2880),  # SILK NB 60 ms
        (bytes([16 << 3]), 120),  # CELT NB 2.5 ms
        (bytes([(31 << 3) | 1]), 1920),  # two 20 ms frames
        (bytes([(31 << 3) | 2, 1]), 1920),
        (bytes([(31 << 3) | 3, 3]), 2880),  # three frames, code 3
        (bytes([(31 << 3) | 3, 7]), 0),  # 140 ms: more than Opus allows
        (bytes([(31 << 3) | 3]), 0),  # code 3 without its count byte
        (b"", 0),
    ],
)
def test_opus_packet_samples(packet: bytes, samples: int) -> None:
    assert opus_packet_samples(packet) == samples


# -- decoders read what the writer writes ----------------------------------------------------


def encode_tone(freq: float, seconds: float) -> list[bytes]:
    """Real Opus packets (libopus via PyAV) of a stereo sine, 20 ms each."""
    cc = av.CodecContext.create("libopus", "w")
    cc.sample_rate = 48_000
    cc.layout = "stereo"
    cc.format = "s16"
    cc.bit_rate = 64_000
    cc.time_base = Fraction(1, 48_000)
    n = int(seconds * 50) * 960
    wave = (0.3 * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / 48_000)).astype(np.int16)
    stereo = np.repeat(wave, 2).reshape(1, -1)
    packets: list[bytes] = []
    for start in range(0, n, 960):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo[:, 2 * start : 2 * (start + 960)]),
            format="s16",
            layout="stereo",
        )
        frame.sample_rate = 48_000
        frame.pts = start
        packets.extend(bytes(p) for p in cc.encode(frame))
    packets.extend(bytes(p) for p in cc.encode(None))
    return packets[: n // 960]


def test_pyav_and_ffprobe_read_a_written_stream(tmp_path: Path) -> None:
    packets = encode_tone(440, 2.0)
    path = tmp_path / "t.opus"
    with path.open("wb") as f:
        writer = OggOpusWriter(f, serial=1)
        granule = 0
        for packet in packets:
            granule += opus_packet_samples(packet)
            writer.add(packet, granule)
        writer.add_repeated(OPUS_SILENCE, 960, 25)
        writer.close()
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name in {"opus", "libopus"}
        assert stream.channels == 2
        decoded = sum(frame.samples for frame in container.decode(stream))
    assert decoded == 2 * 48_000 + 25 * 960
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert float(probe.stdout) == pytest.approx(2.5, abs=0.001)


def test_silence_packet_decodes_to_exact_silence(tmp_path: Path) -> None:
    path = tmp_path / "s.opus"
    with path.open("wb") as f:
        writer = OggOpusWriter(f, serial=1)
        writer.add_repeated(OPUS_SILENCE, 960, 10)
        writer.close()
    with av.open(str(path)) as container:
        pcm = np.concatenate([fr.to_ndarray().ravel() for fr in container.decode(audio=0)])
    assert pcm.size == 10 * 960 * 2
    assert float(np.abs(pcm).max()) == 0.0


def test_decoders_ignore_a_granule_jump_which_is_why_gaps_are_silence_packets(
    tmp_path: Path,
) -> None:
    """A granule jump mid-stream changes the reported duration but not the decoded audio.

    RFC 7845 allows skipping samples only at the end; PyAV/ffmpeg decode the packets after
    a jump straight on. So the recorder writes silence packets, never a jump.
    """
    packets = encode_tone(440, 1.0)
    path = tmp_path / "jump.opus"
    with path.open("wb") as f:
        writer = OggOpusWriter(f, serial=1, max_packets=10)
        granule = 0
        for i, packet in enumerate(packets):
            granule += 960 + (5 * 48_000 if i == 25 else 0)
            writer.add(packet, granule)
        writer.close()
    with av.open(str(path)) as container:
        decoded = sum(frame.samples for frame in container.decode(audio=0))
    assert decoded == 48_000  # the 5 s "gap" is not there in the audio
    assert granule == 6 * 48_000
