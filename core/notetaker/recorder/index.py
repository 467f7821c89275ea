"""The session index: one SQLite file under the data directory.

It lists meetings (guild, channel, who started them, start/stop, status), their speakers
(user id and the display name at the time), their tracks (paths relative to the data
directory, built from ids by :mod:`notetaker.recorder.paths`), their timeline events
(gaps, reconnects, opt-outs) and the transcript's segments, written as the live path
produces them (so a crash loses none already made). The schema is versioned:
:data:`MIGRATIONS` are applied in order and the version is kept in ``schema_version``.

WAL mode with ``synchronous=NORMAL``: a committed row survives the process being killed
(what the recorder needs); only a power cut may lose the last commits. One connection per
object, shared across threads behind a lock. The receive loop never uses one: the
recorder's rows go through :class:`~notetaker.recorder.index_writer.IndexWriter`, a
thread with its own connection, because a database another process holds locked makes a
write wait (up to ``busy_timeout_s``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from notetaker.errors import RecordingError
from notetaker.recorder.paths import DataLayout, checked_id
from notetaker.recorder.search import SearchHit, create_search, has_search
from notetaker.recorder.search import search as search_lines
from notetaker.recorder.timeline import EVENT_KINDS, TimelineEvent
from notetaker.transcript import Segment, Word

STATUSES: Final = ("recording", "transcribing", "done", "failed")
#: Allowed status changes; a failed or done meeting may be transcribed again.
TRANSITIONS: Final = {
    "recording": frozenset({"transcribing", "done", "failed"}),
    "transcribing": frozenset({"done", "failed"}),
    "done": frozenset({"transcribing"}),
    "failed": frozenset({"transcribing"}),
}
#: Meetings still recording or transcribing are spared by retention for this much longer
#: than the cutoff: they may be in progress. Older ones are left over from a crash.
ACTIVE_GRACE_S: Final = 86_400.0
#: How long a write waits for another connection's lock before it fails.
BUSY_TIMEOUT_S: Final = 10.0

MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE meetings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        guild_id INTEGER NOT NULL,
        channel_id INTEGER NOT NULL,
        channel_name TEXT,
        started_by INTEGER NOT NULL,
        started_at REAL NOT NULL,
        stopped_at REAL,
        status TEXT NOT NULL DEFAULT 'recording'
            CHECK (status IN ('recording', 'transcribing', 'done', 'failed')),
        status_detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX meetings_started ON meetings (started_at);
    CREATE TABLE speakers (
        meeting_id INTEGER NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL,
        display_name TEXT NOT NULL DEFAULT '',
        joined_ms INTEGER,
        PRIMARY KEY (meeting_id, user_id)
    );
    CREATE TABLE tracks (
        meeting_id INTEGER NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL,
        path TEXT NOT NULL,
        started_ms INTEGER NOT NULL DEFAULT 0,
        ended_ms INTEGER,
        PRIMARY KEY (meeting_id, user_id)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        meeting_id INTEGER NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        user_id INTEGER,
        kind TEXT NOT NULL,
        at_ms INTEGER,
        count INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_meeting ON events (meeting_id, at_ms);
    CREATE TABLE status_log (
        meeting_id INTEGER NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        status TEXT NOT NULL,
        at REAL NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # 2: live transcription. Segments land as utterances are transcribed; each full
    # (re)transcription is a ``run`` and the meeting points at the one its notes use, so
    # a re-transcription that dies halfway leaves the previous transcript in place.
    """
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY,
        meeting_id INTEGER NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        run INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        start_s REAL NOT NULL,
        end_s REAL NOT NULL,
        text TEXT NOT NULL,
        words TEXT NOT NULL DEFAULT '[]',
        language TEXT
    );
    CREATE INDEX segments_meeting ON segments (meeting_id, run, start_s);
    ALTER TABLE meetings ADD COLUMN transcript_run INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE speakers ADD COLUMN language TEXT
    """,
    # 3: restart recovery. Where the meeting's notes go (so a restarted bot can post
    # them) and when the recording was last known alive (a heartbeat every few
    # seconds), which is where a meeting whose process died was cut short.
    """
    ALTER TABLE meetings ADD COLUMN text_channel_id INTEGER;
    ALTER TABLE meetings ADD COLUMN alive_at REAL
    """,
)

_MEETING_COLUMNS: Final = (
    "id, guild_id, channel_id, channel_name, started_by, started_at, stopped_at, status,"
    " status_detail, transcript_run, text_channel_id, alive_at"
)


@dataclass(frozen=True, slots=True)
class Speaker:
    """A member heard in a meeting, with the display name they had then."""

    user_id: int
    display_name: str
    joined_ms: int | None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class TrackRow:
    """One speaker's audio file; ``path`` is absolute and inside the data directory."""

    user_id: int
    path: Path
    started_ms: int
    ended_ms: int | None


@dataclass(frozen=True, slots=True)
class Meeting:
    """A meeting's row; :meth:`MeetingIndex.get_meeting` fills the lists."""

    id: int
    guild_id: int
    channel_id: int
    channel_name: str | None
    started_by: int
    started_at: float
    stopped_at: float | None
    status: str
    status_detail: str
    transcript_run: int = 1  #: the run of segments the notes use
    text_channel_id: int | None = None  #: where the notes are posted
    alive_at: float | None = None  #: time.time() of the recording's last heartbeat
    speakers: list[Speaker] = field(default_factory=list)
    tracks: list[TrackRow] = field(default_factory=list)
    events: list[TimelineEvent] = field(default_factory=list)


class MeetingIndex:
    """The SQLite session index at ``path``; files are looked up under ``data_dir``.

    ``data_dir`` defaults to the folder holding the index file. A write waits up to
    ``busy_timeout_s`` for another connection's lock, then fails with RecordingError.
    """

    def __init__(
        self,
        path: Path | str,
        data_dir: Path | str | None = None,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.layout = DataLayout(self.path.parent if data_dir is None else data_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s
            )
        except sqlite3.Error as exc:
            raise RecordingError(f"cannot open the session index {self.path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self._ensure_search()
        except (sqlite3.Error, RecordingError) as exc:
            self._db.close()
            if isinstance(exc, RecordingError):
                raise
            raise RecordingError(f"cannot open the session index {self.path}: {exc}") from exc

    @classmethod
    def open(cls, data_dir: Path | str) -> MeetingIndex:
        """The index of a data directory, at its standard place."""
        layout = DataLayout(data_dir)
        return cls(layout.index_path, layout.root)

    # -- plumbing -------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise RecordingError(f"session index: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                # A COMMIT that failed (disk full) leaves the transaction open: without
                # the rollback every later write would fail with "within a transaction".
                if self._db.in_transaction:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise RecordingError(f"session index: {exc}") from exc
                raise

    def _stored_version(self) -> int | None:
        try:
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.OperationalError:
            return None  # a new file: no table yet
        return int(row[0]) if row else None

    def _migrate(self) -> None:
        # Reading needs no write lock (WAL): opening an up-to-date index works while
        # another process holds it locked, which is what the index writer relies on.
        if self._stored_version() == len(MIGRATIONS):
            return
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
            if version > len(MIGRATIONS):
                raise RecordingError(
                    f"the session index is schema version {version}; this notetaker "
                    f"knows up to {len(MIGRATIONS)}: upgrade notetaker"
                )
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))

    def _ensure_search(self) -> None:
        # Derived data, kept out of the versioned schema (recorder/search.py): built
        # once, where this SQLite can, without a write lock when it is already there.
        if not has_search(self._db):
            with self._tx() as db:
                create_search(db)

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        with self._lock:
            return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> MeetingIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------

    def create_meeting(
        self,
        *,
        guild_id: int,
        channel_id: int,
        started_by: int,
        started_at: float,
        channel_name: str | None = None,
        text_channel_id: int | None = None,
    ) -> int:
        """A new meeting in status ``recording``; returns its id.

        ``channel_name`` is kept for display only; no path is ever built from it.
        ``text_channel_id`` is where its notes go (a restarted bot posts them there).
        """
        values = (
            checked_id(guild_id, "guild id"),
            checked_id(channel_id, "channel id"),
            channel_name,
            checked_id(started_by, "user id"),
            float(started_at),
            None if text_channel_id is None else checked_id(text_channel_id, "channel id"),
            float(started_at),
        )
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO meetings (guild_id, channel_id, channel_name, started_by,"
                " started_at, text_channel_id, alive_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            meeting_id = int(cur.lastrowid or 0)
            db.execute(
                "INSERT INTO status_log (meeting_id, status, at) VALUES (?, 'recording', ?)",
                (meeting_id, float(started_at)),
            )
        return meeting_id

    def add_speaker(
        self, meeting_id: int, user_id: int, display_name: str, joined_ms: int | None = None
    ) -> None:
        """Record a speaker; a second call updates the display name (and a missing join time)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO speakers (meeting_id, user_id, display_name, joined_ms)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (meeting_id, user_id)"
                " DO UPDATE SET display_name = excluded.display_name,"
                " joined_ms = COALESCE(speakers.joined_ms, excluded.joined_ms)",
                (
                    checked_id(meeting_id, "meeting id"),
                    checked_id(user_id, "user id"),
                    display_name,
                    joined_ms,
                ),
            )

    def add_track(self, meeting_id: int, user_id: int, path: Path, started_ms: int = 0) -> None:
        """Record a speaker's track; ``path`` must be inside the data directory."""
        relative = self.layout.relative(path)
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO tracks (meeting_id, user_id, path, started_ms)"
                " VALUES (?, ?, ?, ?)",
                (
                    checked_id(meeting_id, "meeting id"),
                    checked_id(user_id, "user id"),
                    relative,
                    started_ms,
                ),
            )

    def end_track(self, meeting_id: int, user_id: int, ended_ms: int) -> None:
        """Record where a track ends on the meeting clock."""
        with self._tx() as db:
            db.execute(
                "UPDATE tracks SET ended_ms = ? WHERE meeting_id = ? AND user_id = ?",
                (ended_ms, checked_id(meeting_id, "meeting id"), checked_id(user_id, "user id")),
            )

    def remove_track(self, meeting_id: int, user_id: int) -> None:
        """Forget a track (its file is the caller's to delete): an opt-out."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM tracks WHERE meeting_id = ? AND user_id = ?",
                (checked_id(meeting_id, "meeting id"), checked_id(user_id, "user id")),
            )

    def add_events(self, meeting_id: int, events: Iterable[TimelineEvent]) -> None:
        """Append timeline events, in one transaction."""
        mid = checked_id(meeting_id, "meeting id")
        rows = []
        for e in events:
            if e.kind not in EVENT_KINDS:
                raise RecordingError(f"unknown timeline event kind {e.kind!r}")
            rows.append((mid, e.user_id, e.kind, e.at_ms, e.count, e.detail))
        if not rows:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO events (meeting_id, user_id, kind, at_ms, count, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def mark_gap(
        self, meeting_id: int, user_id: int | None, at_ms: int | None, count: int, reason: str
    ) -> None:
        """One gap (missing packets, or a reconnect when ``reason`` is ``reconnect``)."""
        self.add_events(meeting_id, [TimelineEvent("gap", user_id, at_ms, count, reason)])

    def set_status(self, meeting_id: int, status: str, *, at: float, detail: str = "") -> None:
        """Move a meeting to ``status`` (see :data:`TRANSITIONS`); logged with ``at``.

        Leaving ``recording`` sets ``stopped_at`` to ``at``.
        """
        if status not in STATUSES:
            raise RecordingError(f"unknown meeting status {status!r}")
        mid = checked_id(meeting_id, "meeting id")
        with self._tx() as db:
            row = db.execute("SELECT status FROM meetings WHERE id = ?", (mid,)).fetchone()
            if row is None:
                raise RecordingError(f"no meeting {mid}")
            if status not in TRANSITIONS[row[0]]:
                raise RecordingError(f"meeting {mid} cannot go from {row[0]} to {status}")
            db.execute(
                "UPDATE meetings SET status = ?, status_detail = ?,"
                " stopped_at = CASE WHEN status = 'recording' THEN ? ELSE stopped_at END"
                " WHERE id = ?",
                (status, detail, at, mid),
            )
            db.execute(
                "INSERT INTO status_log (meeting_id, status, at, detail) VALUES (?, ?, ?, ?)",
                (mid, status, at, detail),
            )

    def set_alive(self, meeting_id: int, at: float) -> None:
        """The recording of ``meeting_id`` was alive at ``at`` (time.time()): the
        heartbeat that tells a restarted bot where a meeting was cut short."""
        with self._tx() as db:
            db.execute(
                "UPDATE meetings SET alive_at = max(coalesce(alive_at, 0), ?) WHERE id = ?",
                (float(at), checked_id(meeting_id, "meeting id")),
            )

    def set_speaker_language(self, meeting_id: int, user_id: int, language: str) -> None:
        """The language a speaker is transcribed in (given, or detected and kept)."""
        with self._tx() as db:
            db.execute(
                "UPDATE speakers SET language = ? WHERE meeting_id = ? AND user_id = ?",
                (language, checked_id(meeting_id, "meeting id"), checked_id(user_id, "user id")),
            )

    # -- the transcript --------------------------------------------------------------

    def add_segments(
        self, meeting_id: int, run: int, segments: Iterable[Segment], language: str | None = None
    ) -> None:
        """Append one utterance's segments to transcript ``run``, in one transaction."""
        mid = checked_id(meeting_id, "meeting id")
        rows = [
            (
                mid,
                run,
                checked_id(seg.user_id, "user id"),
                seg.start,
                seg.end,
                seg.text,
                json.dumps([[w.start, w.end, w.text, w.probability] for w in seg.words]),
                language,
            )
            for seg in segments
        ]
        if not rows:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO segments (meeting_id, run, user_id, start_s, end_s, text, words,"
                " language) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def segments(self, meeting_id: int, run: int | None = None) -> list[Segment]:
        """Transcript ``run`` (default: the meeting's current one) by start time."""
        mid = checked_id(meeting_id, "meeting id")
        with self._lock:
            if run is None:
                run = self._current_run(mid)
            rows = self._db.execute(
                "SELECT user_id, start_s, end_s, text, words FROM segments"
                " WHERE meeting_id = ? AND run = ? ORDER BY start_s, end_s, user_id, id",
                (mid, run),
            ).fetchall()
        return [
            Segment(uid, start, end, text, tuple(Word(*w) for w in json.loads(words)))
            for uid, start, end, text, words in rows
        ]

    def new_run(self, meeting_id: int) -> int:
        """A run number no segment of ``meeting_id`` uses yet (for a re-transcription)."""
        mid = checked_id(meeting_id, "meeting id")
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(run) FROM segments WHERE meeting_id = ?", (mid,)
            ).fetchone()
            return max(int(row[0] or 0), self._current_run(mid)) + 1

    def use_run(self, meeting_id: int, run: int) -> None:
        """Make ``run`` the meeting's transcript and delete every other run."""
        mid = checked_id(meeting_id, "meeting id")
        with self._tx() as db:
            db.execute("UPDATE meetings SET transcript_run = ? WHERE id = ?", (run, mid))
            db.execute("DELETE FROM segments WHERE meeting_id = ? AND run != ?", (mid, run))

    def delete_segments(self, meeting_id: int, user_id: int) -> int:
        """Delete every segment of ``user_id`` in the meeting (an opt-out); how many."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM segments WHERE meeting_id = ? AND user_id = ?",
                (checked_id(meeting_id, "meeting id"), checked_id(user_id, "user id")),
            )
            return int(cur.rowcount)

    def _current_run(self, meeting_id: int) -> int:
        row = self._db.execute(
            "SELECT transcript_run FROM meetings WHERE id = ?", (meeting_id,)
        ).fetchone()
        if row is None:
            raise RecordingError(f"no meeting {meeting_id}")
        return int(row[0])

    # -- reading ---------------------------------------------------------------------

    def list_meetings(self, status: str | None = None, limit: int | None = None) -> list[Meeting]:
        """Meetings, newest first, optionally only those in ``status``."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_MEETING_COLUMNS} FROM meetings"  # noqa: S608 - a constant
                " WHERE (:status IS NULL OR status = :status)"
                " ORDER BY started_at DESC, id DESC LIMIT :limit",
                {"status": status, "limit": -1 if limit is None else int(limit)},
            ).fetchall()
        return [Meeting(*row) for row in rows]

    def get_meeting(self, meeting_id: int) -> Meeting:
        """A meeting with its speakers, tracks and events; RecordingError if unknown."""
        mid = checked_id(meeting_id, "meeting id")
        with self._lock:
            row = self._db.execute(
                f"SELECT {_MEETING_COLUMNS} FROM meetings WHERE id = ?",  # noqa: S608 - a constant
                (mid,),
            ).fetchone()
            if row is None:
                raise RecordingError(f"no meeting {mid}")
            meeting = Meeting(*row)
            meeting.speakers.extend(
                Speaker(*r)
                for r in self._db.execute(
                    "SELECT user_id, display_name, joined_ms, language FROM speakers"
                    " WHERE meeting_id = ? ORDER BY joined_ms, user_id",
                    (mid,),
                )
            )
            meeting.tracks.extend(
                TrackRow(uid, self.layout.resolve_stored(path), started, ended)
                for uid, path, started, ended in self._db.execute(
                    "SELECT user_id, path, started_ms, ended_ms FROM tracks"
                    " WHERE meeting_id = ? ORDER BY user_id",
                    (mid,),
                )
            )
            meeting.events.extend(
                TimelineEvent(kind, uid, at, count, detail)
                for uid, kind, at, count, detail in self._db.execute(
                    "SELECT user_id, kind, at_ms, count, detail FROM events"
                    " WHERE meeting_id = ? ORDER BY id",
                    (mid,),
                )
            )
        return meeting

    def status_history(self, meeting_id: int) -> list[tuple[str, float, str]]:
        """(status, at, detail) of every status change, oldest first."""
        with self._lock:
            return [
                (s, at, d)
                for s, at, d in self._db.execute(
                    "SELECT status, at, detail FROM status_log WHERE meeting_id = ? ORDER BY rowid",
                    (checked_id(meeting_id, "meeting id"),),
                )
            ]

    def search(
        self,
        query: str,
        *,
        guild_id: int | None = None,
        speaker: str | None = None,
        since: float | None = None,
        limit: int = 20,
    ) -> list[SearchHit]:
        """Transcript lines of every meeting matching ``query`` (see
        :func:`notetaker.recorder.search.search`); SearchError if it cannot run."""
        with self._lock:
            return search_lines(
                self._db, query, guild_id=guild_id, speaker=speaker, since=since, limit=limit
            )

    # -- deleting --------------------------------------------------------------------

    def delete_meeting(self, meeting_id: int) -> bool:
        """Remove a meeting's folder (audio and anything else in it), then its rows.

        Files go first: if they cannot be removed, the rows stay so that a retry finds
        them. The folder is derived from the id, never from a stored path. False if the
        meeting was unknown.
        """
        mid = checked_id(meeting_id, "meeting id")
        folder = self.layout.meeting_dir(mid)
        with self._lock:
            known = self._db.execute("SELECT 1 FROM meetings WHERE id = ?", (mid,)).fetchone()
            if known is None and not folder.exists():
                return False
            try:
                if folder.is_symlink():
                    folder.unlink()
                elif folder.exists():
                    shutil.rmtree(folder)
            except OSError as exc:
                raise RecordingError(f"cannot delete meeting {mid}'s files: {exc}") from exc
            with self._tx() as db:
                db.execute("DELETE FROM meetings WHERE id = ?", (mid,))
        return known is not None

    def apply_retention(self, days: float, now: float) -> list[int]:
        """Delete meetings older than ``days`` (by stop time, else start time).

        ``days <= 0`` keeps everything. Meetings still ``recording`` or ``transcribing``
        get :data:`ACTIVE_GRACE_S` more. Returns the ids deleted.
        """
        if days <= 0:
            return []
        cutoff = now - days * 86_400.0
        with self._lock:
            ids = [
                int(r[0])
                for r in self._db.execute(
                    "SELECT id FROM meetings WHERE COALESCE(stopped_at, started_at) < ?"
                    " AND (status IN ('done', 'failed') OR"
                    " COALESCE(stopped_at, started_at) < ?) ORDER BY id",
                    (cutoff, cutoff - ACTIVE_GRACE_S),
                )
            ]
        for mid in ids:
            self.delete_meeting(mid)
        return ids
