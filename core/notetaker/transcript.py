"""The speech-to-text seam: what a transcriber is given and what it returns.

Each Discord user is recorded as their own track, so a transcriber never has to tell
speakers apart. The receive side cuts every speaker's stream into *utterances* at the
pauses the speaker's client leaves (see :mod:`notetaker.live.cutter`); a transcriber is
given a batch of utterances, each already decoded to 16 kHz mono PCM, and returns the
segments heard in each. Times in the result are on the *meeting* clock (seconds since the
meeting started), so segments of different speakers merge by sorting.

Engines live in plugins (``notetaker-transcribe``); this module imports nothing heavy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

#: Sample rate of :attr:`UtteranceAudio.pcm`: what Whisper models take.
PCM_RATE = 16_000


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
class UtteranceAudio:
    """One speaker's utterance, decoded: ``pcm`` is 16 kHz mono s16le.

    ``start_s``: where the first sample lies on the meeting clock. ``language``: an
    ISO 639-1 code to transcribe in, or None to detect it (an English-only model always
    uses ``en``).
    """

    user_id: int
    start_s: float
    pcm: bytes
    language: str | None = None

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / PCM_RATE


@dataclass(frozen=True, slots=True)
class UtteranceResult:
    """What was heard in one utterance.

    ``segments`` carry meeting-clock times and the utterance's user id; an utterance with
    no speech (noise, music, breathing) has none. ``language`` is the language used, or
    detected (with ``language_probability``) when none was given. ``rejected`` counts the
    segments the hallucination guard threw away, by reason (``no_speech``, ``low_logprob``,
    ``repetitive``, ``non_speech``).
    """

    segments: tuple[Segment, ...]
    language: str | None = None
    language_probability: float = 0.0
    rejected: tuple[tuple[str, int], ...] = ()


class Transcriber(ABC):
    """A speech-to-text engine.

    :meth:`transcribe_utterances` is blocking and CPU/GPU bound: it runs on the
    transcription queue's worker, never on the event loop. ``batch_size`` is how many
    utterances the engine wants per call (1 for CPU engines; a GPU engine batches).
    """

    name: str = "?"
    batch_size: int = 1

    def load(self) -> None:  # noqa: B027 - optional hook: engines that load lazily
        """Load the model now rather than on the first utterance."""

    @abstractmethod
    def transcribe_utterances(self, batch: Sequence[UtteranceAudio]) -> list[UtteranceResult]:
        """One result per utterance, in the order given.

        Raises :class:`~notetaker.errors.TranscriptionError` if the engine fails; the
        queue then reports the failure for the whole batch.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing
        """Release the model. The default holds nothing to release."""
