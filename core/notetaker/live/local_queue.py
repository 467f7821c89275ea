"""The in-process :class:`~notetaker.live.queue.TranscriptionQueue`: one worker thread that
holds the model, fair between meetings, bounded in memory.

* **One worker, one model.** Whisper already uses every core it is given; a second
  worker would only double the memory. The model is loaded on the worker thread, on the
  first job or on :meth:`warm_up`.
* **Fair.** Meetings take turns: each turn takes the next utterance of the next meeting
  that has one, so a long backlog of one meeting never holds another's captions back by
  more than one utterance per meeting ahead of it.
* **Bounded.** Up to ``memory_bytes`` of Opus waits in memory; an utterance submitted
  beyond that waits as a range of its speaker's track (the recorder has written the
  packets already) and is read back from disk when its turn comes. Nothing is dropped:
  a backlog only costs disk reads, never RAM that grows with the meeting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from notetaker.errors import TranscriptionError
from notetaker.live.cutter import Utterance
from notetaker.live.decode import decode_utterance
from notetaker.live.queue import Backlog, DrainProgress, MeetingTranscript, TranscriptionQueue
from notetaker.transcript import PCM_RATE, Transcriber, UtteranceAudio

log = logging.getLogger(__name__)

#: About two minutes of speech at Discord's 64 kbit/s.
DEFAULT_MEMORY_BYTES = 1 << 20
#: Silence put before and after each utterance. An utterance starts on its first word
#: (the cut leaves no lead-in); Whisper mishears a first word it hears with no silence
#: before it ("Thanks" -> "Hangs"). Measured on the benchmark's 5-minute meeting with
#: base: 0.25 s lowers the word error rate, a second raises it again.
PAD_S = 0.25
_PAD = bytes(2 * round(PAD_S * PCM_RATE))


@dataclass
class _Meeting:
    transcript: MeetingTranscript
    jobs: deque[Utterance] = field(default_factory=deque)
    in_flight: int = 0
    speech_samples: int = 0  #: of queued and in-flight jobs
    spilled: int = 0  #: queued jobs waiting as track ranges
    wakers: list[Callable[[], None]] = field(default_factory=list)


class LocalTranscriptionQueue(TranscriptionQueue):
    """Transcribes on one daemon thread. ``transcriber`` is an engine or a factory that
    makes one (called on the worker thread, so a slow model load never blocks the bot)."""

    def __init__(
        self,
        transcriber: Transcriber | Callable[[], Transcriber],
        *,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(transcriber, Transcriber):
            self._engine: Transcriber | None = transcriber
            self._factory: Callable[[], Transcriber] | None = None
        else:
            self._engine, self._factory = None, transcriber
        self.memory_bytes = memory_bytes
        self._clock = clock
        self._cond = threading.Condition()
        self._meetings: dict[int, _Meeting] = {}
        self._turns: deque[int] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warm = False
        self.ram_bytes = 0
        self.peak_ram_bytes = 0
        self.spilled_total = 0
        self.done = 0
        self.failed = 0
        self.busy_s = 0.0
        self.speech_done_s = 0.0

    # -- the seam -----------------------------------------------------------------------

    def open_meeting(self, meeting_id: int, transcript: MeetingTranscript) -> None:
        with self._cond:
            if self._closed:
                raise TranscriptionError("the transcription queue is closed")
            if meeting_id not in self._meetings:
                self._meetings[meeting_id] = _Meeting(transcript)
                self._turns.append(meeting_id)
            self._start()

    def submit(self, meeting_id: int, utterance: Utterance) -> None:
        with self._cond:
            meeting = self._meetings.get(meeting_id)
            if meeting is None:
                raise TranscriptionError(f"meeting {meeting_id} is not open in the queue")
            if utterance.spilled or self.ram_bytes + utterance.opus_bytes > self.memory_bytes:
                if not utterance.spilled:
                    utterance = dataclasses.replace(utterance, packets=(), spilled=True)
                meeting.spilled += 1
                self.spilled_total += 1
            else:
                self.ram_bytes += utterance.opus_bytes
                self.peak_ram_bytes = max(self.peak_ram_bytes, self.ram_bytes)
            meeting.jobs.append(utterance)
            meeting.speech_samples += utterance.speech_samples
            self._cond.notify()

    def backlog(self, meeting_id: int) -> Backlog:
        with self._cond:
            meeting = self._meetings.get(meeting_id)
            if meeting is None:
                return Backlog(0, 0.0)
            return Backlog(
                len(meeting.jobs) + meeting.in_flight,
                meeting.speech_samples / 48_000,
                meeting.spilled,
            )

    async def drain(
        self, meeting_id: int, progress: DrainProgress | None = None, every_s: float = 5.0
    ) -> None:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(changed.set)

        with self._cond:
            meeting = self._meetings.get(meeting_id)
            if meeting is None:
                return
            meeting.wakers.append(wake)
        try:
            last = loop.time()
            while True:
                changed.clear()
                backlog = self.backlog(meeting_id)
                if backlog.empty:
                    return
                remaining = max(0.0, last + every_s - loop.time())
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    last = loop.time()
                    if progress is not None:
                        await progress(self.backlog(meeting_id))
        finally:
            with self._cond:
                if wake in meeting.wakers:
                    meeting.wakers.remove(wake)

    def cancel_user(self, meeting_id: int, user_id: int) -> int:
        with self._cond:
            meeting = self._meetings.get(meeting_id)
            if meeting is None:
                return 0
            kept: deque[Utterance] = deque()
            dropped = 0
            for job in meeting.jobs:
                if job.user_id == user_id:
                    dropped += 1
                    meeting.spilled -= job.spilled
                    self._forget(meeting, job)
                else:
                    kept.append(job)
            meeting.jobs = kept
            self._wake(meeting)
            return dropped

    def close_meeting(self, meeting_id: int) -> None:
        with self._cond:
            meeting = self._meetings.pop(meeting_id, None)
            if meeting is None:
                return
            for job in meeting.jobs:
                meeting.spilled -= job.spilled
                self._forget(meeting, job)
            meeting.jobs.clear()
            with contextlib.suppress(ValueError):
                self._turns.remove(meeting_id)
            self._wake(meeting)

    def warm_up(self) -> None:
        with self._cond:
            self._warm = True
            self._start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        if self._engine is not None:
            self._engine.close()

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and ``/notesstatus``."""
        with self._cond:
            return {
                "done": self.done,
                "failed": self.failed,
                "spilled": self.spilled_total,
                "ram_bytes": self.ram_bytes,
                "peak_ram_bytes": self.peak_ram_bytes,
                "busy_s": self.busy_s,
                "speech_done_s": self.speech_done_s,
            }

    # -- the worker ---------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="notetaker-transcription", daemon=True
            )
            self._thread.start()

    def _next(self) -> list[tuple[_Meeting, Utterance]] | None:
        """Wait for work; up to the engine's batch size of jobs, meetings taking turns."""
        with self._cond:
            while not self._closed and not any(m.jobs for m in self._meetings.values()):
                if self._warm and self._engine is None:
                    return []
                self._cond.wait()
            if self._closed:
                return None
            size = max(1, self._engine.batch_size if self._engine is not None else 1)
            batch: list[tuple[_Meeting, Utterance]] = []
            idle_turns = 0
            while len(batch) < size and idle_turns < len(self._turns):
                meeting = self._meetings[self._turns[0]]
                self._turns.rotate(-1)
                if meeting.jobs:
                    job = meeting.jobs.popleft()
                    meeting.in_flight += 1
                    if job.spilled:
                        meeting.spilled -= 1
                    batch.append((meeting, job))
                    idle_turns = 0
                else:
                    idle_turns += 1
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            try:
                engine = self._load()
            except Exception as exc:
                self._warm = False
                if not batch:
                    log.warning("the transcription model did not load: %s", exc)
                self._finish(batch, exc)
                continue
            if not batch:
                self._warm = False
                continue
            started = self._clock()
            outcome: Exception | None = None
            try:
                self._transcribe(engine, batch)
            except Exception as exc:
                outcome = exc
            with self._cond:
                self.busy_s += self._clock() - started
            self._finish(batch, outcome)

    def _load(self) -> Transcriber:
        if self._engine is None:
            assert self._factory is not None
            engine = self._factory()
            engine.load()
            self._engine = engine
        return self._engine

    def _transcribe(self, engine: Transcriber, batch: list[tuple[_Meeting, Utterance]]) -> None:
        audio: list[UtteranceAudio] = []
        for meeting, job in batch:
            packets = meeting.transcript.packets(job) if job.spilled else job.packets
            pcm, _bad = decode_utterance(packets, job.start)
            language = meeting.transcript.language_for(job.user_id)
            audio.append(
                UtteranceAudio(job.user_id, job.start_s - PAD_S, _PAD + pcm + _PAD, language)
            )
        results = engine.transcribe_utterances(audio)
        if len(results) != len(batch):
            raise TranscriptionError(
                f"{engine.name} returned {len(results)} results for {len(batch)} utterances"
            )
        for (meeting, job), result in zip(batch, results, strict=True):
            try:
                meeting.transcript.on_result(job, result)
            except Exception:
                log.exception("storing the transcript of an utterance failed")
        with self._cond:
            self.done += len(batch)
            self.speech_done_s += sum(job.speech_s for _, job in batch)

    def _finish(self, batch: list[tuple[_Meeting, Utterance]], error: Exception | None) -> None:
        if error is not None:
            for meeting, job in batch:
                try:
                    meeting.transcript.on_failure(job, error)
                except Exception:
                    log.exception("reporting a failed utterance failed")
            with self._cond:
                self.failed += len(batch)
        with self._cond:
            for meeting, job in batch:
                meeting.in_flight -= 1
                self._forget(meeting, job)
                self._wake(meeting)

    def _forget(self, meeting: _Meeting, job: Utterance) -> None:
        """Release what a job held (call with the lock held)."""
        meeting.speech_samples -= job.speech_samples
        if job.spilled:
            return
        self.ram_bytes -= job.opus_bytes

    @staticmethod
    def _wake(meeting: _Meeting) -> None:
        for wake in list(meeting.wakers):
            wake()
