"""Who opted out of being recorded, per guild, remembered in the session index's SQLite file
(``notetaker.sqlite3``; :mod:`notetaker.legacy_stores` moves older ones there),
and the sink filter that drops their audio at capture time, before anything is written."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from notetaker.sink import AudioFrame, AudioSink, Gap

_SCHEMA = """
CREATE TABLE IF NOT EXISTS opt_outs (
    guild_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
)
"""


class ConsentStore:
    """Opt-outs per guild. Shares the index database file; owns only its own table."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def set_opted_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        with self._lock:
            if opted_out:
                self._db.execute(
                    "INSERT OR REPLACE INTO opt_outs (guild_id, user_id, since) VALUES (?, ?, ?)",
                    (guild_id, user_id, time.time()),
                )
            else:
                self._db.execute(
                    "DELETE FROM opt_outs WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
                )

    def opted_out(self, guild_id: int) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT user_id FROM opt_outs WHERE guild_id = ?", (guild_id,))
            return {int(r[0]) for r in rows}

    def close(self) -> None:
        self._db.close()


class OptOutFilter(AudioSink):
    """Passes frames to ``inner`` except those of opted-out users, which are dropped here,
    before the recorder sees them. ``excluded`` is shared and may change mid-meeting."""

    def __init__(self, inner: AudioSink, excluded: set[int]) -> None:
        self.inner = inner
        self.excluded = excluded
        self.wants_pcm = inner.wants_pcm
        self.dropped = 0

    def write(self, frame: AudioFrame) -> None:
        if frame.user_id in self.excluded:
            self.dropped += 1
            return
        self.inner.write(frame)

    def gap(self, gap: Gap) -> None:
        if gap.user_id not in self.excluded:
            self.inner.gap(gap)

    def close(self) -> None:
        self.inner.close()
