"""Where a track's Ogg stream ends on disk, and continuing it: golden sizes and fields for
clean, torn and ended files, the writer's resumed pages, and the placer's continuation."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import pytest

from notetaker.errors import RecordingError
from notetaker.recorder import ogg_tail
from notetaker.recorder.ogg import (
    FLAG_BOS,
    OggOpusWriter,
    build_page,
    crc32_ogg,
    opus_head,
    opus_tags,
)
from notetaker.recorder.ogg_tail import StreamEnd, read_stream_end, repair_tail
from notetaker.recorder.placement import Placer
from notetaker.recorder.timeline import TimelineEvent

SERIAL = 0x1234_5678
# A CELT 20 ms stereo frame (TOC 0xFC): 960 samples, whatever the payload bytes are.
PACKET = b"\xfc" + bytes(range(9))
# Golden page sizes: 27 header bytes + one lacing byte per packet + the packets.
HEAD_PAGE = 27 + 1 + 19  # OpusHead, mapping family 0
TAGS_PAGE = 27 + 1 + (8 + 4 + len("notetaker") + 4)  # OpusTags, no comments
HEADERS = HEAD_PAGE + TAGS_PAGE
AUDIO_PAGE = 27 + 3 + 3 * len(PACKET)  # three packets


class KeepOpen(io.BytesIO):
    """A BytesIO that keeps its bytes readable after the writer closes it."""

    def close(self) -> None:
        pass


def stream(pages: int, *, close: bool = False) -> bytes:
    """Headers and ``pages`` pages of three 20 ms packets each, as the writer makes them."""
    out = KeepOpen()
    writer = OggOpusWriter(out, serial=SERIAL, max_packets=3)
    for n in range(3 * pages):
        writer.add(PACKET, 960 * (n + 1))
    if close:
        writer.close()
    return out.getvalue()


def stream_of(packets: int) -> bytes:
    out = KeepOpen()
    writer = OggOpusWriter(out, serial=SERIAL, max_packets=3)
    for n in range(packets):
        writer.add(PACKET, 960 * (n + 1))
    writer.close()
    return out.getvalue()


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "5.opus"
    path.write_bytes(data)
    return path


def test_header_sizes_are_the_golden_ones() -> None:
    assert len(stream(0)) == HEADERS == 100
    assert len(stream(2)) == HEADERS + 2 * AUDIO_PAGE


def test_a_clean_file_without_end_of_stream() -> None:
    end = ogg_tail.scan_stream_end(io.BytesIO(stream(4)), "x")
    assert end == StreamEnd(SERIAL, 6, 4 * 3 * 960, HEADERS + 4 * AUDIO_PAGE, False, 0)


def test_a_closed_file_ends_with_its_end_of_stream_page(tmp_path: Path) -> None:
    path = write(tmp_path, stream(2, close=True))
    # The end-of-stream page carries no packet and repeats the last granule.
    assert read_stream_end(path) == StreamEnd(
        SERIAL, 5, 6 * 960, HEADERS + 2 * AUDIO_PAGE + 27, True, 0
    )


@pytest.mark.parametrize("cut", [1, 10, 27, AUDIO_PAGE - 1])
def test_a_torn_last_page_is_not_part_of_the_stream(tmp_path: Path, cut: int) -> None:
    data = stream(3)
    path = write(tmp_path, data[: len(data) - AUDIO_PAGE + cut])
    assert read_stream_end(path) == StreamEnd(SERIAL, 4, 2 * 3 * 960, HEADERS + 2 * AUDIO_PAGE,
                                              False, cut)  # fmt: skip


def test_garbage_after_the_last_page(tmp_path: Path) -> None:
    data = stream(2)
    path = write(tmp_path, data + b"OggS" + b"\xff" * 40)
    assert read_stream_end(path) == StreamEnd(SERIAL, 4, 6 * 960, len(data), False, 44)


def test_a_page_with_a_bad_crc_ends_the_scan(tmp_path: Path) -> None:
    data = bytearray(stream(3))
    data[-1] ^= 0x01  # a payload byte of the last page
    assert read_stream_end(write(tmp_path, bytes(data))) == StreamEnd(
        SERIAL, 4, 6 * 960, HEADERS + 2 * AUDIO_PAGE, False, AUDIO_PAGE
    )


@pytest.mark.parametrize(
    ("serial", "sequence", "flags"),
    [(SERIAL + 1, 4, 0), (SERIAL, 5, 0), (SERIAL, 3, 0), (SERIAL, 4, FLAG_BOS)],
    ids=["other-serial", "sequence-skips", "sequence-repeats", "second-bos"],
)
def test_a_valid_page_of_another_stream_ends_the_scan(
    tmp_path: Path, serial: int, sequence: int, flags: int
) -> None:
    data = stream(2)
    page = build_page([PACKET], granule=7 * 960, serial=serial, sequence=sequence, flags=flags)
    end = read_stream_end(write(tmp_path, data + page))
    assert (end.next_sequence, end.length, end.torn_bytes) == (4, len(data), len(page))


def raw_page(lacing: bytes, body: bytes, *, granule: int, sequence: int, flags: int = 0) -> bytes:
    """A page with any lacing (build_page always ends its packets), CRC right."""
    header = struct.pack("<4sBBqIII", b"OggS", 0, flags, granule, SERIAL, sequence, 0)
    page = bytearray(header + bytes((len(lacing),)) + lacing + body)
    page[22:26] = crc32_ogg(bytes(page)).to_bytes(4, "little")
    return bytes(page)


@pytest.mark.parametrize(
    ("lacing", "flags"), [(b"\xff", 0), (b"\x0a", 0x01)], ids=["runs-on", "continued"]
)
def test_a_packet_split_across_pages_ends_the_scan(
    tmp_path: Path, lacing: bytes, flags: int
) -> None:
    """The writer never splits a packet; appending after a split one would corrupt it."""
    data = stream(1)
    page = raw_page(lacing, bytes(sum(lacing)), granule=-1, sequence=3, flags=flags)
    end = read_stream_end(write(tmp_path, data + page))
    assert (end.length, end.torn_bytes) == (len(data), len(page))


def test_a_header_only_file(tmp_path: Path) -> None:
    assert read_stream_end(write(tmp_path, stream(0))) == StreamEnd(SERIAL, 2, 0, HEADERS, False, 0)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "does not start with a whole Ogg page"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(40), "does not start with a whole Ogg page"),
        (stream(0)[:HEAD_PAGE - 1], "does not start with a whole Ogg page"),
        (stream(0)[:HEAD_PAGE], "no whole OpusTags comment page"),
        (stream(0)[: HEADERS - 1], "no whole OpusTags comment page"),
        (build_page([b"\x01vorbis" + bytes(23)], granule=0, serial=1, sequence=0, flags=2),
         "not an Ogg Opus identification header (OpusHead)"),
        (build_page([opus_head()], granule=0, serial=1, sequence=0)
         + build_page([opus_tags("x", [])], granule=0, serial=1, sequence=1),
         "not an Ogg Opus identification header"),  # no BOS flag
        (build_page([opus_head()], granule=0, serial=1, sequence=0, flags=2)
         + build_page([opus_tags("x", [])], granule=0, serial=2, sequence=1),
         "no whole OpusTags comment page"),
    ],
    ids=["empty", "wav", "torn-head", "no-tags", "torn-tags", "vorbis", "no-bos",
         "tags-of-another-stream"],
)  # fmt: skip
def test_no_valid_header_means_nothing_to_continue(tmp_path: Path, data: bytes, words: str) -> None:
    path = write(tmp_path, data)
    pattern = f"cannot continue {re.escape(str(path))}: .*{re.escape(words)}"
    with pytest.raises(RecordingError, match=pattern):
        read_stream_end(path)


def test_a_missing_file_is_a_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot read track"):
        read_stream_end(tmp_path / "nope.opus")


def test_scanning_in_tiny_chunks_finds_the_same_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = stream(5)
    path = write(tmp_path, data[:-7])
    expected = read_stream_end(path)
    monkeypatch.setattr(ogg_tail, "CHUNK_BYTES", 7)  # every page spans several chunks
    assert read_stream_end(path) == expected
    assert expected.length == HEADERS + 4 * AUDIO_PAGE


def test_repair_tail_cuts_the_torn_page_only(tmp_path: Path) -> None:
    data = stream(3)
    path = write(tmp_path, data[:-5])
    end = repair_tail(path)
    assert end.torn_bytes == AUDIO_PAGE - 5  # what was cut
    assert path.read_bytes() == data[: HEADERS + 2 * AUDIO_PAGE]
    assert read_stream_end(path) == StreamEnd(SERIAL, 4, 6 * 960, end.length, False, 0)


def test_repair_tail_leaves_an_ended_stream_alone(tmp_path: Path) -> None:
    data = stream(1, close=True) + b"junk"
    path = write(tmp_path, data)
    end = repair_tail(path)
    assert end.eos and end.torn_bytes == 4
    assert path.read_bytes() == data


# -- the writer continues the stream ---------------------------------------------------------


def test_a_resumed_writer_appends_the_next_pages_of_the_same_stream() -> None:
    data = stream(2)
    end = ogg_tail.scan_stream_end(io.BytesIO(data), "x")
    out = KeepOpen(data)
    out.seek(end.length)
    writer = OggOpusWriter.resume(out, end, max_packets=3)
    assert writer.flushed_granule == 6 * 960 and writer.serial == SERIAL
    for n in range(4):
        writer.add(PACKET, 960 * (7 + n))
    assert writer.flushed_granule == 9 * 960
    writer.close()
    golden = build_page([PACKET] * 3, granule=9 * 960, serial=SERIAL, sequence=4) + build_page(
        [PACKET], granule=10 * 960, serial=SERIAL, sequence=5, flags=0x04
    )
    assert out.getvalue() == data + golden
    # Not one byte of header: the file is the stream a never-killed writer makes.
    assert out.getvalue() == stream_of(10)


def test_silence_after_a_resume_continues_the_sequence() -> None:
    data = stream(1)
    end = ogg_tail.scan_stream_end(io.BytesIO(data), "x")
    out = KeepOpen(data)
    out.seek(end.length)
    writer = OggOpusWriter.resume(out, end, max_packets=3)
    writer.add_repeated(b"\xf8\xff\xfe", 960, 7)  # two whole pages and one pending
    writer.close()
    resumed = ogg_tail.scan_stream_end(io.BytesIO(out.getvalue()), "x")
    assert resumed == StreamEnd(SERIAL, 6, 10 * 960, len(out.getvalue()), True, 0)


def test_an_ended_stream_cannot_be_resumed() -> None:
    data = stream(1, close=True)
    end = ogg_tail.scan_stream_end(io.BytesIO(data), "x")
    with pytest.raises(RecordingError, match="already ended"):
        OggOpusWriter.resume(KeepOpen(data), end)


# -- the placer continues the meeting clock --------------------------------------------------


def test_a_continued_placer_anchors_on_arrival_after_silence() -> None:
    placer = Placer(7, 100.0, max_early_s=0.2, max_late_s=1.0)
    placer.continue_at(3 * 48_000, "restart")
    assert placer.granule == 144_000
    assert placer.first_ms == 3000  # not None: the speaker joined before, no join follows
    # A new process: whatever SSRC and RTP base; placed by arrival, 10.004 s into the meeting.
    fill = placer.place(0xDEAD_BEEF, 110.004, 99, 960)
    assert fill == (480_000 - 144_000) // 960
    assert placer.granule == 480_000 + 960
    assert placer.events == [TimelineEvent("reanchor", 7, 10_000, 7000, "restart")]
    assert placer.place(0xDEAD_BEEF + 960, 110.024, 99, 960) == 0  # then straight on
    assert placer.reanchors == 1 and placer.granule == 480_000 + 1920


def test_a_continued_placer_never_places_before_the_audio_on_disk() -> None:
    placer = Placer(7, 100.0, max_early_s=0.2, max_late_s=1.0)
    placer.continue_at(5 * 48_000, "restart")
    # A clock that puts the packet before the end of the old audio: right after it.
    assert placer.place(1, 104.0, 3, 960) == 0
    assert placer.granule == 5 * 48_000 + 960
    assert [e.kind for e in placer.events] == ["reanchor"]
