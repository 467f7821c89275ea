"""Full-text search over the transcript lines of every meeting in the session index.

An SQLite FTS5 table indexes ``segments.text``; triggers keep it in step with the
segments table, so a line is searchable the moment the live path writes it, and lines
deleted (an opt-out, a re-transcription replacing a run, a deleted meeting) leave the
index with it. It is derived data, not part of the versioned schema: an index opened by
a Python whose SQLite has FTS5 gets it built (from the segments already there) if it is
missing, and one without FTS5 keeps working, only search says why it cannot.

What a user types is never FTS5 syntax: words and ``"quoted phrases"`` must all appear
(a trailing ``*`` makes a word a prefix), everything else is literal.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Final

from notetaker.errors import SearchError

TABLE: Final = "segments_fts"
#: porter: "decided" finds "decide"; remove_diacritics: "cafe" finds "café".
_CREATE: Final = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS segments_fts USING fts5(text, content='segments',"
    " content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS segments_fts_insert AFTER INSERT ON segments BEGIN"
    " INSERT INTO segments_fts (rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS segments_fts_delete AFTER DELETE ON segments BEGIN"
    " INSERT INTO segments_fts (segments_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    " END",
    "CREATE TRIGGER IF NOT EXISTS segments_fts_update AFTER UPDATE OF text ON segments BEGIN"
    " INSERT INTO segments_fts (segments_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    " INSERT INTO segments_fts (rowid, text) VALUES (new.id, new.text); END",
)
#: Marks around each matched word in :attr:`SearchHit.marked` (Discord's bold).
MARK: Final = "**"
NO_FTS5: Final = (
    "search needs SQLite's full-text search (FTS5), which this Python's sqlite3 lacks; "
    "run notetaker on a Python whose SQLite has it (python.org and Debian builds do)"
)
_TERM = re.compile(r'"([^"]*)"?|(\S+)')


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One transcript line that matched."""

    meeting_id: int
    guild_id: int
    channel_name: str | None
    started_at: float  #: the meeting's start, time.time()
    user_id: int
    speaker: str  #: display name at the time ('' if never named)
    start_s: float  #: meeting clock
    text: str
    marked: str  #: ``text`` with the matched words between :data:`MARK`


def has_search(db: sqlite3.Connection) -> bool:
    """Whether the FTS table exists in this database."""
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).fetchone()
    return row is not None


def create_search(db: sqlite3.Connection) -> bool:
    """Create the FTS table and its triggers and index the segments already there, inside
    the caller's transaction. False (nothing created) if SQLite has no FTS5."""
    if has_search(db):
        return True
    try:
        for statement in _CREATE:
            db.execute(statement)
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc):
            return False
        raise
    db.execute("INSERT INTO segments_fts (segments_fts) VALUES ('rebuild')")
    return True


def match_expression(query: str) -> str:
    """The FTS5 MATCH expression for what a user typed: every word and quoted phrase,
    each quoted (so AND, NEAR, ``-`` or ``:`` are only words), all required. Raises
    SearchError when nothing in it can be searched for."""
    terms = []
    for phrase, word in _TERM.findall(query):
        term, prefix = (phrase, False) if phrase else (word, word.endswith("*"))
        term = term.rstrip("*") if prefix else term
        if not re.search(r"\w", term):
            continue  # punctuation only: the tokenizer keeps nothing of it
        quoted = '"' + term.replace('"', '""') + '"'
        terms.append(quoted + "*" if prefix else quoted)
    if not terms:
        raise SearchError("Give a word to search for, e.g. /notessearch query:budget")
    return " ".join(terms)


def search(
    db: sqlite3.Connection,
    query: str,
    *,
    guild_id: int | None = None,
    speaker: str | None = None,
    since: float | None = None,
    limit: int = 20,
) -> list[SearchHit]:
    """Lines of the meetings' current transcripts matching ``query``, best match first
    (newer meetings first among equals). ``speaker``: a display name (any case) or a user
    id; ``since``: meetings started at or after this time.time()."""
    expression = match_expression(query)
    if not has_search(db):
        raise SearchError(NO_FTS5)
    speaker_id = int(speaker) if speaker is not None and speaker.strip().isdigit() else None
    rows = db.execute(
        "SELECT m.id, m.guild_id, m.channel_name, m.started_at, s.user_id,"
        " COALESCE(sp.display_name, ''), s.start_s, s.text,"
        " highlight(segments_fts, 0, :mark, :mark)"
        " FROM segments_fts JOIN segments s ON s.id = segments_fts.rowid"
        " JOIN meetings m ON m.id = s.meeting_id AND s.run = m.transcript_run"
        " LEFT JOIN speakers sp ON sp.meeting_id = s.meeting_id AND sp.user_id = s.user_id"
        " WHERE segments_fts MATCH :match"
        " AND (:guild IS NULL OR m.guild_id = :guild)"
        " AND (:since IS NULL OR m.started_at >= :since)"
        " AND (:speaker IS NULL OR s.user_id = :speaker_id"
        "      OR lower(sp.display_name) = lower(:speaker))"
        " ORDER BY segments_fts.rank, m.started_at DESC, s.start_s LIMIT :limit",
        {
            "mark": MARK,
            "match": expression,
            "guild": guild_id,
            "since": since,
            "speaker": speaker.strip() if speaker is not None else None,
            "speaker_id": speaker_id,
            "limit": max(1, int(limit)),
        },
    ).fetchall()
    return [SearchHit(*row) for row in rows]
