"""The SQLite session index and the data directory layout."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from notetaker.errors import RecordingError
from notetaker.recorder import DataLayout, MeetingIndex, TimelineEvent
from notetaker.recorder.index import MIGRATIONS
from notetaker.recorder.paths import checked_id

DAY = 86_400.0
NOW = 1_800_000_000.0


def new_meeting(index: MeetingIndex, started_at: float = NOW, **kw: object) -> int:
    args: dict[str, object] = {"guild_id": 10, "channel_id": 20, "started_by": 30}
    args.update(kw)
    return index.create_meeting(started_at=started_at, **args)  # type: ignore[arg-type]


def add_audio(index: MeetingIndex, meeting_id: int, user_id: int) -> Path:
    path = index.layout.track_path(meeting_id, user_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"OggS fake audio")
    index.add_track(meeting_id, user_id, path)
    return path


# -- schema -------------------------------------------------------------------------------


def test_schema_is_created_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path)
    assert index.path == tmp_path.resolve() / "notetaker.sqlite3"
    assert index.schema_version == len(MIGRATIONS)
    db = sqlite3.connect(index.path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "meetings", "speakers", "tracks", "events", "status_log"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_keeps_rows_and_does_not_migrate_again(tmp_path: Path) -> None:
    first = MeetingIndex.open(tmp_path)
    mid = new_meeting(first)
    first.close()
    again = MeetingIndex.open(tmp_path)
    assert [m.id for m in again.list_meetings()] == [mid]
    assert again.schema_version == len(MIGRATIONS)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    MeetingIndex.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / "notetaker.sqlite3")
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(RecordingError, match="upgrade notetaker"):
        MeetingIndex.open(tmp_path)


# -- meetings ---------------------------------------------------------------------------------


def test_list_newest_first_and_by_status(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path)
    old = new_meeting(index, NOW - 100)
    new = new_meeting(index, NOW)
    index.set_status(old, "transcribing", at=NOW - 50)
    assert [m.id for m in index.list_meetings()] == [new, old]
    assert [m.id for m in index.list_meetings(status="transcribing")] == [old]
    assert [m.id for m in index.list_meetings(limit=1)] == [new]
    assert index.list_meetings(status="done") == []


def test_status_transitions(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path)
    mid = new_meeting(index)
    with pytest.raises(RecordingError, match="cannot go from recording to recording"):
        index.set_status(mid, "recording", at=NOW)
    with pytest.raises(RecordingError, match="unknown meeting status"):
        index.set_status(mid, "paused", at=NOW)
    index.set_status(mid, "transcribing", at=NOW + 60)
    index.set_status(mid, "failed", at=NOW + 70, detail="model missing")
    index.set_status(mid, "transcribing", at=NOW + 80)
    index.set_status(mid, "done", at=NOW + 90)
    m = index.get_meeting(mid)
    assert (m.status, m.stopped_at) == ("done", NOW + 60)  # stopped when recording ended
    assert index.status_history(mid) == [
        ("recording", NOW, ""),
        ("transcribing", NOW + 60, ""),
        ("failed", NOW + 70, "model missing"),
        ("transcribing", NOW + 80, ""),
        ("done", NOW + 90, ""),
    ]
    with pytest.raises(RecordingError, match="no meeting"):
        index.set_status(mid + 1, "done", at=NOW)


def test_get_meeting_with_speakers_tracks_events(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path)
    mid = new_meeting(index, channel_name="standup")
    index.add_speaker(mid, 7, "Ann", 1500)
    index.add_speaker(mid, 7, "Ann B.")  # renamed later: name updated, join time kept
    index.add_speaker(mid, 8, "Ben", 0)
    path = add_audio(index, mid, 7)
    index.end_track(mid, 7, 60_000)
    index.mark_gap(mid, 7, 2000, 3, "loss")
    index.add_events(mid, [TimelineEvent("reconnect", None, 5000, 1200, "4015")])
    m = index.get_meeting(mid)
    assert m.channel_name == "standup"
    assert [(s.user_id, s.display_name, s.joined_ms) for s in m.speakers] == [
        (8, "Ben", 0),
        (7, "Ann B.", 1500),
    ]
    assert [(t.user_id, t.path, t.ended_ms) for t in m.tracks] == [(7, path, 60_000)]
    assert m.events == [
        TimelineEvent("gap", 7, 2000, 3, "loss"),
        TimelineEvent("reconnect", None, 5000, 1200, "4015"),
    ]
    with pytest.raises(RecordingError, match="unknown timeline event"):
        index.add_events(mid, [TimelineEvent("party", None, 0)])


def test_track_paths_are_stored_relative(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path)
    mid = new_meeting(index)
    add_audio(index, mid, 7)
    db = sqlite3.connect(index.path)
    assert db.execute("SELECT path FROM tracks").fetchone()[0] == f"meetings/{mid}/7.opus"


def test_threads_share_one_index(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path)
    mid = new_meeting(index)

    def writer(uid: int) -> None:
        for i in range(50):
            index.mark_gap(mid, uid, i, 1, "loss")

    threads = [threading.Thread(target=writer, args=(uid,)) for uid in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):
        index.list_meetings()
    for t in threads:
        t.join()
    assert len(index.get_meeting(mid).events) == 200


# -- delete and retention -------------------------------------------------------------------


def test_delete_removes_files_and_rows_of_that_meeting_only(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path)
    gone, kept = new_meeting(index), new_meeting(index)
    gone_audio = add_audio(index, gone, 7)
    (gone_audio.parent / "notes.md").write_text("# notes")
    kept_audio = add_audio(index, kept, 7)
    index.mark_gap(gone, 7, 0, 1, "loss")
    assert index.delete_meeting(gone) is True
    assert not gone_audio.parent.exists()
    assert kept_audio.is_file()
    assert [m.id for m in index.list_meetings()] == [kept]
    db = sqlite3.connect(index.path)
    for table in ("tracks", "events", "speakers", "status_log"):
        ids = {r[0] for r in db.execute(f"SELECT meeting_id FROM {table}")}
        assert gone not in ids, table
    with pytest.raises(RecordingError):
        index.get_meeting(gone)
    assert index.delete_meeting(gone) is False


def test_delete_removes_leftover_files_of_an_unindexed_meeting(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path)
    stray = DataLayout(tmp_path).track_path(77, 1)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    assert index.delete_meeting(77) is False
    assert not stray.parent.exists()


def test_retention(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path)
    old_done = new_meeting(index, NOW - 40 * DAY)
    index.set_status(old_done, "done", at=NOW - 40 * DAY + 3600)
    old_failed = new_meeting(index, NOW - 31 * DAY)
    index.set_status(old_failed, "failed", at=NOW - 31 * DAY)
    recent = new_meeting(index, NOW - 29 * DAY)
    index.set_status(recent, "done", at=NOW - 29 * DAY)
    # Still recording just past the cutoff: may be live, spared for a grace day.
    live = new_meeting(index, NOW - 30 * DAY - 3600)
    # Left recording by a crash long ago: collected.
    stale = new_meeting(index, NOW - 60 * DAY)
    audio = {mid: add_audio(index, mid, 1) for mid in (old_done, old_failed, recent, live, stale)}

    assert index.apply_retention(0, NOW) == []
    assert index.apply_retention(30, NOW) == [old_done, old_failed, stale]
    assert sorted(m.id for m in index.list_meetings()) == [recent, live]
    assert {mid for mid, p in audio.items() if p.exists()} == {recent, live}
    assert index.apply_retention(30, NOW) == []


# -- paths ------------------------------------------------------------------------------------


def test_channel_names_never_reach_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    index = MeetingIndex.open(data)
    mid = new_meeting(index, channel_name="../../etc")
    path = add_audio(index, mid, 5)
    assert path == data.resolve() / "meetings" / str(mid) / "5.opus"
    assert index.get_meeting(mid).channel_name == "../../etc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize("bad", ["1", "../1", 1.0, True, None, -1, 2**63, "١"])
def test_non_int_ids_are_rejected(tmp_path: Path, bad: object) -> None:
    layout = DataLayout(tmp_path)
    index = MeetingIndex.open(tmp_path)
    with pytest.raises(RecordingError):
        checked_id(bad)
    with pytest.raises(RecordingError):
        layout.track_path(bad, 1)  # type: ignore[arg-type]
    with pytest.raises(RecordingError):
        layout.track_path(1, bad)  # type: ignore[arg-type]
    with pytest.raises(RecordingError):
        new_meeting(index, channel_id=bad)
    with pytest.raises(RecordingError):
        index.get_meeting(bad)  # type: ignore[arg-type]
    with pytest.raises(RecordingError):
        index.delete_meeting(bad)  # type: ignore[arg-type]


def test_containment(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "data")
    assert layout.contain(Path("meetings/1/2.opus")).is_relative_to(layout.root)
    for escape in ("../outside", "meetings/../../outside", "/etc/passwd", "."):
        with pytest.raises(RecordingError, match="outside the data directory"):
            layout.contain(Path(escape))


def test_a_symlinked_meeting_dir_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    index = MeetingIndex.open(tmp_path / "data")
    mid = new_meeting(index)
    index.layout.meetings_dir.mkdir(parents=True)
    (index.layout.meetings_dir / str(mid)).symlink_to(outside)
    with pytest.raises(RecordingError, match="outside the data directory"):
        index.delete_meeting(mid)
    assert (outside / "keep.txt").read_text() == "keep"


def test_a_tampered_stored_path_is_refused(tmp_path: Path) -> None:
    index = MeetingIndex.open(tmp_path / "data")
    mid = new_meeting(index)
    add_audio(index, mid, 1)
    db = sqlite3.connect(index.path)
    db.execute("UPDATE tracks SET path = '../../etc/passwd'")
    db.commit()
    db.close()
    with pytest.raises(RecordingError, match="outside the data directory"):
        index.get_meeting(mid)


def test_a_meeting_keeps_its_text_channel_and_a_heartbeat_that_only_moves_forward(
    tmp_path: Path,
) -> None:
    index = MeetingIndex.open(tmp_path)
    mid = index.create_meeting(
        guild_id=1, channel_id=2, started_by=3, started_at=1000.0, text_channel_id=4
    )
    meeting = index.get_meeting(mid)
    assert (meeting.text_channel_id, meeting.alive_at) == (4, 1000.0)
    index.set_alive(mid, 1010.0)
    index.set_alive(mid, 1005.0)  # a late heartbeat from a slower writer never goes back
    assert index.get_meeting(mid).alive_at == 1010.0
    assert index.list_meetings("recording")[0].alive_at == 1010.0
