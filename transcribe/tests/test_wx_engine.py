"""The WhisperX engine, where whisperx is installed (its own environment: see README).

On CPU, with ``base``: pyannote VAD (shipped in the whisperx wheel), the batched
pipeline, the guard. Word error bounds as in test_fw_engine (and why there).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notetaker.transcript import PCM_RATE, UtteranceAudio, UtteranceResult
from notetaker_transcribe import sounds
from notetaker_transcribe.guard import DEFAULT, NO_SPEECH, Candidate, judge
from notetaker_transcribe.models import SHIPPED, shipped_installed
from notetaker_transcribe.options import EngineOptions
from notetaker_transcribe.speech import speak_pcm, tools_available, wer

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("whisperx") is None, reason="needs whisperx"),
    pytest.mark.skipif(not tools_available(), reason="needs espeak-ng and ffmpeg"),
    pytest.mark.skipif(not shipped_installed(SHIPPED["base"]), reason="needs the models extra"),
    pytest.mark.slow,
]

ENGLISH = (
    "Good morning everyone. Let us start with the project update. "
    "The new release is ready for testing this week."
)
GERMAN = (
    "Das neue Projekt beginnt im nächsten Monat. Bitte schicken Sie mir den Bericht bis Freitag."
)
NON_SPEECH = sounds.open_mic(10.0)


@pytest.fixture(scope="module")
def engine(shared_data_dir: Path) -> Iterator[Any]:
    from notetaker_transcribe.wx_engine import WhisperXTranscriber

    transcriber = WhisperXTranscriber(
        EngineOptions(model="base", data_dir=shared_data_dir, device="cpu", language=None)
    )
    transcriber.load()
    yield transcriber
    transcriber.close()


@pytest.fixture(scope="module")
def english() -> bytes:
    return speak_pcm(ENGLISH)


@pytest.fixture(scope="module")
def german() -> bytes:
    return speak_pcm(GERMAN, "de")


def _text(result: UtteranceResult) -> str:
    return " ".join(s.text for s in result.segments)


def test_one_utterance_on_the_meeting_clock(engine: Any, english: bytes) -> None:
    assert engine.batch_size == 1  # on CPU
    (result,) = engine.transcribe_utterances([UtteranceAudio(5, 30.0, english, "en")])

    assert result.segments and all(s.user_id == 5 for s in result.segments)
    assert wer(ENGLISH, _text(result)) < 0.15
    assert (result.language, result.language_probability, result.rejected) == ("en", 1.0, ())
    end = 30.0 + len(english) / 2 / PCM_RATE
    assert 30.0 <= result.segments[0].start <= 30.0 + 0.8
    assert all(30.0 <= s.start <= s.end <= end for s in result.segments)
    assert all(not s.words for s in result.segments)  # alignment is off by default


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_mixed_batch_in_order_with_languages_detected(
    batch_size: int, engine: Any, english: bytes, german: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Speech in two languages, music and silence in one batch; batch_size 4 sends the
    chunks through the pipeline together, as on a GPU."""
    monkeypatch.setattr(engine, "batch_size", batch_size)
    music = sounds.to_pcm16(NON_SPEECH["music-with-drums"])
    batch = [
        UtteranceAudio(1, 0.0, english, None),
        UtteranceAudio(2, 5.0, german, None),
        UtteranceAudio(3, 9.0, music, None),
        UtteranceAudio(4, 12.0, b"", None),
        UtteranceAudio(2, 20.0, german, "de"),
    ]
    en, de, heard_music, empty, de_asked = engine.transcribe_utterances(batch)

    assert (en.language, de.language, de_asked.language) == ("en", "de", "de")
    assert en.language_probability > 0.5 and de.language_probability > 0.5
    assert wer(ENGLISH, _text(en)) < 0.15
    assert wer(GERMAN, _text(de)) < 0.3 and wer(GERMAN, _text(de_asked)) < 0.3
    assert {s.user_id for s in en.segments} == {1} and {s.user_id for s in de.segments} == {2}
    assert de_asked.segments[0].start >= 20.0
    assert heard_music.segments == ()
    assert empty == UtteranceResult((), None, 0.0)


@pytest.mark.parametrize("case", NON_SPEECH)
def test_non_speech_gives_no_segments(case: str, engine: Any) -> None:
    pcm = sounds.to_pcm16(NON_SPEECH[case])
    (result,) = engine.transcribe_utterances([UtteranceAudio(1, 0.0, pcm, None)])
    assert result.segments == (), f"{case}: {_text(result)!r} (rejected {result.rejected})"


def test_the_guard_sees_whisperx_s_no_speech_probability(engine: Any, english: bytes) -> None:
    """whisperx does not report no_speech_prob; the engine's forward pass adds it. On
    music pyannote lets through it is high, and the guard rejects what was written."""
    from faster_whisper.tokenizer import Tokenizer

    from notetaker_transcribe.fw_engine import pcm_to_float
    from notetaker_transcribe.wx_engine import decode_with_no_speech

    pipeline = engine.load()
    model = pipeline.model
    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="en")
    features = [
        pipeline.preprocess({"inputs": audio})["inputs"]
        for audio in (pcm_to_float(english), NON_SPEECH["music-with-drums"][: 2 * PCM_RATE])
    ]
    import torch

    out = decode_with_no_speech(model, torch.stack(features), tokenizer, pipeline.options)
    (speech_text, music_text), (speech_p, music_p) = out["text"], out["no_speech_prob"]
    assert speech_p < 0.3 and wer(ENGLISH, speech_text) < 0.15
    assert music_text.strip(), "whisperx wrote nothing: the guard has nothing to show here"
    # Without the probability this invention ("Thank you." here) would reach the notes:
    # whisperx's batched decoding has no no-speech check of its own.
    assert music_p > DEFAULT.no_speech_prob
    logprob = out["avg_logprob"][1]
    assert judge(Candidate(music_text, music_p, logprob)) == NO_SPEECH
    assert judge(Candidate(speech_text, speech_p, out["avg_logprob"][0])) is None
