"""The index writer: the recorder's rows, in order, from a thread of their own; a locked
index makes that thread wait (logged once), never the caller."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from notetaker.recorder import IndexWriter, MeetingIndex, TimelineEvent
from notetaker.recorder.index_writer import transient_cause

GUARD_S = 30.0  # a guard against a hung writer, never a timing assertion


@pytest.fixture
def index(tmp_path: Path) -> Iterator[MeetingIndex]:
    index = MeetingIndex.open(tmp_path)
    yield index
    index.close()


def new_meeting(index: MeetingIndex) -> int:
    return index.create_meeting(guild_id=1, channel_id=2, started_by=3, started_at=1.7e9)


@contextmanager
def locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the index's write lock, as `sqlite3` in a shell does."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.execute("COMMIT")
        other.close()


def events(index: MeetingIndex, mid: int) -> list[tuple[str, int | None, int]]:
    return [(e.kind, e.user_id, e.count) for e in index.get_meeting(mid).events]


def test_rows_land_in_the_order_they_were_queued(index: MeetingIndex) -> None:
    mid = new_meeting(index)
    writer = IndexWriter.for_index(index)
    first, second = index.layout.track_path(mid, 5), index.layout.track_path(mid, 6)
    writer.add_track(mid, 5, first)
    writer.add_events(mid, [TimelineEvent("join", 5, 0, 1)])
    writer.add_speaker(mid, 5, "alice", 0)
    writer.add_speaker(mid, 5, "alice renamed", 40)  # the second call updates the name
    writer.add_events(mid, [TimelineEvent("gap", 5, 100, 2)])
    writer.remove_track(mid, 5)  # an opt-out: only right if it comes after the add
    writer.add_track(mid, 6, second)
    writer.add_events(mid, [TimelineEvent("gap", 6, 200, 3), TimelineEvent("gap", 6, 300, 4)])
    writer.end_track(mid, 6, 900)
    assert writer.flush(GUARD_S)
    meeting = index.get_meeting(mid)
    assert [(t.user_id, t.path, t.ended_ms) for t in meeting.tracks] == [(6, second, 900)]
    assert [(s.user_id, s.display_name, s.joined_ms) for s in meeting.speakers] == [
        (5, "alice renamed", 0)
    ]
    assert events(index, mid) == [("join", 5, 1), ("gap", 5, 2), ("gap", 6, 3), ("gap", 6, 4)]
    report = writer.close()
    assert report.complete and report.retries == 0


def test_a_locked_index_makes_the_writer_wait_and_log_once(
    index: MeetingIndex, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="notetaker.recorder.index_writer")
    mid = new_meeting(index)
    # Short attempts, so that the one-second wait below spans several of them.
    writer = IndexWriter(
        index.path, index.layout.root, name="writer-under-test", attempt_wait_s=0.05
    )
    with locked(index.path):
        # These return at once although nothing can be written now; the same thread
        # holds the lock, so a call that waited for it would never return.
        writer.add_track(mid, 5, index.layout.track_path(mid, 5))
        writer.add_events(mid, [TimelineEvent("join", 5, 0)])
        # Still locked: flush waits its whole timeout, the writer retrying meanwhile.
        assert not writer.flush(1.0)
        assert index.get_meeting(mid).tracks == []  # readers are not blocked (WAL)
    assert writer.flush(GUARD_S)
    assert [t.user_id for t in index.get_meeting(mid).tracks] == [5]
    assert events(index, mid) == [("join", 5, 0)]
    report = writer.close()
    assert report.complete and report.retries >= 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one line per locked episode, not one per attempt"
    assert "locked" in warnings[0].getMessage()
    assert warnings[0].threadName == "writer-under-test"
    assert any("writable again" in r.getMessage() for r in caplog.records)


def test_the_writer_opens_its_connection_while_the_index_is_locked(
    index: MeetingIndex,
) -> None:
    mid = new_meeting(index)
    with locked(index.path):
        writer = IndexWriter.for_index(index)
        writer.add_events(mid, [TimelineEvent("gap", 7, 10, 1)])
        assert not writer.flush(0.5)
    assert writer.flush(GUARD_S)
    assert events(index, mid) == [("gap", 7, 1)]
    writer.close()


def test_close_with_the_index_locked_past_the_deadline_says_what_was_not_written(
    index: MeetingIndex, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notetaker.recorder.index_writer")
    mid = new_meeting(index)
    writer = IndexWriter.for_index(index)
    assert writer.flush(GUARD_S)  # the writer's connection is open
    with locked(index.path):
        writer.add_track(mid, 5, index.layout.track_path(mid, 5))
        writer.add_events(mid, [TimelineEvent("join", 5, 0), TimelineEvent("gap", 5, 10, 2)])
        writer.end_track(mid, 5, 500)
        report = writer.close(timeout=0.5)
        assert not writer.thread.is_alive()
        # Queued after close: never written, and counted.
        writer.add_events(mid, [TimelineEvent("close", None, 600)])
    assert report.unwritten == {"track rows": 1, "timeline events": 2, "track ends": 1}
    assert not report.complete and report.lost == 4
    assert writer.report().unwritten["timeline events"] == 3
    last = caplog.records[-1]
    assert last.levelno == logging.WARNING
    assert "1 track rows, 2 timeline events, 1 track ends" in last.getMessage()
    # Nothing half-written reached the index once the lock went.
    assert index.get_meeting(mid).tracks == [] and events(index, mid) == []


def test_close_writes_everything_queued_when_the_lock_goes_in_time(index: MeetingIndex) -> None:
    mid = new_meeting(index)
    writer = IndexWriter.for_index(index)
    other = sqlite3.connect(index.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    writer.add_events(mid, [TimelineEvent("gap", 5, n, 1) for n in range(50)])
    assert not writer.flush(0.5)
    other.execute("COMMIT")  # released while close is about to wait for it
    report = writer.close(timeout=GUARD_S)
    other.close()
    assert report.complete
    assert [e.at_ms for e in index.get_meeting(mid).events] == list(range(50))


def test_a_full_queue_drops_newer_events_and_counts_them(
    index: MeetingIndex, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notetaker.recorder.index_writer")
    mid = new_meeting(index)
    writer = IndexWriter(index.path, index.layout.root, max_events=5)
    with locked(index.path):
        writer.add_track(mid, 5, index.layout.track_path(mid, 5))  # rows always queue
        for n in range(8):
            writer.add_events(mid, [TimelineEvent("gap", 5, n, 1)])
        assert not writer.flush(0.5)
    assert writer.flush(GUARD_S)
    report = writer.close()
    assert report.dropped_events == 3 and report.lost == 3
    assert [e.at_ms for e in index.get_meeting(mid).events] == [0, 1, 2, 3, 4]
    assert [t.user_id for t in index.get_meeting(mid).tracks] == [5]
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 1


def test_a_refused_row_is_counted_and_the_rest_still_written(
    index: MeetingIndex, caplog: pytest.LogCaptureFixture
) -> None:
    mid = new_meeting(index)
    writer = IndexWriter.for_index(index)
    writer.add_events(mid, [TimelineEvent("no-such-kind", None, 0)])
    writer.add_track(mid, 5, Path("/etc/passwd"))  # outside the data directory
    writer.add_events(mid + 1, [TimelineEvent("gap", 5, 0, 1)])  # not coalesced: other meeting
    writer.add_events(mid, [TimelineEvent("gap", 5, 0, 1)])
    report = writer.close()
    assert report.rejected == 3 and report.written == 1
    assert events(index, mid) == [("gap", 5, 1)]
    assert sum(r.levelno == logging.ERROR for r in caplog.records) == 3


def test_only_lock_and_disk_full_errors_are_waited_out(tmp_path: Path) -> None:
    def error(code: int) -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError("x")
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
        return exc

    assert transient_cause(error(sqlite3.SQLITE_BUSY)) == "locked by another connection"
    assert transient_cause(error(sqlite3.SQLITE_BUSY | 2 << 8)) == "locked by another connection"
    assert transient_cause(error(sqlite3.SQLITE_FULL)) == "on a full disk"
    assert transient_cause(error(sqlite3.SQLITE_CONSTRAINT)) is None
    assert transient_cause(ValueError("x")) is None
