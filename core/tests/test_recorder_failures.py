"""A full disk while recording: the affected track stops where its audio on disk ends,
the channel can be told in words, the other tracks and the meeting go on, nothing
raises into the receive loop; and a locked index never reaches the receive loop.

The disk fills up two ways: through the recorder's file seam (writes that fail with
ENOSPC after a byte budget, as the kernel does), and, where the tests run as root, on a
real tmpfs that is too small.
"""

from __future__ import annotations

import errno
import functools
import io
import logging
import math
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import pytest

from notetaker.meeting import missing_spans
from notetaker.notes import MissingSpan
from notetaker.recorder import DataLayout, MeetingIndex, Recorder, TrackFailure
from notetaker.recorder.ogg_read import TrackReader
from notetaker.recorder.track import open_new
from notetaker.sink import OPUS_SILENCE, AudioFrame
from notetaker.voice.opus import Encoder

RATE = 48_000
FRAME_S = 0.02
START = 100.0
ALICE, BOB, CAROL = 5, 6, 7


@functools.cache
def tone(hz: float, count: int) -> tuple[bytes, ...]:
    """``count`` real 20 ms Opus packets of a stereo sine (core's libopus encoder)."""
    enc = Encoder()
    t = np.arange(count * 960) / RATE
    wave = (8000 * np.sin(2 * math.pi * hz * t)).astype("<i2")
    stereo = np.repeat(wave, 2)
    return tuple(
        enc.encode(stereo[2 * 960 * i : 2 * 960 * (i + 1)].tobytes()) for i in range(count)
    )


def feed(recorder: Recorder, speakers: dict[int, float], seconds: float, at: float = 0.0) -> int:
    """Every speaker talks from ``at`` for ``seconds``, interleaved as they arrive."""
    count = round(seconds / FRAME_S)
    first = round(at / FRAME_S)
    for i in range(count):
        for uid, hz in speakers.items():
            n = first + i
            frame = AudioFrame(uid, uid, n & 0xFFFF, n * 960, START + n * FRAME_S + 0.003,
                               tone(hz, count)[i])  # fmt: skip
            recorder.write(frame)  # a write error must never come out of here
    return count


def audio_packets(path: Path) -> list[bytes]:
    return [p.opus for p in TrackReader(path).packets() if p.opus != OPUS_SILENCE]


def decoded_samples(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(audio=0))


class _Filling(io.FileIO):
    """A file on a disk with ``budget`` bytes free: writes what fits, then ENOSPC."""

    def __init__(self, path: Path, budget: int) -> None:
        super().__init__(path, "xb")
        self.left = budget

    def write(self, data: object) -> int:
        view = memoryview(data)  # type: ignore[arg-type]
        if self.left <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = super().write(view[: self.left]) or 0
        self.left -= written
        return written


def filling_disk(budgets: dict[int, int]) -> object:
    """A recorder ``open_file``: the tracks of users in ``budgets`` fill up."""

    def open_file(path: Path) -> BinaryIO:
        budget = budgets.get(int(path.stem))
        if budget is None:
            return open_new(path)
        return io.BufferedWriter(_Filling(path, budget))

    return open_file


@pytest.fixture
def index(tmp_path: Path) -> Iterator[MeetingIndex]:
    index = MeetingIndex.open(tmp_path / "data")
    yield index
    index.close()


def new_recorder(index: MeetingIndex, **kw: object) -> tuple[Recorder, int]:
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=ALICE, started_at=1.7e9)
    names = {ALICE: "Alice", BOB: "Bob", CAROL: "Carol"}
    recorder = Recorder(
        index.layout,
        mid,
        index=index,
        started_at=START,
        display_name=names.get,
        **kw,  # type: ignore[arg-type]
    )
    return recorder, mid


# -- through the seam -----------------------------------------------------------------------


def test_a_full_disk_stops_only_that_track_and_keeps_what_was_written(
    index: MeetingIndex,
) -> None:
    # About two and a half pages of Alice's audio fit; Bob's disk has room.
    recorder, mid = new_recorder(index, open_file=filling_disk({ALICE: 20_000}))
    sent = feed(recorder, {ALICE: 330.0, BOB: 550.0}, seconds=5.0)
    layout = index.layout

    (failure,) = recorder.take_failures()
    assert recorder.take_failures() == []  # told once
    assert failure.user_id == ALICE and failure.started and failure.cause == "disk full"
    assert failure.error == "No space left on device"
    # The audio on disk ends where the failure says: whole pages, read and decoded.
    kept_ms = failure.at_ms
    assert 0 < kept_ms < 5000
    alice = layout.track_path(mid, ALICE)
    assert TrackReader(alice).refresh() == kept_ms * RATE // 1000
    assert audio_packets(alice) == list(tone(330.0, sent)[: kept_ms // 20])
    assert decoded_samples(alice) == kept_ms * RATE // 1000
    # Bob's track is whole, and the meeting went on.
    assert audio_packets(layout.track_path(mid, BOB)) == list(tone(550.0, sent))
    assert recorder.errors == 1

    text = failure.message("Alice")
    assert text.startswith("Recording of Alice stopped at 00:02: the disk is full")
    assert "No space left on device" in text and str(layout.meeting_dir(mid)) in text
    assert "The meeting goes on" in text

    recorder.close_at(START + 5.0)
    assert recorder.index_report.complete
    meeting = index.get_meeting(mid)
    stopped = [(e.user_id, e.at_ms, e.detail) for e in meeting.events if e.kind == "stopped"]
    assert stopped == [(ALICE, kept_ms, "disk full")]
    assert {t.user_id: t.ended_ms for t in meeting.tracks} == {ALICE: kept_ms, BOB: 5000}
    # The notes mark Alice missing from there to the end, with the cause.
    assert MissingSpan(ALICE, kept_ms / 1000, 5.0, "disk full") in missing_spans(meeting)


def test_a_track_that_cannot_open_on_a_full_disk_is_reported_and_leaves_no_file(
    index: MeetingIndex,
) -> None:
    recorder, mid = new_recorder(index, open_file=filling_disk({CAROL: 0}))
    feed(recorder, {BOB: 550.0}, seconds=1.0)
    feed(recorder, {BOB: 550.0, CAROL: 440.0}, seconds=1.0, at=1.0)
    (failure,) = recorder.failures()
    assert failure == TrackFailure(
        CAROL, 1003, "disk full", "No space left on device", str(index.layout.meeting_dir(mid)),
        started=False,
    )  # fmt: skip
    assert failure.message("Carol").startswith("Carol is not being recorded: the disk is full")
    assert not index.layout.track_path(mid, CAROL).exists()
    assert len(audio_packets(index.layout.track_path(mid, BOB))) == 100
    recorder.close()
    assert [t.user_id for t in index.get_meeting(mid).tracks] == [BOB]


def test_other_write_errors_stop_the_track_with_their_own_cause(index: MeetingIndex) -> None:
    class FailingDisk(io.BufferedWriter):
        """The headers and two pages are written; then the disk reports EIO."""

        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            if self.flushes > 3:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            super().flush()

    recorder, _ = new_recorder(index, open_file=lambda path: FailingDisk(io.FileIO(path, "xb")))
    feed(recorder, {ALICE: 330.0}, seconds=3.0)
    (failure,) = recorder.failures()
    assert (failure.cause, failure.error, failure.at_ms) == (
        "I/O error",
        "Input/output error",
        2000,
    )
    assert "the disk reported an I/O error" in failure.message("Alice")
    recorder.close()


# -- a real full disk -----------------------------------------------------------------------


@contextmanager
def tmpfs(target: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``target``; skips the test where that is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """``data/meetings`` on a 48 KiB tmpfs (the index stays on the real disk)."""
    with tmpfs(tmp_path / "data" / "meetings", "48k") as target:
        yield target


def fill(path: Path) -> None:
    """Write ``path`` until its disk is full."""
    with path.open("wb", buffering=0) as file:
        chunk = bytes(4096)
        try:
            while True:
                file.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_real_full_disk_stops_the_tracks_and_nothing_crashes(
    small_disk: Path, index: MeetingIndex
) -> None:
    recorder, mid = new_recorder(index)
    sent = feed(recorder, {ALICE: 330.0, BOB: 550.0}, seconds=10.0)
    feed(recorder, {CAROL: 440.0}, seconds=0.5, at=10.0)  # joins once the disk is full
    recorder.close_at(START + 10.5)

    failures = {f.user_id: f for f in recorder.failures()}
    assert set(failures) == {ALICE, BOB, CAROL}
    assert {f.cause for f in failures.values()} == {"disk full"}
    assert failures[ALICE].started and failures[BOB].started and not failures[CAROL].started
    layout = DataLayout(index.layout.root)
    for uid, hz in ((ALICE, 330.0), (BOB, 550.0)):
        path = layout.track_path(mid, uid)
        kept_ms = failures[uid].at_ms
        assert 0 < kept_ms < 10_000
        assert audio_packets(path) == list(tone(hz, sent)[: kept_ms // 20])
        assert decoded_samples(path) == kept_ms * RATE // 1000
    assert not layout.track_path(mid, CAROL).exists()

    meeting = index.get_meeting(mid)
    assert recorder.index_report.complete  # the index is on another disk
    stopped = {e.user_id: e.at_ms for e in meeting.events if e.kind == "stopped"}
    assert stopped == {ALICE: failures[ALICE].at_ms, BOB: failures[BOB].at_ms}
    assert [e.user_id for e in meeting.events if e.kind == "error"] == [CAROL]
    assert [e.at_ms for e in meeting.events if e.kind == "close"] == [10_500]


def test_a_full_disk_under_the_index_makes_its_writer_wait_until_space_is_freed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Index and tracks on one disk that fills up: the tracks stop, the index rows wait
    (not lost, not blocking), and land once space is freed."""
    caplog.set_level(logging.INFO, logger="notetaker.recorder.index_writer")
    with tmpfs(tmp_path / "data", "2m") as data:
        index = MeetingIndex.open(data)
        recorder, mid = new_recorder(index)
        holder = sqlite3.connect(index.path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # the rows queue until the disk is full
        feed(recorder, {ALICE: 330.0, BOB: 550.0}, seconds=1.0)
        fill(data / "filler")
        feed(recorder, {ALICE: 330.0, BOB: 550.0}, seconds=2.0, at=1.0)
        holder.execute("COMMIT")
        holder.close()
        assert {f.user_id: f.cause for f in recorder.failures()} == {
            ALICE: "disk full",
            BOB: "disk full",
        }
        assert not recorder.flush_index(1.0)  # SQLite cannot append to its log either
        (data / "filler").unlink()
        assert recorder.flush_index(30.0)
        recorder.close()
        meeting = index.get_meeting(mid)
        assert sorted(t.user_id for t in meeting.tracks) == [ALICE, BOB]
        assert sorted(e.user_id for e in meeting.events if e.kind == "stopped") == [ALICE, BOB]
        assert recorder.index_report.complete
        index.close()
    # One line for the whole wait (it began as the lock or as the full disk, depending on
    # when the writer first tried), and one when it ended.
    waits = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(waits) == 1 and ("full disk" in waits[0] or "locked" in waits[0])
    assert any("writable again" in r.getMessage() for r in caplog.records)


# -- a locked index never reaches the receive loop ----------------------------------------------


def test_a_locked_index_runs_no_sql_on_the_receive_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another connection holds the index, two speakers join and talk: every
    packet is written, and no SQL statement runs on the thread that delivers them; the
    rows follow once the lock goes."""
    feeding = threading.Event()
    on_feeder: list[str] = []
    by_thread: set[str] = set()
    connect = sqlite3.connect

    def tracing(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)  # type: ignore[arg-type]

        def trace(sql: str) -> None:
            by_thread.add(threading.current_thread().name)
            if feeding.is_set() and threading.current_thread() is threading.main_thread():
                on_feeder.append(sql)

        conn.set_trace_callback(trace)
        return conn

    monkeypatch.setattr(sqlite3, "connect", tracing)
    index = MeetingIndex.open(tmp_path)  # traced too: any connection may be the culprit
    recorder, mid = new_recorder(index)
    holder = connect(index.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    feeding.set()
    sent = feed(recorder, {ALICE: 330.0, BOB: 550.0}, seconds=3.0)
    recorder.tick(START + 10.0)  # the sweep that used to write the events
    feeding.clear()
    assert on_feeder == []
    stats = recorder.stats()
    assert stats[ALICE].packets == stats[BOB].packets == sent
    assert not recorder.flush_index(0.5)  # the rows wait for the lock...
    holder.execute("COMMIT")
    holder.close()
    assert recorder.flush_index(30.0)  # ...and follow it
    recorder.close()
    writer = recorder.index_writer_thread
    assert writer is not None and writer.name in by_thread
    meeting = index.get_meeting(mid)
    assert {s.user_id: s.display_name for s in meeting.speakers} == {ALICE: "Alice", BOB: "Bob"}
    assert sorted(t.user_id for t in meeting.tracks) == [ALICE, BOB]
    assert [e.user_id for e in meeting.events if e.kind == "join"] == [ALICE, BOB]
    assert recorder.index_errors == 0
    index.close()
