"""The live path's small parts: language per speaker, utterance decoding, reading tracks
back, and segments in the session index."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from notetaker.errors import ConfigError, RecordingError
from notetaker.live.decode import decode_utterance
from notetaker.live.language import DetectionPolicy, SpeakerLanguages, decide, parse_language
from notetaker.recorder.index import MeetingIndex
from notetaker.recorder.ogg import OggOpusWriter
from notetaker.recorder.ogg_read import TrackReader
from notetaker.sink import OPUS_SILENCE
from notetaker.transcript import Segment, Word
from notetaker.voice.opus import Encoder

# -- language --------------------------------------------------------------------------


def test_language_codes_as_users_type_them() -> None:
    assert parse_language("DE ") == "de"
    assert parse_language("auto") is None and parse_language("") is None
    assert parse_language(None) is None
    with pytest.raises(ConfigError, match="unknown language 'german'"):
        parse_language("german")


def test_one_confident_detection_decides() -> None:
    policy = DetectionPolicy()
    assert decide([("de", 0.95)], policy) == "de"
    assert decide([("en", 0.5), ("de", 0.81)], policy) == "de"
    assert decide([("en", 0.5), ("de", 0.4)], policy) is None


def test_unsure_detections_are_voted_on() -> None:
    policy = DetectionPolicy(votes=3)
    assert decide([("en", 0.5), ("de", 0.4), ("en", 0.45)], policy) == "en"
    assert decide([("nl", 0.6), ("de", 0.7), ("de", 0.55)], policy) == "de"


def test_a_speakers_language_is_kept_once_decided() -> None:
    langs = SpeakerLanguages(None)
    assert langs.language_for(1) is None
    assert langs.observe(1, 0.4, "fr", 0.99) is None  # too short to count
    assert langs.observe(1, 3.0, "de", 0.97) == "de"
    assert langs.language_for(1) == "de"
    assert langs.observe(1, 3.0, "en", 0.99) is None  # kept: one utterance cannot flip it
    assert langs.language_for(1) == "de"
    assert langs.language_for(2) is None  # per speaker


def test_a_requested_language_is_used_for_everyone() -> None:
    langs = SpeakerLanguages("es")
    assert langs.language_for(7) == "es"
    assert langs.observe(7, 5.0, "en", 0.99) is None
    assert langs.language_for(7) == "es"


# -- decoding ---------------------------------------------------------------------------


def _tone(frames: int, hz: float = 300.0) -> list[bytes]:
    enc = Encoder()
    out = []
    for i in range(frames):
        pcm = b"".join(
            struct.pack("<hh", v, v)
            for v in (
                int(9000 * math.sin(2 * math.pi * hz * (i * 960 + k) / 48_000)) for k in range(960)
            )
        )
        out.append(enc.encode(pcm))
    return out


def test_an_utterance_decodes_to_16k_mono_with_its_holes_in_place() -> None:
    opus = _tone(20)
    start = 48_000
    # Packets 0-9, a one-frame loss (concealed), packets 11-14, then 0.2 s of quiet.
    placed = [(start + i * 960, opus[i]) for i in range(10)]
    placed += [(start + i * 960, opus[i]) for i in range(11, 15)]
    placed += [(start + 25 * 960, opus[15])]
    pcm, bad = decode_utterance(placed, start)
    assert bad == 0
    assert len(pcm) == 2 * 26 * 320  # 26 frames of 320 samples at 16 kHz
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    quiet = samples[15 * 320 + 200 : 25 * 320]  # the 0.2 s hole, after the decoder's tail
    assert max(abs(v) for v in quiet) == 0
    loud = samples[2 * 320 : 9 * 320]
    assert max(abs(v) for v in loud) > 3000


def test_a_packet_libopus_rejects_is_silence_and_counted() -> None:
    opus = _tone(3)
    broken = bytes([0xFC]) + b"\xff" * 3  # a CELT TOC with garbage
    pcm, bad = decode_utterance([(0, opus[0]), (960, broken), (1920, opus[2])], 0)
    assert bad <= 1 and len(pcm) == 2 * 3 * 320


# -- reading tracks ----------------------------------------------------------------------


def _write_track(path: Path, packets: list[tuple[bytes, int]], *, close: bool = True) -> None:
    with path.open("wb") as f:
        writer = OggOpusWriter(f, serial=1, comments=[], max_packets=4, page_samples=48_000)
        granule = 0
        for packet, samples in packets:
            granule += samples
            writer.add(packet, granule)
        if close:
            writer.close()
        else:
            writer.flush()


def test_a_track_reads_back_with_every_packets_place(tmp_path: Path) -> None:
    voice = [bytes([0xFC, i]) for i in range(10)]
    plan = [(voice[0], 960), (OPUS_SILENCE, 960), (OPUS_SILENCE, 960)]
    plan += [(v, 960) for v in voice[1:]]
    _write_track(tmp_path / "t.opus", plan)
    reader = TrackReader(tmp_path / "t.opus")
    got = [(p.start, p.opus) for p in reader.packets()]
    assert got == [(i * 960, packet) for i, (packet, _) in enumerate(plan)]
    assert reader.end == len(plan) * 960
    # A range reads only the pages it needs, and the packets that overlap it.
    assert [p.start for p in reader.packets(5 * 960, 8 * 960)] == [5 * 960, 6 * 960, 7 * 960]


def test_a_torn_last_page_ends_the_track_where_a_crash_would(tmp_path: Path) -> None:
    path = tmp_path / "t.opus"
    _write_track(path, [(bytes([0xFC, i]), 960) for i in range(10)])  # pages of 4, 4, 2
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])  # the last page cut short
    packets = list(TrackReader(path).packets())
    assert [p.start // 960 for p in packets] == list(range(8))  # two whole pages of four
    corrupt = bytearray(whole)
    corrupt[-3] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    assert len(list(TrackReader(path).packets())) == 8


def test_a_track_being_written_is_read_up_to_its_last_flush(tmp_path: Path) -> None:
    path = tmp_path / "t.opus"
    _write_track(path, [(bytes([0xFC, i]), 960) for i in range(6)], close=False)
    reader = TrackReader(path)
    assert reader.refresh() == 6 * 960
    with pytest.raises(RecordingError):
        list(TrackReader(tmp_path / "missing.opus").packets())


# -- segments in the index ---------------------------------------------------------------


def test_segments_land_per_run_and_a_new_run_replaces_the_old_only_when_used(
    tmp_path: Path,
) -> None:
    index = MeetingIndex.open(tmp_path)
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=3, started_at=100.0)
    run = index.get_meeting(mid).transcript_run
    words = (Word(1.0, 1.4, "hello", 0.9), Word(1.5, 2.0, "there", 0.8))
    index.add_segments(mid, run, [Segment(5, 1.0, 2.0, "hello there", words)], "en")
    index.add_segments(mid, run, [Segment(6, 0.5, 0.9, "hi")])
    assert [s.text for s in index.segments(mid)] == ["hi", "hello there"]
    assert index.segments(mid)[1].words == words
    again = index.new_run(mid)
    assert again != run
    index.add_segments(mid, again, [Segment(5, 1.0, 2.0, "hello there!")])
    assert [s.text for s in index.segments(mid)] == ["hi", "hello there"]  # not yet used
    index.use_run(mid, again)
    assert [s.text for s in index.segments(mid)] == ["hello there!"]
    assert index.segments(mid, run) == []
    assert index.delete_segments(mid, 5) == 1
    assert index.segments(mid) == []
    index.close()


def test_an_index_from_the_first_milestone_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    from notetaker.recorder import index as index_module

    path = tmp_path / "notetaker.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    for statement in index_module.MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(
        "INSERT INTO meetings (guild_id, channel_id, started_by, started_at) VALUES (1, 2, 3, 4)"
    )
    db.commit()
    db.close()
    index = MeetingIndex.open(tmp_path)
    assert index.schema_version == len(index_module.MIGRATIONS)
    assert index.get_meeting(1).transcript_run == 1
    index.add_segments(1, 1, [Segment(3, 0.0, 1.0, "kept")])
    assert [s.text for s in index.segments(1)] == ["kept"]
    index.close()
