"""The speech-to-text seam: what a transcriber is given and what it returns.

Each Discord user arrives as their own recorded track, so a transcriber never has to
tell speakers apart: it transcribes one track at a time and the speaker of every
segment is the track's user. Times in the result are on the *meeting* clock (seconds
since the meeting started), so segments from different tracks merge by sorting.

Engines live in plugins (``notetaker-transcribe``); this module imports nothing heavy.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Called with the fraction done, 0.0 to 1.0. May be called from a worker thread.
Progress = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word; ``start``/``end`` in meeting seconds."""

    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of one speaker's speech; ``start``/``end`` in meeting seconds."""

    user_id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class TrackInput:
    """One speaker's recorded track.

    ``offset_s``: where the track's first sample lies on the meeting clock. A
    transcriber adds it to every time it finds in the file.
    """

    user_id: int
    display_name: str
    path: Path
    offset_s: float = 0.0


class Transcriber(ABC):
    """A speech-to-text engine.

    :meth:`transcribe` is blocking and CPU/GPU bound: call it from a worker thread
    (:func:`transcribe_tracks` does), never on the event loop.
    """

    name: str = "?"

    @abstractmethod
    def transcribe(self, track: TrackInput, progress: Progress | None = None) -> list[Segment]:
        """Transcribe ``track``; segments in time order with meeting-clock times.

        ``progress``, if given, is called with the fraction of the track done.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing
        """Release the model. The default holds nothing to release."""


@dataclass
class _TrackProgress:
    """Turns per-track fractions into an overall fraction weighted equally per track."""

    total: int
    callback: Progress
    last: float = 0.0

    def for_track(self, index: int) -> Progress:
        def report(fraction: float) -> None:
            value = (index + min(max(fraction, 0.0), 1.0)) / self.total
            # Never report going backwards: engines may re-estimate their duration.
            if value > self.last:
                self.last = value
                self.callback(value)

        return report


async def transcribe_tracks(
    transcriber: Transcriber,
    tracks: Sequence[TrackInput],
    progress: Progress | None = None,
) -> list[Segment]:
    """Transcribe every track, each in a worker thread; all segments by start time.

    Tracks run one after another: a Whisper model already uses every core it is given,
    and running two at once would only double the memory. ``progress`` receives the
    overall fraction done, called from the worker thread.
    """
    segments: list[Segment] = []
    tracker = _TrackProgress(len(tracks), progress) if progress is not None and tracks else None
    for index, track in enumerate(tracks):
        report = tracker.for_track(index) if tracker is not None else None
        segments.extend(await asyncio.to_thread(transcriber.transcribe, track, report))
    if progress is not None:
        progress(1.0)
    return sorted(segments, key=lambda s: (s.start, s.end, s.user_id))
