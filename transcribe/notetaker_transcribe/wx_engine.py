"""The WhisperX engine: batched faster-whisper behind pyannote VAD, for GPUs.

whisperx (and torch) are imported only when a model is loaded. Its pyannote VAD model
ships inside the whisperx wheel, so ``vad_method="pyannote"`` works offline; its
Silero option fetches from the network and is not used. Word alignment (wav2vec2)
is off unless ``align`` is set, because it downloads a model per language. There is
no diarization: every Discord user is recorded as their own track.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from notetaker.errors import ModelResolutionError, TranscriptionError
from notetaker.transcript import Progress, Segment, TrackInput, Transcriber, Word
from notetaker_transcribe.fw_engine import SAMPLE_RATE, decode_track
from notetaker_transcribe.models import resolve_model
from notetaker_transcribe.options import EngineOptions

log = logging.getLogger(__name__)


def _whisperx() -> Any:
    try:
        import whisperx
    except ImportError as exc:
        raise TranscriptionError(
            "the whisperx engine needs whisperx: `pip install notetaker-transcribe[whisperx]` "
            '(or use transcriber = "faster-whisper")'
        ) from exc
    return whisperx


class WhisperXTranscriber(Transcriber):
    """Transcribes one track at a time with WhisperX's batched pipeline."""

    name = "whisperx"

    def __init__(self, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self._pipeline: Any = None
        self._align: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self._device = "cpu"

    def load(self) -> Any:
        """Resolve the model and build the pipeline (once)."""
        with self._lock:
            if self._pipeline is None:
                opts = self.options
                path = resolve_model(opts.model, opts.data_dir, offline=opts.offline)
                wx = _whisperx()
                device, compute = opts.device_and_compute()
                self._device = device
                try:
                    self._pipeline = wx.load_model(
                        str(path),
                        device,
                        compute_type=compute,
                        language=opts.language,
                        vad_method="pyannote",
                        local_files_only=True,
                        threads=opts.threads,
                    )
                except Exception as exc:
                    raise ModelResolutionError(
                        f"whisperx cannot load {path}: {type(exc).__name__}: {exc}"
                    ) from exc
                log.info("whisperx model %s loaded from %s", opts.model, path)
            return self._pipeline

    def _aligner(self, language: str) -> tuple[Any, Any]:
        if language not in self._align:
            self._align[language] = _whisperx().load_align_model(
                language_code=language, device=self._device
            )
        return self._align[language]

    def transcribe(self, track: TrackInput, progress: Progress | None = None) -> list[Segment]:
        pipeline = self.load()
        audio = decode_track(track.path)
        if len(audio) == 0:
            if progress is not None:
                progress(1.0)
            return []
        opts = self.options
        share = 0.5 if opts.align else 1.0

        def asr_progress(percent: float) -> None:
            if progress is not None:
                progress(share * percent / 100.0)

        try:
            result = pipeline.transcribe(
                audio,
                batch_size=opts.batch_size,
                language=opts.language,
                progress_callback=asr_progress,
            )
            raw: list[dict[str, Any]] = list(result["segments"])
            if opts.align and raw:
                model, meta = self._aligner(str(result["language"]))

                def align_progress(percent: float) -> None:
                    if progress is not None:
                        progress(0.5 + percent / 200.0)

                aligned = _whisperx().align(
                    raw,
                    model,
                    meta,
                    audio,
                    self._device,
                    return_char_alignments=False,
                    progress_callback=align_progress,
                )
                raw = list(aligned["segments"])
        except TranscriptionError:
            raise
        except Exception as exc:
            raise TranscriptionError(
                f"whisperx failed on {track.path}: {type(exc).__name__}: {exc}"
            ) from exc
        if progress is not None:
            progress(1.0)
        return [s for s in (_segment(r, track, len(audio) / SAMPLE_RATE) for r in raw) if s]


def _segment(raw: dict[str, Any], track: TrackInput, duration: float) -> Segment | None:
    text = str(raw.get("text", "")).strip()
    if not text:
        return None
    offset = track.offset_s
    words = tuple(
        Word(
            start=offset + float(w["start"]),
            end=offset + float(w["end"]),
            text=str(w["word"]).strip(),
            probability=float(w.get("score", 0.0)),
        )
        # Alignment leaves words it cannot place (numerals, symbols) without times.
        for w in raw.get("words", ())
        if "start" in w and "end" in w and str(w.get("word", "")).strip()
    )
    return Segment(
        user_id=track.user_id,
        start=offset + float(raw["start"]),
        end=offset + min(float(raw["end"]), duration),
        text=text,
        words=words,
    )
