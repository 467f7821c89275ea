"""The recorder: one Ogg Opus track per speaker, a meeting timeline and a session index.

* :mod:`~notetaker.recorder.ogg`: Ogg pages, OpusHead/OpusTags, the page writer.
* :mod:`~notetaker.recorder.ogg_tail`: where a track's stream ends on disk, to continue it.
* :mod:`~notetaker.recorder.track`: one speaker's RTP clock onto the meeting clock.
* :mod:`~notetaker.recorder.recorder`: :class:`Recorder`, the production audio sink.
* :mod:`~notetaker.recorder.index`: :class:`MeetingIndex`, the SQLite session index.
* :mod:`~notetaker.recorder.index_writer`: :class:`IndexWriter`, the recorder's rows
  written off the receive loop.
* :mod:`~notetaker.recorder.failures`: :class:`TrackFailure`, a track a write error
  stopped, and the sentence that tells the channel.
* :mod:`~notetaker.recorder.paths`: :class:`DataLayout`, paths from integer ids only.
* :mod:`~notetaker.recorder.export`: mixdown and per-speaker copies.
"""

from __future__ import annotations

from notetaker.recorder.export import ExportResult, export_meeting, mix_tracks
from notetaker.recorder.failures import TrackFailure
from notetaker.recorder.index import Meeting, MeetingIndex, Speaker, TrackRow
from notetaker.recorder.index_writer import IndexWriter, WriterReport
from notetaker.recorder.ogg_tail import StreamEnd, read_stream_end
from notetaker.recorder.paths import DataLayout, checked_id
from notetaker.recorder.recorder import Recorder, TrackStats
from notetaker.recorder.timeline import TimelineEvent
from notetaker.recorder.track import RecorderConfig

__all__ = [
    "DataLayout",
    "ExportResult",
    "IndexWriter",
    "Meeting",
    "MeetingIndex",
    "Recorder",
    "RecorderConfig",
    "Speaker",
    "StreamEnd",
    "TimelineEvent",
    "TrackFailure",
    "TrackRow",
    "TrackStats",
    "WriterReport",
    "checked_id",
    "export_meeting",
    "mix_tracks",
    "read_stream_end",
]
