"""The faster-whisper engine: CTranslate2 Whisper on CPU (int8), Silero VAD, no torch.

One utterance at a time (``batch_size`` 1): on a CPU, batching buys nothing, and a
short utterance is transcribed in well under its own length.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from notetaker.errors import ModelResolutionError, TranscriptionError
from notetaker.transcript import (
    PCM_RATE,
    Segment,
    Transcriber,
    UtteranceAudio,
    UtteranceResult,
    Word,
)
from notetaker_transcribe.guard import Candidate, Rejections
from notetaker_transcribe.models import resolve_model
from notetaker_transcribe.options import EngineOptions, is_english_only, language_for

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

log = logging.getLogger(__name__)
SAMPLE_RATE = PCM_RATE


def pcm_to_float(pcm: bytes) -> NDArray[np.float32]:
    """float32 samples in [-1, 1) from 16-bit little-endian PCM."""
    import numpy as np

    if len(pcm) % 2:
        raise TranscriptionError(f"utterance PCM must be s16le: {len(pcm)} bytes is odd")
    samples: NDArray[np.float32] = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return samples


#: Whisper's decoder budget: 448 tokens for a 30 s window, about 15 a second at most.
TOKENS_PER_S = 15
#: Room for the timestamps and punctuation of a very short utterance.
TOKENS_SLACK = 32
#: The decoder's 448 positions less the prompt (start, language, task tokens).
MAX_NEW_TOKENS = 440


def speech_seconds(audio: NDArray[np.float32]) -> float:
    """How much of ``audio`` Silero VAD (the model inside the faster-whisper wheel) hears
    as speech, with its padding; 0.0 for none.

    Asked before Whisper runs: on an utterance of noise, music or breathing this is the
    whole cost (about 15 ms for 10 s of audio), where Whisper's encoder and language
    detection would take half a second or more and could only invent text.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    chunks = get_speech_timestamps(audio, VadOptions(), sampling_rate=SAMPLE_RATE)
    return sum(c["end"] - c["start"] for c in chunks) / SAMPLE_RATE


def has_speech(audio: NDArray[np.float32]) -> bool:
    """Whether Silero VAD hears any speech in ``audio``."""
    return speech_seconds(audio) > 0


def token_budget(speech_s: float) -> int:
    """New tokens to allow for ``speech_s`` seconds of speech.

    Whisper stuck in a loop writes until its 448-token limit: on the 0.4 s of music VAD
    let through, base spent 7 s of CPU writing one phrase over and over before its
    retries gave up. No speech needs more than Whisper's own budget of about 15 tokens
    a second, so the loop is cut where speech would have ended.
    """
    return min(MAX_NEW_TOKENS, TOKENS_SLACK + math.ceil(TOKENS_PER_S * speech_s))


def to_segments(
    raw: Iterable[Any], utterance: UtteranceAudio, rejections: Rejections
) -> list[Segment]:
    """Meeting-clock segments from faster-whisper's (times relative to the utterance),
    without those the guard rejects.

    Iterating ``raw`` is where faster-whisper decodes, so this is the slow part.
    """
    offset = utterance.start_s
    duration = utterance.duration_s
    out: list[Segment] = []
    for seg in raw:
        text = str(seg.text).strip()
        if not text:
            continue
        candidate = Candidate(
            text=text,
            no_speech_prob=float(seg.no_speech_prob),
            avg_logprob=float(seg.avg_logprob),
            compression_ratio=float(seg.compression_ratio),
        )
        if not rejections.keep(candidate):
            log.debug("guard rejected %r (%s)", text, candidate)
            continue
        words = tuple(
            Word(
                start=offset + min(float(w.start), duration),
                end=offset + min(float(w.end), duration),
                text=str(w.word).strip(),
                probability=float(w.probability),
            )
            for w in (seg.words or ())
            if str(w.word).strip()
        )
        out.append(
            Segment(
                user_id=utterance.user_id,
                start=offset + min(float(seg.start), duration),
                end=offset + min(float(seg.end), duration),
                text=text,
                words=words,
            )
        )
    return out


class FasterWhisperTranscriber(Transcriber):
    """Transcribes utterances one by one with faster-whisper.

    The model is resolved and loaded on first use, so constructing one is cheap.
    """

    name = "faster-whisper"
    batch_size = 1

    def __init__(self, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self._model: Any = None
        self._model_path: Path | None = None
        self._english_only = is_english_only(self.options.model)
        self._lock = threading.Lock()

    @property
    def model_path(self) -> Path | None:
        """The local model folder, once loaded."""
        return self._model_path

    def load(self) -> Any:
        """Resolve and load the model (once); returns the ``WhisperModel``."""
        with self._lock:
            if self._model is None:
                opts = self.options
                path = resolve_model(opts.model, opts.data_dir, offline=opts.offline)
                from faster_whisper import WhisperModel

                device, compute = opts.device_and_compute()
                try:
                    model = WhisperModel(
                        str(path),
                        device=device,
                        compute_type=compute,
                        cpu_threads=opts.threads,
                        local_files_only=True,
                    )
                except Exception as exc:
                    raise ModelResolutionError(
                        f"cannot load Whisper model from {path}: {type(exc).__name__}: {exc}"
                    ) from exc
                # A folder's name need not say ".en"; the model itself knows.
                self._english_only = self._english_only or not model.model.is_multilingual
                self._model, self._model_path = model, path
                log.info("faster-whisper model %s loaded from %s", opts.model, path)
            return self._model

    def language_for(self, utterance: UtteranceAudio) -> str | None:
        """The language ``utterance`` is decoded in; None: detect it."""
        return language_for(
            utterance.language, self.options.language, english_only=self._english_only
        )

    def transcribe_utterances(self, batch: Sequence[UtteranceAudio]) -> list[UtteranceResult]:
        model = self.load()
        return [self._one(model, utterance) for utterance in batch]

    def _one(self, model: Any, utterance: UtteranceAudio) -> UtteranceResult:
        language = self.language_for(utterance)
        # What a result says when nothing was decoded: the language asked for, if any.
        silent = UtteranceResult((), language, 1.0 if language else 0.0)
        audio = pcm_to_float(utterance.pcm)
        if len(audio) == 0:
            return silent
        where = f"the utterance of user {utterance.user_id} at {utterance.start_s:.2f} s"
        try:
            speech_s = speech_seconds(audio)
            if speech_s == 0:
                return silent
            raw, info = model.transcribe(
                audio,
                language=language,
                beam_size=self.options.beam_size,
                vad_filter=True,
                word_timestamps=True,
                # Utterances are independent: conditioning on text the model may have
                # invented would carry an invention into the next window.
                condition_on_previous_text=False,
                max_new_tokens=token_budget(speech_s),
            )
            rejections = Rejections()
            # transcribe() returns a lazy generator: the decoding happens here.
            segments = to_segments(raw, utterance, rejections)
        except TranscriptionError:
            raise
        except Exception as exc:
            raise TranscriptionError(
                f"faster-whisper failed on {where}: {type(exc).__name__}: {exc}"
            ) from exc
        return UtteranceResult(
            segments=tuple(segments),
            language=str(info.language),
            language_probability=float(info.language_probability),
            rejected=rejections.as_tuple(),
        )

    def close(self) -> None:
        with self._lock:
            self._model = None
