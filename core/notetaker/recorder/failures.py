"""A speaker's track that could not be written: why, where it stops, what to tell people.

A write error stops only the track it happened on (the recorder goes on with the others);
the meeting's channel should hear about it at once, in words, not find out from the
notes. :meth:`TrackFailure.message` is that sentence.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Final

#: Causes by errno, in the words the timeline and the notes use.
_CAUSES: Final = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk full",
    errno.EROFS: "read-only disk",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "I/O error",
}
#: The cause as the end of "Recording of Alice stopped: ...".
_SENTENCES: Final = {
    "disk full": "the disk is full",
    "read-only disk": "the disk became read-only",
    "permission denied": "the data directory may not be written",
    "I/O error": "the disk reported an I/O error",
}


def cause_of(exc: BaseException) -> str:
    """``disk full``, ``permission denied``...; ``write error`` for anything else."""
    code = exc.errno if isinstance(exc, OSError) else None
    return _CAUSES.get(code, "write error") if code is not None else "write error"


def _clock(ms: int) -> str:
    minutes, seconds = divmod(ms // 1000, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


@dataclass(frozen=True, slots=True)
class TrackFailure:
    """``user_id``'s track stopped (``started``) or never opened.

    ``at_ms``: where the audio on disk ends, on the meeting clock (for a track that never
    opened, when its first packet came). ``cause``: see :func:`cause_of`; ``error``: the
    operating system's words; ``directory``: where the track was being written.
    """

    user_id: int
    at_ms: int
    cause: str
    error: str
    directory: str
    started: bool = True

    def message(self, name: str) -> str:
        """The sentence for the meeting's channel."""
        why = _SENTENCES.get(self.cause, f"the track could not be written ({self.cause})")
        if self.started:
            head = f"Recording of {name} stopped at {_clock(self.at_ms)}: {why}"
            tail = f"what was recorded of {name} before is kept"
        else:
            head = f"{name} is not being recorded: {why}"
            tail = "nothing of them could be written"
        return f"{head} ({self.error}; in {self.directory}). The meeting goes on; {tail}."
