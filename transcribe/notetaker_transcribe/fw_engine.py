"""The faster-whisper engine: CTranslate2 Whisper on CPU (int8), Silero VAD, no torch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from notetaker.errors import ModelResolutionError, TranscriptionError
from notetaker.transcript import Progress, Segment, TrackInput, Transcriber, Word
from notetaker_transcribe.models import resolve_model
from notetaker_transcribe.options import EngineOptions

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

log = logging.getLogger(__name__)
SAMPLE_RATE = 16_000


def decode_track(path: Path) -> NDArray[np.float32]:
    """Mono float32 samples at 16 kHz from any file PyAV can read (Ogg Opus included)."""
    from faster_whisper import decode_audio

    if not path.is_file():
        raise TranscriptionError(f"track {path} does not exist")
    try:
        audio: NDArray[np.float32] = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    except Exception as exc:  # PyAV raises its own error types per codec and container
        raise TranscriptionError(f"cannot decode {path}: {type(exc).__name__}: {exc}") from exc
    return audio


def to_segments(
    raw: Iterable[Any],
    track: TrackInput,
    duration: float,
    progress: Progress | None = None,
) -> list[Segment]:
    """Meeting-clock segments from faster-whisper's segments (times relative to the track).

    Iterating ``raw`` is where faster-whisper does its decoding, so this is the slow
    part and reports progress as it goes.
    """
    offset = track.offset_s
    out: list[Segment] = []
    for seg in raw:
        text = str(seg.text).strip()
        if progress is not None and duration > 0:
            progress(min(float(seg.end) / duration, 1.0))
        if not text:
            continue
        words = tuple(
            Word(
                start=offset + float(w.start),
                end=offset + float(w.end),
                text=str(w.word).strip(),
                probability=float(w.probability),
            )
            for w in (seg.words or ())
            if str(w.word).strip()
        )
        out.append(
            Segment(
                user_id=track.user_id,
                start=offset + float(seg.start),
                end=offset + float(seg.end),
                text=text,
                words=words,
            )
        )
    return out


class FasterWhisperTranscriber(Transcriber):
    """Transcribes one track at a time with faster-whisper.

    The model is resolved and loaded on first use, so constructing one is cheap.
    """

    name = "faster-whisper"

    def __init__(self, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self._model: Any = None
        self._model_path: Path | None = None
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
                    self._model = WhisperModel(
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
                self._model_path = path
                log.info("faster-whisper model %s loaded from %s", opts.model, path)
            return self._model

    def transcribe(self, track: TrackInput, progress: Progress | None = None) -> list[Segment]:
        model = self.load()
        audio = decode_track(track.path)
        duration = len(audio) / SAMPLE_RATE
        if duration == 0:
            if progress is not None:
                progress(1.0)
            return []
        opts = self.options
        try:
            raw, _info = model.transcribe(
                audio,
                language=opts.language,
                beam_size=opts.beam_size,
                vad_filter=True,
                word_timestamps=True,
            )
            # transcribe() returns a lazy generator: the decoding happens here.
            segments = to_segments(raw, track, duration, progress)
        except TranscriptionError:
            raise
        except Exception as exc:
            raise TranscriptionError(
                f"faster-whisper failed on {track.path}: {type(exc).__name__}: {exc}"
            ) from exc
        if progress is not None:
            progress(1.0)
        return segments

    def close(self) -> None:
        with self._lock:
            self._model = None
