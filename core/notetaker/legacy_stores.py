"""Opt-outs used to live in a file of their own (``index.sqlite3``) beside the session
index (``notetaker.sqlite3``), though both claimed to share one. At start they move into
the session index, once, so that one file (what a backup copies, what ``notetaker``'s
commands open) holds everything; the old file is kept, renamed, as it was."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

LEGACY: Final = "index.sqlite3"
MOVED: Final = "index.sqlite3.moved"
#: The tables the old file may hold, with their columns (created by their stores).
TABLES: Final = {
    "opt_outs": "guild_id, user_id, since",
    "autorecord": "guild_id, voice_channel_id, text_channel_id, enabled_by, since",
}


def adopt(data_dir: Path, index_path: Path) -> int:
    """Copy the old file's rows into ``index_path`` (whose stores made their tables
    already), then rename the old file. Returns the rows copied (0: nothing to do)."""
    legacy = Path(data_dir) / LEGACY
    if not legacy.is_file():
        return 0
    db = sqlite3.connect(index_path, isolation_level=None, timeout=10)
    copied = 0
    try:
        db.execute("ATTACH DATABASE ? AS legacy", (str(legacy),))
        present = {
            r[0] for r in db.execute("SELECT name FROM legacy.sqlite_master WHERE type='table'")
        }
        ready = {r[0] for r in db.execute("SELECT name FROM main.sqlite_master WHERE type='table'")}
        waiting = [t for t in TABLES if t in present and t not in ready]
        if waiting:  # its store is not open on this file yet: leave the old file be
            log.info("not moving %s yet: no %s table in %s", legacy, waiting, index_path)
            return 0
        db.execute("BEGIN IMMEDIATE")
        for table, columns in TABLES.items():
            if table in present:
                cur = db.execute(
                    f"INSERT OR IGNORE INTO main.{table} ({columns})"  # noqa: S608 - constants
                    f" SELECT {columns} FROM legacy.{table}"
                )
                copied += max(0, cur.rowcount)
        db.execute("COMMIT")
        db.execute("DETACH DATABASE legacy")
    finally:
        db.close()
    legacy.rename(legacy.with_name(MOVED))
    for suffix in ("-wal", "-shm"):
        leftover = legacy.with_name(LEGACY + suffix)
        if leftover.exists():
            leftover.rename(legacy.with_name(MOVED + suffix))
    log.info("moved %s row(s) of %s into %s", copied, legacy, index_path)
    return copied
