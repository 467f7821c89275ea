"""One meeting's side of the transcription queue: results into the session index as they
come, languages per speaker, captions out, and the tracks for utterances that waited on
disk. Its methods run on the queue's worker thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from notetaker.errors import RecordingError
from notetaker.live.cutter import Packet, Utterance
from notetaker.live.language import SpeakerLanguages
from notetaker.live.queue import MeetingTranscript
from notetaker.recorder.index import MeetingIndex
from notetaker.recorder.ogg_read import TrackReader
from notetaker.sink import OPUS_SILENCE
from notetaker.transcript import Segment, UtteranceResult

log = logging.getLogger(__name__)

#: Called (on the worker thread) with an utterance and the segments heard in it.
SegmentListener = Callable[[Utterance, Sequence[Segment]], None]


class TrackPackets:
    """Reads utterances back from the tracks of a meeting folder. ``flush`` (the live
    recorder's :meth:`~notetaker.recorder.recorder.Recorder.flush_track`) is asked to
    write a speaker's partial page when a read reaches past what is on disk."""

    def __init__(
        self, path_of: Callable[[int], Path], flush: Callable[[int], None] | None = None
    ) -> None:
        self._path_of = path_of
        self._flush = flush
        self._readers: dict[int, TrackReader] = {}

    def packets(self, user_id: int, start: int, end: int) -> list[Packet]:
        reader = self._readers.get(user_id)
        if reader is None:
            reader = self._readers[user_id] = TrackReader(self._path_of(user_id))
        if reader.refresh() < end and self._flush is not None:
            self._flush(user_id)
            reader.refresh()
        return [(p.start, p.opus) for p in reader.packets(start, end) if p.opus != OPUS_SILENCE]


@dataclass
class TranscriptProgress:
    """Counters of one meeting's transcript."""

    utterances: int = 0
    segments: int = 0
    speech_s: float = 0.0
    rejected: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[Utterance, str]] = field(default_factory=list)
    index_errors: int = 0


class LiveTranscript(MeetingTranscript):
    """Writes each utterance's segments to ``index`` under transcript ``run``."""

    def __init__(
        self,
        index: MeetingIndex,
        meeting_id: int,
        run: int,
        *,
        languages: SpeakerLanguages,
        tracks: TrackPackets,
        listener: SegmentListener | None = None,
    ) -> None:
        self.index = index
        self.meeting_id = meeting_id
        self.run = run
        self.languages = languages
        self.tracks = tracks
        self.listener = listener
        self.progress = TranscriptProgress()
        self._lock = threading.Lock()
        self._dropped: set[int] = set()

    def language_for(self, user_id: int) -> str | None:
        return self.languages.language_for(user_id)

    def packets(self, utterance: Utterance) -> Sequence[Packet]:
        return self.tracks.packets(utterance.user_id, utterance.start, utterance.end)

    def on_result(self, utterance: Utterance, result: UtteranceResult) -> None:
        with self._lock:
            if utterance.user_id in self._dropped:
                return  # opted out while this utterance was being transcribed
            progress = self.progress
            progress.utterances += 1
            progress.speech_s += utterance.speech_s
            for reason, count in result.rejected:
                progress.rejected[reason] = progress.rejected.get(reason, 0) + count
            decided = self.languages.observe(
                utterance.user_id,
                utterance.speech_s,
                result.language,
                result.language_probability,
            )
            try:
                if decided is not None:
                    self.index.set_speaker_language(self.meeting_id, utterance.user_id, decided)
                self.index.add_segments(self.meeting_id, self.run, result.segments, result.language)
            except RecordingError as exc:
                progress.index_errors += 1
                log.error("meeting %s: transcript not stored: %s", self.meeting_id, exc)
                return
            progress.segments += len(result.segments)
        if self.listener is not None and result.segments:
            self.listener(utterance, result.segments)

    def on_failure(self, utterance: Utterance, error: Exception) -> None:
        with self._lock:
            self.progress.failed.append((utterance, str(error)))
        log.warning(
            "meeting %s: an utterance of %.1f s could not be transcribed: %s",
            self.meeting_id,
            utterance.speech_s,
            error,
        )

    def dropped(self, user_id: int) -> bool:
        """Whether ``user_id`` opted out of this meeting."""
        with self._lock:
            return user_id in self._dropped

    def drop_user(self, user_id: int) -> None:
        """An opt-out: nothing more of ``user_id`` is stored; what was is deleted."""
        with self._lock:
            self._dropped.add(user_id)
            self.progress.failed = [f for f in self.progress.failed if f[0].user_id != user_id]
            self.index.delete_segments(self.meeting_id, user_id)
