"""Where a meeting's files live, built from integer ids only.

Nothing a Discord user can name (a channel called ``../../etc``, a display name) ever
becomes part of a path: the layout is ``<data_dir>/meetings/<meeting_id>/<user_id>.opus``
with both ids validated as non-negative integers, and every path is resolved and checked
to be inside the data directory before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from notetaker.errors import RecordingError

INDEX_NAME: Final = "notetaker.sqlite3"
TRACK_SUFFIX: Final = ".opus"
#: Discord snowflakes and SQLite rowids both fit a signed 64-bit integer.
MAX_ID: Final = 2**63 - 1


def checked_id(value: object, what: str = "id") -> int:
    """``value`` if it is an int in 0..2**63-1 (not a bool, not a string of digits)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordingError(f"{what} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_ID:
        raise RecordingError(f"{what} {value} is out of range")
    return value


@dataclass(frozen=True)
class DataLayout:
    """The data directory's layout. ``root`` is resolved once, at construction."""

    root: Path

    def __init__(self, root: Path | str) -> None:
        object.__setattr__(self, "root", Path(root).expanduser().resolve())

    @property
    def index_path(self) -> Path:
        """The SQLite session index."""
        return self.root / INDEX_NAME

    @property
    def meetings_dir(self) -> Path:
        """The folder holding one folder per meeting."""
        return self.root / "meetings"

    def meeting_dir(self, meeting_id: int) -> Path:
        """``meetings/<meeting_id>``."""
        return self.contain(self.meetings_dir / str(checked_id(meeting_id, "meeting id")))

    def track_path(self, meeting_id: int, user_id: int) -> Path:
        """``meetings/<meeting_id>/<user_id>.opus``."""
        name = f"{checked_id(user_id, 'user id')}{TRACK_SUFFIX}"
        return self.contain(self.meeting_dir(meeting_id) / name)

    def contain(self, path: Path) -> Path:
        """``path`` resolved, if it is inside the data directory; else RecordingError."""
        resolved = (self.root / path).resolve()
        if resolved == self.root or not resolved.is_relative_to(self.root):
            raise RecordingError(f"path {path} is outside the data directory")
        return resolved

    def relative(self, path: Path) -> str:
        """``path`` relative to the data directory, as stored in the index."""
        return self.contain(path).relative_to(self.root).as_posix()

    def resolve_stored(self, stored: str) -> Path:
        """A path read back from the index, resolved and checked to be contained."""
        return self.contain(Path(stored))
