"""The production :class:`~notetaker.sink.AudioSink`: one Ogg Opus track per speaker.

Frames are routed to per-user :class:`~notetaker.recorder.track.Track` objects, which
place them on the meeting clock and page them out. The recorder adds the wall-clock side
(flushing partial pages of speakers who went quiet), the timeline (gaps, reconnects,
re-anchors, opt-outs) and the session index rows. A reconnect continues the same tracks;
its gap becomes silence and a ``reconnect`` event. So does a restart of the bot: a new
recorder of the same meeting continues the tracks its killed process left
(:meth:`Recorder.resume_tracks`), the outage a ``restart`` event; the heartbeat
(``alive_at``, every :data:`ALIVE_EVERY_S`) tells the new process when the old one stopped.

Nothing here blocks the receive loop for long: per packet it is a TOC lookup, a few
integer operations and a list append; a page write (about 1 s of audio) is one buffered
``write`` + ``flush``. The index rows only queue: an
:class:`~notetaker.recorder.index_writer.IndexWriter` thread writes them, so a database
another process holds locked never stalls the receive loop. A write error (a full disk)
stops the affected track only: a ``stopped`` event where its audio ends, a
:class:`~notetaker.recorder.failures.TrackFailure` for :meth:`Recorder.take_failures`
(the meeting tells the channel), and the other tracks go on. Nothing propagates into the
receive loop.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from notetaker.errors import RecordingError
from notetaker.recorder.failures import TrackFailure, cause_of
from notetaker.recorder.index import MeetingIndex
from notetaker.recorder.index_writer import CLOSE_TIMEOUT_S, IndexWriter, WriterReport
from notetaker.recorder.paths import DataLayout, checked_id
from notetaker.recorder.timeline import TimelineEvent
from notetaker.recorder.track import RecorderConfig, Track, open_new
from notetaker.sink import SAMPLE_RATE, AudioFrame, AudioSink, Gap

#: Events kept in memory for inspection (the index keeps all of them).
RECENT_EVENTS = 10_000
#: Wall-clock seconds between heartbeats (``alive_at`` in the index): a restarted bot
#: knows from it, within this much, when the recording stopped.
ALIVE_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class TrackStats:
    """Counters of one speaker's track."""

    user_id: int
    packets: int
    silence_packets: int
    dropped: int
    lost: int
    reanchors: int
    written_ms: int
    flushed_ms: int


class Recorder(AudioSink):
    """Records a meeting under ``layout`` as ``meetings/<meeting_id>/<user_id>.opus``.

    ``started_at`` is the meeting start on the clock of :attr:`AudioFrame.arrival`
    (monotonic seconds; default: ``clock()`` now). With an ``index``, speakers, tracks
    and events go to the same file through an :class:`IndexWriter` (its own thread and
    connection) as they happen, events in batches at each flush interval; :meth:`close`
    waits up to ``index_close_timeout_s`` for them, :meth:`flush_index` before. A reader
    of ``index`` sees them after either. ``display_name`` maps a user id to the name to
    record for them. Call :meth:`tick` about once a second so that a partial page of a
    speaker who went quiet is flushed even while nobody talks; with an index it also
    records a heartbeat (``alive_at``, from ``wall_clock``) every :data:`ALIVE_EVERY_S`.
    ``open_file`` makes a track's file (a seam for tests of write errors).

    A restarted bot continues a meeting its killed process left: a recorder on the same
    meeting, with ``started_at`` such that the meeting clock goes on, then
    :meth:`resume_tracks` before any frame and :meth:`mark_restart` for the outage.
    """

    wants_pcm = False

    def __init__(
        self,
        layout: DataLayout,
        meeting_id: int,
        *,
        started_at: float | None = None,
        config: RecorderConfig | None = None,
        index: MeetingIndex | None = None,
        display_name: Callable[[int], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        open_file: Callable[[Path], BinaryIO] = open_new,
        index_close_timeout_s: float = CLOSE_TIMEOUT_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = layout
        self.meeting_id = checked_id(meeting_id, "meeting id")
        self.config = config or RecorderConfig()
        self.index = index
        self._open_file = open_file
        self._index_close_timeout_s = index_close_timeout_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._next_alive: float | None = None  # None: the first tick sends one
        self.started_at = clock() if started_at is None else started_at
        self._display_name = display_name
        self.directory = layout.meeting_dir(self.meeting_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"cannot create {self.directory}: {exc}") from exc
        self._writer = (
            None
            if index is None
            else IndexWriter.for_index(index, name=f"notetaker-index-{self.meeting_id}")
        )
        self._lock = threading.Lock()
        self._tracks: dict[int, Track] = {}
        self._ignored: set[int] = set()
        self._failed: set[int] = set()
        self._failures: list[TrackFailure] = []
        self._failures_taken = 0
        self._pending: list[TimelineEvent] = []
        self.events: deque[TimelineEvent] = deque(maxlen=RECENT_EVENTS)
        self._interval = self.config.flush_interval_s
        # Sweeping twice per interval keeps a partial page's wait under 1.5 intervals.
        self._sweep_every = self._interval / 2
        self._next_sweep = self.started_at + self._sweep_every
        self.closed = False
        self.errors = 0
        self.dropped_after_close = 0

    # -- the sink ---------------------------------------------------------------------

    def write(self, frame: AudioFrame) -> None:
        """Place one frame in its speaker's track; opens the track on first sight."""
        with self._lock:
            track = self._tracks.get(frame.user_id)
            if track is None:
                if self.closed:
                    self.dropped_after_close += 1
                    return
                track = self._open(frame.user_id, frame.arrival)
                if track is None:
                    return
            if not track.closed:
                try:
                    track.write(frame.rtp_timestamp, frame.arrival, frame.opus, frame.ssrc)
                except (OSError, RecordingError) as exc:
                    self._fail(track, exc)
                if track.events:
                    self._take_events(track)
            if frame.arrival >= self._next_sweep:
                self._sweep(frame.arrival)

    def gap(self, gap: Gap) -> None:
        """Mark missing packets; a ``reconnect`` gap re-anchors the speaker's RTP clock."""
        with self._lock:
            track = self._tracks.get(gap.user_id)
            at_ms = None
            if track is not None:
                track.lost += gap.count
                at_ms = track.granule * 1000 // SAMPLE_RATE
                if gap.reason == "reconnect":
                    track.reanchor("reconnect")
            self._emit(TimelineEvent("gap", gap.user_id, at_ms, gap.count, gap.reason))

    def close(self) -> None:
        """End every track (end-of-stream page), record where each ends, flush events."""
        self.close_at()

    def close_at(self, at: float | None = None) -> None:
        """:meth:`close`, with the capture's end on the meeting's clock (default: now).

        Returns once the index has every row, or after ``index_close_timeout_s`` of a
        locked index (what was not written is logged): call it off the receive loop.
        """
        with self._lock:
            if self.closed:
                return
            self.closed = True
            end = self._clock() if at is None else at
            for track in self._tracks.values():
                if not track.closed:
                    try:
                        track.close()
                    except OSError as exc:
                        self._fail(track, exc)
                if self._writer is not None:
                    # A stopped track ends where its audio on disk ends.
                    granule = (
                        track.flushed_granule if track.user_id in self._failed else track.granule
                    )
                    self._writer.end_track(
                        self.meeting_id, track.user_id, granule * 1000 // SAMPLE_RATE
                    )
            self._emit(TimelineEvent("close", None, self._ms(end)))
            self._write_events()
            if self._writer is not None:
                self._writer.set_alive(self.meeting_id, self._wall_clock())
        # Outside the lock: a write still arriving must find the recorder closed, not wait.
        if self._writer is not None:
            self._writer.close(self._index_close_timeout_s)

    # -- a restarted bot ------------------------------------------------------------------

    def resume_tracks(self, user_ids: Iterable[int]) -> dict[int, str]:
        """Continue the tracks of ``user_ids`` that an earlier process of this meeting
        wrote (and was killed before closing): their next packets go on in the same
        files, on the same meeting clock, after silence for the time nobody recorded.

        Call it right after construction, before frames flow, off the receive loop: it
        reads each file through (seconds for hours of audio) with the recorder's lock
        held. The speakers and tracks are in the index already, so no rows and no
        ``join`` follow. Returns ``{user_id: reason}`` for the tracks that cannot be
        continued (no file, a stream that ended, no valid Ogg Opus headers): those
        speakers are not recorded in this process (their file is never overwritten),
        and each gets an ``error`` event saying why.
        """
        failed: dict[int, str] = {}
        with self._lock:
            for user_id in user_ids:
                uid = checked_id(user_id, "user id")
                if uid in self._tracks or uid in self._ignored:
                    continue
                path = self.layout.track_path(self.meeting_id, uid)
                try:
                    track = Track.resume(
                        path, user_id=uid, meeting_start=self.started_at, config=self.config
                    )
                except FileNotFoundError:
                    failed[uid] = f"no track file {path} to continue"
                except (OSError, RecordingError) as exc:
                    failed[uid] = str(exc)
                else:
                    self._tracks[uid] = track
                    continue
                self._ignored.add(uid)
                self.errors += 1
                self._emit(
                    TimelineEvent("error", uid, None, 0, f"cannot continue track: {failed[uid]}")
                )
            self._write_events()
        return failed

    def last_granule_ms(self) -> int:
        """Where the audio of the track that runs longest ends, in ms on the meeting
        clock (after :meth:`resume_tracks`: where the earlier process's audio ends)."""
        with self._lock:
            return max(
                (
                    (t.flushed_granule if uid in self._failed else t.granule) * 1000 // SAMPLE_RATE
                    for uid, t in self._tracks.items()
                ),
                default=0,
            )

    def mark_restart(
        self, down_at_ms: int, resumed_at: float, detail: str = "bot restarted"
    ) -> None:
        """The bot's process stopped at ``down_at_ms`` (meeting clock) and recording went
        on at ``resumed_at`` (the clock of :attr:`AudioFrame.arrival`): a ``restart``
        event for the outage, and every speaker's next packet is placed by its arrival
        time (a new process means new SSRCs and RTP bases)."""
        with self._lock:
            for track in self._tracks.values():
                track.reanchor("restart")
            outage_ms = max(0, self._ms(resumed_at) - down_at_ms)
            self._emit(TimelineEvent("restart", None, down_at_ms, outage_ms, detail))
            self._write_events()

    # -- what the bot tells the recorder ------------------------------------------------

    def mark_reconnect(self, dropped_at: float, resumed_at: float, detail: str = "") -> None:
        """The voice connection dropped at ``dropped_at`` and was back at ``resumed_at``.

        Tracks continue; every speaker's next packet is placed by its arrival time,
        because the new connection may bring new SSRCs and RTP bases.
        """
        with self._lock:
            for track in self._tracks.values():
                track.reanchor("reconnect")
            length_ms = max(0, round((resumed_at - dropped_at) * 1000))
            self._emit(TimelineEvent("reconnect", None, self._ms(dropped_at), length_ms, detail))

    def opt_out(self, user_id: int, at: float, *, delete: bool = True) -> None:
        """Stop recording ``user_id`` for the rest of the meeting.

        With ``delete`` their track file and track row are removed too.
        """
        uid = checked_id(user_id, "user id")
        with self._lock:
            self._ignored.add(uid)
            track = self._tracks.get(uid)
            if track is not None:
                with contextlib.suppress(OSError):
                    track.close()
                if delete:
                    with contextlib.suppress(FileNotFoundError):
                        track.path.unlink()
                    if self._writer is not None:
                        self._writer.remove_track(self.meeting_id, uid)
            self._emit(TimelineEvent("opt_out", uid, self._ms(at), 0, "deleted" if delete else ""))
            self._write_events()

    def flush_track(self, user_id: int) -> None:
        """Write ``user_id``'s partial page now, so that a reader sees all of it."""
        with self._lock:
            track = self._tracks.get(user_id)
            if track is not None and not track.closed:
                try:
                    track.flush()
                except OSError as exc:
                    self._fail(track, exc)

    def track_path(self, user_id: int) -> Path:
        """Where ``user_id``'s track is (or would be) written."""
        return self.layout.track_path(self.meeting_id, user_id)

    def tick(self, now: float | None = None) -> None:
        """Flush partial pages that waited a flush interval, and pending events; queue a
        heartbeat if :data:`ALIVE_EVERY_S` of wall time passed since the last one."""
        with self._lock:
            if not self.closed:
                self._sweep(self._clock() if now is None else now)
                if self._writer is not None:
                    wall = self._wall_clock()
                    if self._next_alive is None or wall >= self._next_alive:
                        self._next_alive = wall + ALIVE_EVERY_S
                        # Queued only: the writer thread runs the UPDATE.
                        self._writer.set_alive(self.meeting_id, wall)

    def flush_index(self, timeout: float | None = None) -> bool:
        """Wait until the index has every row and event so far (False: ``timeout`` passed,
        the index is locked). Blocks: never call it on the receive loop."""
        with self._lock:
            self._write_events()
        return self._writer is None or self._writer.flush(timeout)

    # -- failures -------------------------------------------------------------------------

    def failures(self) -> list[TrackFailure]:
        """Every track that stopped, or could not open, so far."""
        with self._lock:
            return list(self._failures)

    def take_failures(self) -> list[TrackFailure]:
        """Failures since the last call (the meeting polls this to tell the channel)."""
        with self._lock:
            new = self._failures[self._failures_taken :]
            self._failures_taken = len(self._failures)
            return new

    # -- inspection ---------------------------------------------------------------------

    def stats(self) -> dict[int, TrackStats]:
        """Counters per speaker."""
        with self._lock:
            return {
                uid: TrackStats(
                    uid,
                    t.packets,
                    t.silence_packets,
                    t.dropped,
                    t.lost,
                    t.reanchors,
                    t.granule * 1000 // SAMPLE_RATE,
                    t.flushed_granule * 1000 // SAMPLE_RATE,
                )
                for uid, t in self._tracks.items()
            }

    def track_paths(self) -> dict[int, str]:
        """Each speaker's track file."""
        with self._lock:
            return {uid: str(t.path) for uid, t in self._tracks.items()}

    @property
    def index_report(self) -> WriterReport:
        """What the index writer did so far (after :meth:`close`: all it will do)."""
        return self._writer.report() if self._writer is not None else WriterReport()

    @property
    def index_errors(self) -> int:
        """Index rows that did not (or not yet, when closed: never) reach the index."""
        return self.index_report.lost

    @property
    def index_writer(self) -> IndexWriter | None:
        """The writer that applies this recorder's index rows (what waits: ``queued``)."""
        return self._writer

    @property
    def index_writer_thread(self) -> threading.Thread | None:
        """The only thread that runs SQLite statements for this recorder."""
        return self._writer.thread if self._writer is not None else None

    # -- internals ------------------------------------------------------------------------

    def _ms(self, at: float) -> int:
        return max(0, round((at - self.started_at) * 1000))

    def _open(self, user_id: int, arrival: float) -> Track | None:
        if user_id in self._ignored:
            return None
        # The file is created here, on the receive loop, on purpose: it is one create
        # and one small buffered write (the Ogg headers) per speaker per meeting, the
        # same kind of local-disk call as the page writes this loop already makes, and
        # opening it elsewhere would mean holding the speaker's first packets in memory
        # with a second failure mode. The index row, which may wait on a lock, only
        # queues (below).
        try:
            path = self.layout.track_path(self.meeting_id, user_id)
            track = Track(
                path,
                user_id=user_id,
                meeting_start=self.started_at,
                config=self.config,
                comments=[f"NOTETAKER_MEETING={self.meeting_id}", f"NOTETAKER_USER={user_id}"],
                opener=self._open_file,
            )
        except (OSError, RecordingError) as exc:
            self._ignored.add(user_id)
            self.errors += 1
            self._emit(TimelineEvent("error", user_id, None, 0, f"cannot open track: {exc}"))
            self._failures.append(
                TrackFailure(
                    user_id,
                    self._ms(arrival),
                    cause_of(exc),
                    _os_words(exc),
                    str(self.directory),
                    started=False,
                )
            )
            return None
        self._tracks[user_id] = track
        if self._writer is not None:
            # The speaker row follows with the join event, which knows the offset.
            self._writer.add_track(self.meeting_id, user_id, path)
        return track

    def _fail(self, track: Track, exc: Exception) -> None:
        self.errors += 1
        self._failed.add(track.user_id)
        with contextlib.suppress(OSError):
            track.close()  # the end-of-stream page, if the disk takes it
        # Where the audio on disk ends: the page that failed is not in the file whole.
        at_ms = track.flushed_granule * 1000 // SAMPLE_RATE
        cause = cause_of(exc)
        self._emit(TimelineEvent("stopped", track.user_id, at_ms, 0, cause))
        self._failures.append(
            TrackFailure(track.user_id, at_ms, cause, _os_words(exc), str(self.directory))
        )

    def _take_events(self, track: Track) -> None:
        for event in track.events:
            self._emit(event)
            if event.kind == "join" and self._writer is not None:
                name = (self._display_name(track.user_id) if self._display_name else None) or ""
                self._writer.add_speaker(self.meeting_id, track.user_id, name, event.at_ms)
        track.events.clear()

    def _emit(self, event: TimelineEvent) -> None:
        self.events.append(event)
        if self._writer is not None:
            self._pending.append(event)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self._sweep_every
        for track in self._tracks.values():
            if track.pending_since is not None and not track.closed:
                try:
                    track.flush_due(now, self._interval)
                except OSError as exc:
                    self._fail(track, exc)
        self._write_events()

    def _write_events(self) -> None:
        # Queued, not written: the writer thread bounds what waits (index_writer).
        if self._writer is not None and self._pending:
            self._writer.add_events(self.meeting_id, self._pending)
            self._pending = []


def _os_words(exc: BaseException) -> str:
    """``No space left on device`` rather than ``[Errno 28] No space left on device: '/x'``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
