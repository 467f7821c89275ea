"""The transcription queue: the seam between the receive side and speech-to-text.

Every utterance the cutter ends is :meth:`~TranscriptionQueue.submit`-ted as a job of its
meeting; whatever runs the model hands each result to the meeting's
:class:`MeetingTranscript`. The default implementation
(:class:`~notetaker.live.local_queue.LocalTranscriptionQueue`) is one worker thread in
the bot's process. The seam is shaped so that a distributed one fits behind it: a job is
plain data (meeting and user ids, meeting-clock range, Opus packets or a track range),
results come back asynchronously, and nothing but :meth:`MeetingTranscript.on_result`
needs to run where the bot runs. Such an implementation would put jobs on an existing job
engine's queue and let GPU workers pull them; the architecture page says where it goes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from notetaker.live.cutter import Packet, Utterance
from notetaker.transcript import UtteranceResult


@dataclass(frozen=True, slots=True)
class Backlog:
    """What a meeting still waits for: utterances queued or being transcribed."""

    utterances: int
    speech_s: float
    spilled: int = 0  #: of them, waiting as track ranges rather than in memory

    @property
    def empty(self) -> bool:
        return self.utterances == 0


class MeetingTranscript(ABC):
    """What the queue needs of a meeting: the language to use, its tracks for utterances
    that waited on disk, and where results go. Called from the queue's worker."""

    @abstractmethod
    def language_for(self, user_id: int) -> str | None:
        """The language to transcribe ``user_id`` in (None: detect)."""

    @abstractmethod
    def packets(self, utterance: Utterance) -> Sequence[Packet]:
        """The packets of an utterance that waited as a range of its speaker's track."""

    @abstractmethod
    def on_result(self, utterance: Utterance, result: UtteranceResult) -> None:
        """What was heard in ``utterance`` (called once per utterance, per speaker in order)."""

    @abstractmethod
    def on_failure(self, utterance: Utterance, error: Exception) -> None:
        """``utterance`` could not be transcribed (its audio stays in the track)."""


#: Called while a drain waits, with what is left.
DrainProgress = Callable[[Backlog], Awaitable[None]]


class TranscriptionQueue(ABC):
    """Utterance jobs of every running meeting, through one interface.

    :meth:`submit` is called from the receive path: it must never block and never drop
    a job. Jobs of one speaker are transcribed in the order submitted.
    """

    @abstractmethod
    def open_meeting(self, meeting_id: int, transcript: MeetingTranscript) -> None:
        """Start taking jobs for ``meeting_id``; results go to ``transcript``."""

    @abstractmethod
    def submit(self, meeting_id: int, utterance: Utterance) -> None:
        """Queue one utterance. Non-blocking; never drops."""

    @abstractmethod
    def backlog(self, meeting_id: int) -> Backlog:
        """What ``meeting_id`` still waits for."""

    @abstractmethod
    async def drain(
        self, meeting_id: int, progress: DrainProgress | None = None, every_s: float = 5.0
    ) -> None:
        """Wait until every job of ``meeting_id`` submitted so far is done; ``progress``
        hears the backlog about every ``every_s`` seconds while it is not empty."""

    @abstractmethod
    def cancel_user(self, meeting_id: int, user_id: int) -> int:
        """Forget the queued jobs of ``user_id`` (an opt-out); how many were dropped.
        A job already being transcribed finishes, and its result still arrives."""

    @abstractmethod
    def close_meeting(self, meeting_id: int) -> None:
        """Forget ``meeting_id``; its queued jobs are dropped (call :meth:`drain` first)."""

    def warm_up(self) -> None:  # noqa: B027 - optional: implementations that load lazily
        """Load the model now, in the background, so the first utterance does not wait."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop the workers and release the model."""
