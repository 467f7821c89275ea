"""The WhisperX engine, where whisperx is installed (its own environment: see README)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from notetaker.transcript import TrackInput
from notetaker_transcribe.models import SHIPPED, shipped_installed
from notetaker_transcribe.options import EngineOptions
from notetaker_transcribe.speech import Utterance, make_track, tools_available, wer

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("whisperx") is None, reason="needs whisperx"),
    pytest.mark.skipif(not tools_available(), reason="needs espeak-ng and ffmpeg"),
    pytest.mark.skipif(not shipped_installed(SHIPPED["base"]), reason="needs the models extra"),
    pytest.mark.slow,
]

SAID = (
    "Good morning everyone. Let us start with the project update. "
    "The new release is ready for testing this week."
)


def test_whisperx_offline_with_pyannote_vad(tmp_path: Path, shared_data_dir: Path) -> None:
    from notetaker_transcribe.wx_engine import WhisperXTranscriber

    spoken = make_track(tmp_path / "alice.ogg", [Utterance(2.0, SAID)])
    engine = WhisperXTranscriber(
        EngineOptions(model="base", data_dir=shared_data_dir, language="en", device="cpu")
    )
    seen: list[float] = []
    segments = engine.transcribe(TrackInput(5, "Alice", spoken.path, offset_s=30.0), seen.append)

    assert segments and all(s.user_id == 5 for s in segments)
    assert wer(SAID, " ".join(s.text for s in segments)) < 0.15
    start, end, _ = spoken.spans[0]
    assert 30.0 + start - 1.0 <= segments[0].start <= 30.0 + start + 0.5
    assert segments[-1].end <= 30.0 + end + 1.0
    assert all(not s.words for s in segments)  # alignment is off by default
    assert seen[-1] == 1.0 and seen == sorted(seen)
