"""A restarted bot continues the same meeting's tracks.

The first process records real Opus packets (libopus via PyAV) and is "killed": never
closed, and the last page of a track torn in the middle, as a SIGKILL during its write
leaves it. A second recorder on the same meeting, with the meeting clock going on, picks
the tracks up; the files must come out as one logical Ogg stream each, decode, and hold
the new audio where it arrived on the meeting clock with silence for the outage.
"""

from __future__ import annotations

import functools
import itertools
import shutil
import sqlite3
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from notetaker.errors import RecordingError
from notetaker.recorder import DataLayout, MeetingIndex, Recorder, RecorderConfig
from notetaker.recorder.ogg import FLAG_EOS, build_page, crc32_ogg_reference
from notetaker.recorder.ogg_read import TrackReader
from notetaker.recorder.ogg_tail import StreamEnd, read_stream_end
from notetaker.recorder.recorder import ALIVE_EVERY_S
from notetaker.recorder.timeline import TimelineEvent
from notetaker.recorder.track import Track
from notetaker.sink import OPUS_SILENCE, AudioFrame

RATE = 48_000
FRAME = 960
FRAME_S = 0.02
GUARD_S = 30.0  # a guard against a hung index writer, never a timing assertion
# The meeting start on each process's monotonic clock: a new process has a clock of its own.
START_1 = 1000.0
START_2 = 86_000.0
DOWN_MS = 3000  # the first process's last heartbeat, on the meeting clock
BACK_S = 10.0  # the second process is back in the channel
ALICE, BOB = 101, 202


@functools.cache
def tone(freq: float, seconds: float) -> tuple[bytes, ...]:
    """Real Opus packets of a stereo sine, 20 ms each."""
    cc = av.CodecContext.create("libopus", "w")
    cc.sample_rate = RATE
    cc.layout = "stereo"
    cc.format = "s16"
    cc.bit_rate = 48_000
    cc.time_base = Fraction(1, RATE)
    n = round(seconds / FRAME_S) * FRAME
    wave = (0.3 * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / RATE)).astype(np.int16)
    stereo = np.repeat(wave, 2).reshape(1, -1)
    packets: list[bytes] = []
    for start in range(0, n, FRAME):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo[:, 2 * start : 2 * (start + FRAME)]),
            format="s16",
            layout="stereo",
        )
        frame.sample_rate = RATE
        frame.pts = start
        packets.extend(bytes(p) for p in cc.encode(frame))
    packets.extend(bytes(p) for p in cc.encode(None))
    return tuple(packets[: n // FRAME])


def speak(
    recorder: Recorder, user_id: int, freq: float, start: float, at_s: float, seconds: float,
    *, ssrc: int, rtp_base: int,
) -> None:  # fmt: skip
    """``seconds`` of tone from meeting time ``at_s``; ``start``: the meeting start on the
    recorder's clock. Arrivals lag the meeting time by 3 ms (network)."""
    for i, packet in enumerate(tone(freq, seconds)):
        t = at_s + i * FRAME_S
        rtp = (rtp_base + i * FRAME) & 0xFFFF_FFFF
        recorder.write(AudioFrame(user_id, ssrc, i & 0xFFFF, rtp, start + t + 0.003, packet))


@dataclass(frozen=True)
class Page:
    offset: int
    size: int
    flags: int
    granule: int
    serial: int
    sequence: int


def pages(data: bytes) -> list[Page]:
    """Every page of ``data``, which must be nothing but whole, valid pages (an independent
    parser: the reference CRC, no code shared with the recorder)."""
    out = []
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS", f"no capture pattern at {pos}"
        version, flags, granule, serial, seq, crc, nseg = struct.unpack_from(
            "<BBqIIIB", data, pos + 4
        )
        assert version == 0
        size = 27 + nseg + sum(data[pos + 27 : pos + 27 + nseg])
        raw = bytearray(data[pos : pos + size])
        assert len(raw) == size, f"page {seq} is cut short"
        raw[22:26] = b"\0\0\0\0"
        assert crc32_ogg_reference(bytes(raw)) == crc, f"bad CRC in page {seq}"
        out.append(Page(pos, size, flags, granule, serial, seq))
        pos += size
    return out


def decode(path: Path) -> np.ndarray:
    """The left channel as float32."""
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples = frame.to_ndarray()
            if not frame.format.is_planar:
                samples = samples.reshape(-1, len(frame.layout.channels)).T
            if samples.dtype == np.int16:
                samples = samples / 32768.0
            chunks.append(samples[0])
    return np.concatenate(chunks).astype(np.float32)


def rms(pcm: np.ndarray, start_s: float, end_s: float) -> float:
    seg = pcm[round(start_s * RATE) : round(end_s * RATE)]
    return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if seg.size else 0.0


def onset(pcm: np.ndarray, after_s: float, level: float = 0.004) -> float:
    """Start of the first 5 ms window after ``after_s`` louder than ``level`` (inserted
    silence decodes to exact zeros)."""
    win = RATE // 200
    for k in range(round(after_s * RATE) // win, pcm.size // win):
        if rms(pcm, k * win / RATE, (k + 1) * win / RATE) > level:
            return k * win / RATE
    raise AssertionError(f"no onset after {after_s}")


def kill(recorder: Recorder) -> None:
    """What SIGKILL leaves: the pages written so far, nothing else. The kernel closes the
    descriptors (no end-of-stream page, the pending partial page lost); the index
    writer's connection goes too."""
    for track in recorder._tracks.values():
        track._writer._file.close()
    if recorder.index_writer is not None:
        recorder.index_writer.close()


def tear_last_page(path: Path) -> tuple[bytes, int]:
    """Cut the file in the middle of its last page; returns the whole pages before it and
    the granule they end at."""
    data = path.read_bytes()
    before, last = pages(data)[-2:]
    path.write_bytes(data[: last.offset + last.size // 2])
    return data[: last.offset], before.granule


@dataclass
class Restarted:
    data_dir: Path
    meeting_id: int
    torn_end: dict[int, int]  #: granule where each track's whole pages ended at the kill
    kept: dict[int, bytes]  #: each file's whole pages at the kill
    failed: dict[int, str]
    last_ms: int  #: last_granule_ms() right after resume_tracks
    recorder: Recorder

    def path(self, user_id: int) -> Path:
        return DataLayout(self.data_dir).track_path(self.meeting_id, user_id)


CONFIG = RecorderConfig(page_seconds=0.5, flush_interval_s=1.0)
NAMES = {ALICE: "Alice", BOB: "Bob"}


def run_restart(data_dir: Path) -> Restarted:
    index = MeetingIndex.open(data_dir)
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=ALICE, started_at=1.7e9)
    layout = DataLayout(data_dir)
    first = Recorder(
        layout, mid, started_at=START_1, config=CONFIG, index=index, display_name=NAMES.get
    )
    speak(first, ALICE, 440.0, START_1, 0.0, 3.0, ssrc=1, rtp_base=0xFFFF_0000)
    speak(first, BOB, 660.0, START_1, 1.0, 1.5, ssrc=2, rtp_base=77)
    first.tick(START_1 + 3.0)
    assert first.flush_index(GUARD_S)
    kill(first)
    torn_end, kept = {}, {}
    for uid in (ALICE, BOB):
        kept[uid], torn_end[uid] = tear_last_page(layout.track_path(mid, uid))
    # The second process: the same meeting clock, on a monotonic clock of its own.
    second = Recorder(
        layout, mid, started_at=START_2, config=CONFIG, index=index, display_name=NAMES.get
    )
    failed = second.resume_tracks([ALICE, BOB])
    last_ms = second.last_granule_ms()
    second.mark_restart(DOWN_MS, START_2 + BACK_S)
    # New SSRCs and RTP bases: a new voice connection.
    speak(second, ALICE, 440.0, START_2, 10.5, 2.0, ssrc=31, rtp_base=5)
    speak(second, BOB, 660.0, START_2, 11.0, 1.0, ssrc=32, rtp_base=0x8000_0000)
    second.close_at(START_2 + 13.0)
    index.close()
    return Restarted(data_dir, mid, torn_end, kept, failed, last_ms, second)


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Restarted:
    return run_restart(tmp_path_factory.mktemp("data"))


#: Where each speaker's audio after the restart starts and ends (meeting seconds).
AFTER = {ALICE: (10.5, 12.5), BOB: (11.0, 12.0)}
#: Where their audio before the kill started.
BEFORE = {ALICE: 0.0, BOB: 1.0}


def test_every_track_was_continued(restarted: Restarted) -> None:
    assert restarted.failed == {}
    assert restarted.recorder.errors == 0
    # Alice's whole pages reach furthest: 3 s of speech, less the torn page and the
    # pending one.
    assert restarted.last_ms == max(restarted.torn_end.values()) * 1000 // RATE
    assert 2000 <= restarted.last_ms < 3000


@pytest.mark.parametrize("uid", [ALICE, BOB])
def test_one_logical_stream(restarted: Restarted, uid: int) -> None:
    data = restarted.path(uid).read_bytes()
    found = pages(data)  # every byte is a whole page: the torn one is gone
    assert {p.serial for p in found} == {uid}
    assert [p.sequence for p in found] == list(range(len(found)))
    granules = [p.granule for p in found]
    assert granules == sorted(granules)
    assert [p.flags for p in found] == [0x02] + [0] * (len(found) - 2) + [0x04]
    # The pages from before the kill are there byte for byte; the new ones follow them.
    assert data.startswith(restarted.kept[uid])
    assert found[-1].granule == round(AFTER[uid][1] * RATE)


@pytest.mark.parametrize("uid", [ALICE, BOB])
def test_packets_tile_the_meeting_clock(restarted: Restarted, uid: int) -> None:
    packets = list(TrackReader(restarted.path(uid)).packets())
    assert packets[0].start == 0
    assert all(a.end == b.start for a, b in itertools.pairwise(packets))
    end = restarted.torn_end[uid]
    new = [p for p in packets if p.start >= end and p.opus != OPUS_SILENCE]
    # The outage is silence, from where the whole pages ended to the first new packet,
    # which lies at its arrival offset on the meeting clock.
    assert new[0].start == pytest.approx(AFTER[uid][0] * RATE, abs=FRAME)
    outage = [p for p in packets if end <= p.start < new[0].start]
    assert outage and all(p.opus == OPUS_SILENCE for p in outage)
    assert len(new) == round((AFTER[uid][1] - AFTER[uid][0]) / FRAME_S)
    assert packets[-1].end == round(AFTER[uid][1] * RATE)


@pytest.mark.parametrize("uid", [ALICE, BOB])
def test_the_continued_track_decodes_with_the_tone_where_it_was_spoken(
    restarted: Restarted, uid: int
) -> None:
    path = restarted.path(uid)
    final = pages(path.read_bytes())[-1].granule
    pcm = decode(path)
    assert pcm.size == pytest.approx(final, abs=FRAME)
    if shutil.which("ffprobe"):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
             str(path)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        assert float(out.stdout) == pytest.approx(final / RATE, abs=FRAME_S)
    end_s = restarted.torn_end[uid] / RATE
    start, stop = AFTER[uid]
    assert onset(pcm, BEFORE[uid] - 0.05 if BEFORE[uid] else 0.0) == pytest.approx(
        BEFORE[uid], abs=FRAME_S
    )
    assert rms(pcm, end_s + 0.1, start - 0.05) < 0.005  # the outage: silence
    assert onset(pcm, end_s + 0.1) == pytest.approx(start, abs=FRAME_S)
    assert rms(pcm, start + 0.2, stop - 0.2) > 0.1


def test_the_timeline_marks_the_restart_and_no_second_join(restarted: Restarted) -> None:
    index = MeetingIndex.open(restarted.data_dir)
    meeting = index.get_meeting(restarted.meeting_id)
    index.close()
    events = [(e.kind, e.user_id, e.at_ms, e.count, e.detail) for e in meeting.events]
    assert [e for e in events if e[0] == "join"] == [
        ("join", ALICE, 0, 0, ""),
        ("join", BOB, 1000, 0, ""),
    ]
    assert [e for e in events if e[0] == "restart"] == [
        ("restart", None, DOWN_MS, round(BACK_S * 1000) - DOWN_MS, "bot restarted")
    ]
    reanchors = sorted(e for e in events if e[0] == "reanchor")
    expected = [
        ("reanchor", uid, round(AFTER[uid][0] * 1000),
         (round(AFTER[uid][0] * RATE) - restarted.torn_end[uid]) * 1000 // RATE, "restart")
        for uid in (ALICE, BOB)
    ]  # fmt: skip
    assert reanchors == expected
    restart_at = events.index(("restart", None, DOWN_MS, 7000, "bot restarted"))
    assert all(events.index(e) > restart_at for e in expected)
    assert events[-1] == ("close", None, 13_000, 0, "")
    # The same speakers and tracks as before the kill, the tracks ending where they end now.
    assert [(s.user_id, s.display_name, s.joined_ms) for s in meeting.speakers] == [
        (ALICE, "Alice", 0),
        (BOB, "Bob", 1000),
    ]
    assert {t.user_id: t.ended_ms for t in meeting.tracks} == {ALICE: 12_500, BOB: 12_000}


# -- what cannot be continued ------------------------------------------------------------------


def closed_meeting(data_dir: Path) -> tuple[DataLayout, int]:
    """A meeting whose recorder closed normally: its track ends with end-of-stream."""
    layout = DataLayout(data_dir)
    recorder = Recorder(layout, 1, started_at=START_1)
    speak(recorder, ALICE, 440.0, START_1, 0.0, 0.5, ssrc=1, rtp_base=0)
    recorder.close_at(START_1 + 1.0)
    return layout, 1


def test_an_ended_track_cannot_be_resumed(tmp_path: Path) -> None:
    layout, mid = closed_meeting(tmp_path)
    path = layout.track_path(mid, ALICE)
    before = path.read_bytes()
    with pytest.raises(RecordingError, match="stream already ended"):
        Track.resume(path, user_id=ALICE, meeting_start=START_2, config=CONFIG)
    assert path.read_bytes() == before


def test_tracks_that_cannot_be_continued_are_reported_and_never_overwritten(
    tmp_path: Path,
) -> None:
    layout, mid = closed_meeting(tmp_path)
    ended = layout.track_path(mid, ALICE)
    garbage = layout.track_path(mid, BOB)
    garbage.write_bytes(b"not an ogg file at all")
    before = {p: p.read_bytes() for p in (ended, garbage)}
    carol = 303
    recorder = Recorder(layout, mid, started_at=START_2)
    failed = recorder.resume_tracks([ALICE, BOB, carol])
    assert sorted(failed) == [ALICE, BOB, carol]
    assert "stream already ended" in failed[ALICE]
    assert "does not start with a whole Ogg page" in failed[BOB]
    assert failed[carol] == f"no track file {layout.track_path(mid, carol)} to continue"
    assert recorder.last_granule_ms() == 0
    errors = [e for e in recorder.events if e.kind == "error"]
    assert errors == [
        TimelineEvent("error", uid, None, 0, f"cannot continue track: {failed[uid]}")
        for uid in (ALICE, BOB, carol)
    ]
    # Their audio in this process goes nowhere: no file is overwritten, none is made.
    for uid in (ALICE, BOB, carol):
        speak(recorder, uid, 440.0, START_2, 5.0, 0.5, ssrc=uid, rtp_base=0)
    recorder.close_at(START_2 + 6.0)
    assert {p: p.read_bytes() for p in (ended, garbage)} == before
    assert not layout.track_path(mid, carol).exists()
    assert recorder.stats() == {}
    assert recorder.errors == 3


def test_a_resumed_speaker_who_stays_quiet_ends_where_the_file_did(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    path = layout.track_path(1, ALICE)
    first = Recorder(layout, 1, started_at=START_1, config=CONFIG)
    speak(first, ALICE, 440.0, START_1, 0.0, 2.0, ssrc=1, rtp_base=0)
    first.flush_track(ALICE)
    assert read_stream_end(path) == StreamEnd(ALICE, 6, 2 * RATE, path.stat().st_size, False, 0)
    kill(first)
    kept, granule = tear_last_page(path)
    assert granule == round(1.5 * RATE)
    second = Recorder(layout, 1, started_at=START_2, config=CONFIG)
    assert second.resume_tracks([ALICE]) == {}
    second.close_at(START_2 + 30.0)
    # The torn half page (longer than what follows it now) is gone: the file is the whole
    # pages and an end-of-stream page right after them, byte for byte.
    eos = build_page([], granule=granule, serial=ALICE, sequence=5, flags=FLAG_EOS)
    assert path.read_bytes() == kept + eos


# -- the heartbeat -----------------------------------------------------------------------------


class WallClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


WALL = 1.8e9  # after the meeting's started_at, which create_meeting takes as alive_at


@pytest.fixture
def index(tmp_path: Path) -> Iterator[MeetingIndex]:
    index = MeetingIndex.open(tmp_path)
    yield index
    index.close()


def test_ticks_write_a_heartbeat_every_five_seconds_of_wall_time(index: MeetingIndex) -> None:
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=3, started_at=1.7e9)
    wall = WallClock(WALL)
    recorder = Recorder(index.layout, mid, started_at=START_1, index=index, wall_clock=wall)
    seen = []
    for second in range(13):  # 12 s of wall time, a tick a second
        wall.now = WALL + second
        recorder.tick(START_1 + second)
        assert recorder.flush_index(GUARD_S)
        seen.append(index.get_meeting(mid).alive_at)
    assert ALIVE_EVERY_S == 5.0
    assert seen == [WALL] * 5 + [WALL + 5] * 5 + [WALL + 10] * 3
    wall.now = WALL + 12.5
    recorder.close_at(START_1 + 12.5)
    assert index.get_meeting(mid).alive_at == WALL + 12.5  # one more at close
    assert recorder.index_report.complete


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another connection holding the index's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("COMMIT")
        other.close()


def test_heartbeats_never_grow_the_queue_of_a_locked_index(index: MeetingIndex) -> None:
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=3, started_at=1.7e9)
    wall = WallClock(WALL)
    recorder = Recorder(index.layout, mid, started_at=START_1, index=index, wall_clock=wall)
    writer = recorder.index_writer
    assert writer is not None
    with locked(index.path):
        # The track row queues first and cannot be written: every heartbeat waits behind it.
        speak(recorder, ALICE, 440.0, START_1, 0.0, 0.1, ssrc=1, rtp_base=0)
        for second in range(0, 600, 5):
            wall.now = WALL + second
            recorder.tick(START_1 + 1 + second)
            assert writer.queued("set_alive") == 1
        # The track and speaker rows, the join event, one heartbeat (the track row may
        # be the one being tried now, so not counted as waiting).
        assert writer.queued() in (3, 4)
        assert not recorder.flush_index(0.2)
    assert recorder.flush_index(GUARD_S)
    assert index.get_meeting(mid).alive_at == WALL + 595
    assert writer.report().written == 4
    recorder.close()


def test_the_writer_keeps_the_latest_heartbeat_of_those_coalesced(index: MeetingIndex) -> None:
    from notetaker.recorder import IndexWriter

    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=3, started_at=1.7e9)
    writer = IndexWriter.for_index(index)
    with locked(index.path):
        writer.add_events(mid, [TimelineEvent("gap", 5, 0, 1)])
        for at in (WALL + 1, WALL + 9, WALL + 3):  # out of order: the latest wins
            writer.set_alive(mid, at)
        assert writer.queued("set_alive") == 1
    assert writer.flush(GUARD_S)
    assert index.get_meeting(mid).alive_at == WALL + 9
    writer.set_alive(mid, WALL + 20)  # the earlier one was written: this one queues anew
    report = writer.close()
    assert report.complete and report.written == 3
    assert index.get_meeting(mid).alive_at == WALL + 20
