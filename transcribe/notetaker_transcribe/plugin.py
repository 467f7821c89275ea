"""The ``transcribe`` entry point: registers both engines without importing them."""

from __future__ import annotations

from typing import Any

from notetaker.hookspecs import hookimpl
from notetaker.registry import Registry, TranscriberSpec
from notetaker.transcript import Transcriber


def make_faster_whisper(settings: Any = None, **overrides: Any) -> Transcriber:
    """A faster-whisper transcriber configured from notetaker's settings."""
    from notetaker_transcribe.fw_engine import FasterWhisperTranscriber
    from notetaker_transcribe.options import EngineOptions

    return FasterWhisperTranscriber(EngineOptions.from_settings(settings, **overrides))


def make_whisperx(settings: Any = None, **overrides: Any) -> Transcriber:
    """A WhisperX transcriber configured from notetaker's settings (needs whisperx)."""
    from notetaker_transcribe.options import EngineOptions
    from notetaker_transcribe.wx_engine import WhisperXTranscriber

    return WhisperXTranscriber(EngineOptions.from_settings(settings, **overrides))


@hookimpl
def notetaker_register_transcribers(register: Registry[TranscriberSpec]) -> None:
    register.add(
        TranscriberSpec(
            "faster-whisper",
            make_faster_whisper,
            description="CTranslate2 Whisper with Silero VAD; int8 on CPU, no torch",
            libraries=("faster-whisper", "ctranslate2"),
        )
    )
    register.add(
        TranscriberSpec(
            "whisperx",
            make_whisperx,
            description="WhisperX batched pipeline with pyannote VAD; for GPUs",
            libraries=("whisperx", "torch"),
        )
    )
