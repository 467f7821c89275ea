"""The recorder's rows in the session index, written by a thread of their own.

The receive loop must never wait on SQLite: another process holding the database (a
backup, ``sqlite3`` in a shell, a second notetaker on the same data directory) makes a
write wait for its lock, and a receive loop that waits misses voice heartbeats. So the
recorder only *queues* its rows here (a lock held for a list append, never across I/O)
and one thread, with its own connection, applies them in the order they came, each in a
short transaction of its own.

A locked database (or a full disk under it) makes that thread wait and retry: it logs
once when the wait starts and once when it ends, never per attempt. :meth:`flush` waits
for what was queued so far (readers of the index call it first); :meth:`close` writes
everything left and stops, and if the database stays locked past its deadline it says at
WARNING what was not written, instead of hanging the meeting's end.

Memory: tracks, speakers and track ends are a handful of rows per speaker and always
queue. Timeline events are the only rows that can pile up (a gap per loss burst): at most
:data:`MAX_QUEUED_EVENTS` wait at once, about 15 MB, which at an unusually lossy 50
events a second covers half an hour of a locked database. Past that, new events are
dropped, counted in :attr:`WriterReport.dropped_events` and logged once: the receive
loop is never made to wait for room. Heartbeats (:meth:`IndexWriter.set_alive`) never
pile up either: only the latest matters, so a new one replaces one still waiting.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from notetaker.errors import RecordingError
from notetaker.recorder.index import MeetingIndex
from notetaker.recorder.timeline import TimelineEvent

log = logging.getLogger(__name__)

#: Timeline events waiting at most; see the module docstring.
MAX_QUEUED_EVENTS: Final = 100_000
#: How long one attempt waits inside SQLite for a lock before the thread looks at its
#: deadline again (and retries).
ATTEMPT_WAIT_S: Final = 0.25
#: Pause between attempts that fail at once (a full disk answers without waiting).
RETRY_PAUSE_S: Final = 0.1
#: How long :meth:`IndexWriter.close` keeps trying to write what is left.
CLOSE_TIMEOUT_S: Final = 10.0

#: SQLite primary result codes worth waiting out; anything else rejects the row.
_TRANSIENT: Final = {
    sqlite3.SQLITE_BUSY: "locked by another connection",
    sqlite3.SQLITE_LOCKED: "locked by another connection",
    sqlite3.SQLITE_FULL: "on a full disk",
}
#: What each kind of operation writes, for the report of what was not written.
_ROWS: Final = {
    "add_track": "track rows",
    "add_speaker": "speaker rows",
    "end_track": "track ends",
    "remove_track": "track removals",
    "add_events": "timeline events",
    "set_alive": "heartbeats",
}


def transient_cause(exc: BaseException) -> str | None:
    """Why a failed index call may succeed later (locked, disk full), or None."""
    cause = exc.__cause__ if isinstance(exc, RecordingError) else exc
    code = getattr(cause, "sqlite_errorcode", None)
    if not isinstance(cause, sqlite3.Error) or code is None:
        return None
    return _TRANSIENT.get(code & 0xFF)  # extended codes (SQLITE_BUSY_SNAPSHOT...) too


@dataclass(slots=True)
class _Op:
    kind: str
    meeting_id: int
    args: tuple[object, ...]
    events: list[TimelineEvent] = field(default_factory=list)
    seq: int = 0  #: the last submission this operation carries

    @property
    def rows(self) -> int:
        return len(self.events) if self.kind == "add_events" else 1


@dataclass(frozen=True, slots=True)
class WriterReport:
    """What an :class:`IndexWriter` did.

    ``written``: operations applied; ``rejected``: operations the index refused (bad
    data: logged, never retried); ``dropped_events``: events not queued because the queue
    was full; ``unwritten``: rows still queued when :meth:`IndexWriter.close` gave up, by
    kind (``"timeline events": 12``); ``retries``: attempts that found the index locked
    (or its disk full) and were made again.
    """

    written: int = 0
    rejected: int = 0
    dropped_events: int = 0
    unwritten: dict[str, int] = field(default_factory=dict)
    retries: int = 0

    @property
    def complete(self) -> bool:
        """Everything queued reached the index."""
        return not (self.rejected or self.dropped_events or self.unwritten)

    @property
    def lost(self) -> int:
        """Rows (or operations) that never reached the index."""
        return self.rejected + self.dropped_events + sum(self.unwritten.values())

    def describe(self) -> str:
        """``"3 track rows, 40 timeline events"``: what did not reach the index."""
        parts = [f"{n} {what}" for what, n in self.unwritten.items() if n]
        if self.dropped_events:
            parts.append(f"{self.dropped_events} timeline events dropped (queue full)")
        if self.rejected:
            parts.append(f"{self.rejected} writes refused")
        return ", ".join(parts) or "nothing"


class IndexWriter:
    """Applies the recorder's index writes on a thread with its own connection to the
    index at ``path`` (files under ``data_dir``). Every method but :meth:`flush` and
    :meth:`close` only queues and returns at once: they are safe on the receive loop.
    """

    def __init__(
        self,
        path: Path | str,
        data_dir: Path | str | None = None,
        *,
        name: str = "notetaker-index-writer",
        max_events: int = MAX_QUEUED_EVENTS,
        attempt_wait_s: float = ATTEMPT_WAIT_S,
    ) -> None:
        self.path = Path(path)
        self._data_dir = data_dir
        self._max_events = max_events
        self._attempt_wait_s = attempt_wait_s
        self._cond = threading.Condition()
        self._queue: deque[_Op] = deque()
        self._queued_events = 0
        self._submitted = 0
        self._done = 0
        self._closing = False
        self._deadline: float | None = None
        self._stopped = False
        self._written = 0
        self._retries = 0
        self._rejected = 0
        self._dropped = 0
        self._drop_logged = 0
        self._unwritten: dict[str, int] = {}
        # The heartbeat still waiting in the queue, per meeting: a newer one updates it.
        self._alive: dict[int, _Op] = {}
        self._waiting_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @classmethod
    def for_index(cls, index: MeetingIndex, *, name: str = "notetaker-index-writer") -> IndexWriter:
        """A writer to the same file as ``index`` (through a connection of its own)."""
        return cls(index.path, index.layout.root, name=name)

    @property
    def thread(self) -> threading.Thread:
        """The thread that runs every SQLite statement of this writer."""
        return self._thread

    # -- queueing (the receive loop's side) ---------------------------------------------

    def add_track(self, meeting_id: int, user_id: int, path: Path, started_ms: int = 0) -> None:
        """Queue :meth:`MeetingIndex.add_track`."""
        self._submit(_Op("add_track", meeting_id, (user_id, path, started_ms)))

    def add_speaker(
        self, meeting_id: int, user_id: int, display_name: str, joined_ms: int | None
    ) -> None:
        """Queue :meth:`MeetingIndex.add_speaker`."""
        self._submit(_Op("add_speaker", meeting_id, (user_id, display_name, joined_ms)))

    def end_track(self, meeting_id: int, user_id: int, ended_ms: int) -> None:
        """Queue :meth:`MeetingIndex.end_track`."""
        self._submit(_Op("end_track", meeting_id, (user_id, ended_ms)))

    def remove_track(self, meeting_id: int, user_id: int) -> None:
        """Queue :meth:`MeetingIndex.remove_track`."""
        self._submit(_Op("remove_track", meeting_id, (user_id,)))

    def set_alive(self, meeting_id: int, at: float) -> None:
        """Queue :meth:`MeetingIndex.set_alive`. Coalesced: while one heartbeat of the
        meeting waits, a newer one only moves its time, so heartbeats never grow the
        queue however long the index stays locked."""
        at = float(at)
        with self._cond:  # reentrant: _submit takes it again
            waiting = self._alive.get(meeting_id)
            if waiting is None or self._closing or self._stopped:
                self._submit(_Op("set_alive", meeting_id, (at,)))
                return
            # Its place in the queue (and seq) stays: a flush that waits for it still
            # finds it done before anything queued after it.
            (previous,) = waiting.args
            assert isinstance(previous, float)
            waiting.args = (max(previous, at),)

    def queued(self, kind: str | None = None) -> int:
        """Operations waiting (of ``kind``, e.g. ``"set_alive"``; not counting the one
        being written now)."""
        with self._cond:
            return sum(1 for op in self._queue if kind is None or op.kind == kind)

    def add_events(self, meeting_id: int, events: list[TimelineEvent]) -> None:
        """Queue events; they join the events queued just before them (one transaction)."""
        if events:
            self._submit(_Op("add_events", meeting_id, (), list(events)))

    def _submit(self, op: _Op) -> None:
        with self._cond:
            if self._closing or self._stopped:
                self._unwritten_add(op)  # reported, never written
                return
            if op.kind == "add_events":
                room = self._max_events - self._queued_events
                if room < len(op.events):
                    self._dropped += len(op.events) - max(room, 0)
                    del op.events[max(room, 0) :]
                    self._cond.notify_all()  # the thread logs it: never the receive loop
                    if not op.events:
                        return
                self._queued_events += len(op.events)
            self._submitted += 1
            op.seq = self._submitted
            last = self._queue[-1] if self._queue else None
            if (
                op.kind == "add_events"
                and last is not None
                and last.kind == "add_events"
                and last.meeting_id == op.meeting_id
            ):
                last.events.extend(op.events)
                last.seq = op.seq
            else:
                self._queue.append(op)
                if op.kind == "set_alive":
                    self._alive[op.meeting_id] = op
            self._cond.notify_all()

    # -- waiting (never on the receive loop) ----------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is written (or refused). False
        if ``timeout`` passed first, or the writer stopped with rows left unwritten."""
        with self._cond:
            target = self._submitted
            self._cond.wait_for(lambda: self._done >= target or self._stopped, timeout)
            return self._done >= target

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> WriterReport:
        """Write what is queued, then stop. If the index cannot be written for
        ``timeout`` seconds, give up: what is left is logged at WARNING and reported.
        Idempotent."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout
                self._cond.notify_all()
        # The thread looks at the deadline between attempts, each at most
        # attempt_wait_s long; the margin only covers a thread that is not scheduled.
        self._thread.join(timeout + self._attempt_wait_s + 5.0)
        if self._thread.is_alive():
            log.error("the index writer of %s did not stop", self.path)
        return self.report()

    def report(self) -> WriterReport:
        """Counters so far."""
        with self._cond:
            return WriterReport(
                self._written, self._rejected, self._dropped, dict(self._unwritten), self._retries
            )

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        index: MeetingIndex | None = None
        try:
            index = self._open()
            while index is not None:
                with self._cond:
                    while not (self._queue or self._closing or self._dropped > self._drop_logged):
                        self._cond.wait()
                    op = self._queue.popleft() if self._queue else None
                    if op is not None and op.kind == "set_alive":
                        # Being written now: a newer heartbeat must queue anew.
                        self._alive.pop(op.meeting_id, None)
                    closing = self._closing
                self._report_drops()
                if op is None:
                    if closing:
                        return
                    continue
                if not self._apply(index, op):
                    with self._cond:
                        self._queue.appendleft(op)
                    return
                with self._cond:
                    self._finished(op)
        except Exception:  # a bug here must not take the meeting's rows silently
            log.exception("the index writer of %s failed", self.path)
        finally:
            if index is not None:
                index.close()
            self._stop()

    def _open(self) -> MeetingIndex | None:
        """The thread's own connection; waits out a locked file like a write does."""
        while True:
            try:
                return MeetingIndex(self.path, self._data_dir, busy_timeout_s=self._attempt_wait_s)
            except RecordingError as exc:
                if not self._wait_out(exc, "open"):
                    return None

    def _apply(self, index: MeetingIndex, op: _Op) -> bool:
        """Write one operation, retrying while the index is locked. False: gave up."""
        while True:
            try:
                if op.kind == "add_events":
                    index.add_events(op.meeting_id, op.events)
                else:
                    getattr(index, op.kind)(op.meeting_id, *op.args)
            except RecordingError as exc:
                if transient_cause(exc) is None:
                    log.error(
                        "session index %s refused %s of meeting %s: %s",
                        self.path,
                        _ROWS[op.kind],
                        op.meeting_id,
                        exc,
                    )
                    with self._cond:
                        self._rejected += 1
                    return True
                if not self._wait_out(exc, _ROWS[op.kind]):
                    return False
                continue
            if self._waiting_since is not None:
                log.info(
                    "session index %s is writable again after %.1f s; queued rows follow",
                    self.path,
                    time.monotonic() - self._waiting_since,
                )
                self._waiting_since = None
            with self._cond:
                self._written += 1
            return True

    def _wait_out(self, exc: RecordingError, what: str) -> bool:
        """After a failed attempt: True to try again, False once closing and past the
        deadline, or for an error that is not transient (only :meth:`_open` passes one:
        a writer without a connection stops)."""
        self._report_drops()
        cause = transient_cause(exc)
        if cause is None:
            log.error("the index writer cannot open %s: %s; rows are not written", self.path, exc)
            return False
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
            log.warning(
                "session index %s is %s; its writes (%s) wait, the recording goes on",
                self.path,
                cause,
                what,
            )
        with self._cond:
            if self._past_deadline():
                return False
            self._retries += 1
            # A lock makes SQLite wait inside the attempt; a full disk fails at once.
            self._cond.wait(RETRY_PAUSE_S)
            return not self._past_deadline()

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _finished(self, op: _Op) -> None:
        if op.kind == "add_events":
            self._queued_events -= len(op.events)
        self._done = op.seq
        self._cond.notify_all()

    def _report_drops(self) -> None:
        # Logged here, outside the lock: the receive loop never waits on a log handler.
        with self._cond:
            new, queued = self._dropped - self._drop_logged, self._queued_events
            self._drop_logged = self._dropped
        if new:
            log.warning(
                "the index writer of %s has %d timeline events queued; %d newer ones were "
                "dropped (the index has not been writable for long)",
                self.path,
                queued,
                new,
            )

    def _unwritten_add(self, op: _Op) -> None:
        what = _ROWS[op.kind]
        self._unwritten[what] = self._unwritten.get(what, 0) + op.rows

    def _stop(self) -> None:
        with self._cond:
            for op in self._queue:
                self._unwritten_add(op)
            self._queue.clear()
            self._alive.clear()
            self._queued_events = 0
            self._stopped = True
            self._cond.notify_all()
            left = dict(self._unwritten)
        if left:
            since = self._waiting_since
            waited = f" after {time.monotonic() - since:.0f} s of waiting" if since else ""
            log.warning(
                "session index %s: not written%s: %s. The track files are not affected; "
                "the index lacks these rows of their meeting",
                self.path,
                waited,
                ", ".join(f"{n} {what}" for what, n in left.items()),
            )
