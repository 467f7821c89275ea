"""The faster-whisper engine on utterances, with the shipped models (tiny.en and base).

Speech is espeak-ng passed through Opus, decoded to 16 kHz as the live path does; the
non-speech is generated (notetaker_transcribe.sounds) with fixed seeds. The models
are loaded once per run (conftest's ``fw_engines``).

Word error bounds: the English sentences are clear synthetic speech that both models
transcribe without error on this machine; 0.15 (3 words of the 20) leaves room for
the small differences int8 kernels make between CPUs, and anything that is not the
right words (an invention, the wrong language) scores near 1.0. Under room noise the
bound is 0.2. German from espeak-ng is more robotic and base is a small model: it
misses one or two words a sentence (measured 0.0-0.25 per sentence), so 0.3.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from notetaker.errors import ModelResolutionError, TranscriptionError
from notetaker.transcript import PCM_RATE, UtteranceAudio, UtteranceResult
from notetaker_transcribe import sounds
from notetaker_transcribe.fw_engine import (
    MAX_NEW_TOKENS,
    TOKENS_SLACK,
    FasterWhisperTranscriber,
    has_speech,
    to_segments,
    token_budget,
)
from notetaker_transcribe.guard import Rejections
from notetaker_transcribe.models import SHIPPED, shipped_installed
from notetaker_transcribe.options import EngineOptions
from notetaker_transcribe.speech import speak_pcm, tools_available, wer

pytestmark = [
    pytest.mark.skipif(not tools_available(), reason="needs espeak-ng and ffmpeg"),
    pytest.mark.skipif(
        not all(shipped_installed(m) for m in SHIPPED.values()),
        reason="needs notetaker-transcribe[models]",
    ),
]

ENGLISH = (
    "Good morning everyone. Let us start with the project update. "
    "The new release is ready for testing this week."
)
GERMAN = (
    "Das neue Projekt beginnt im nächsten Monat. Bitte schicken Sie mir den Bericht bis Freitag."
)
MAX_WER = 0.15
MAX_WER_NOISY = 0.2
MAX_WER_GERMAN = 0.3
START = 30.0
DURATION = 10.0

Engines = dict[str, FasterWhisperTranscriber]


@dataclass(frozen=True, slots=True)
class Spoken:
    pcm: bytes
    text: str


@pytest.fixture(scope="module")
def english() -> Spoken:
    return Spoken(speak_pcm(ENGLISH), ENGLISH)


@pytest.fixture(scope="module")
def german() -> Spoken:
    return Spoken(speak_pcm(GERMAN, "de"), GERMAN)


def utterance(
    pcm: bytes, language: str | None, user_id: int = 7, start_s: float = START
) -> UtteranceAudio:
    return UtteranceAudio(user_id=user_id, start_s=start_s, pcm=pcm, language=language)


def one(engine: FasterWhisperTranscriber, item: UtteranceAudio) -> UtteranceResult:
    results = engine.transcribe_utterances([item])
    assert len(results) == 1
    return results[0]


def text_of(result: UtteranceResult) -> str:
    return " ".join(s.text for s in result.segments)


def under_noise(speech: bytes, colour: str, level_dbfs: float) -> bytes:
    voice = sounds.from_pcm16(speech)
    noise = sounds.room_noise(len(voice) / PCM_RATE, colour=colour, level_dbfs=level_dbfs, seed=11)
    return sounds.to_pcm16(sounds.mix(voice, noise))


@pytest.mark.parametrize("model", ["tiny.en", "base"])
def test_english_speech_on_the_meeting_clock(
    model: str, fw_engines: Engines, english: Spoken
) -> None:
    result = one(fw_engines[model], utterance(english.pcm, "en"))

    assert result.segments, "no speech recognised"
    assert wer(english.text, text_of(result)) < MAX_WER
    assert (result.language, result.language_probability) == ("en", 1.0)
    assert result.rejected == ()
    end = START + len(english.pcm) / 2 / PCM_RATE
    words = [w for s in result.segments for w in s.words]
    assert len(words) >= 18
    for seg in result.segments:
        assert seg.user_id == 7
        assert START <= seg.start <= seg.end <= end
        for w in seg.words:
            assert seg.start - 0.01 <= w.start <= w.end <= seg.end + 0.01
            assert 0.0 <= w.probability <= 1.0
            assert w.text == w.text.strip() and w.text
    # speak_pcm leaves 0.3 s of silence before the first word.
    assert START <= words[0].start <= START + 0.8
    assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)


def test_start_moves_every_time_and_nothing_else(fw_engines: Engines, english: Spoken) -> None:
    engine = fw_engines["tiny.en"]
    at_zero, later = engine.transcribe_utterances(
        [utterance(english.pcm, None, start_s=0.0), utterance(english.pcm, None, start_s=12.5)]
    )
    assert [s.text for s in at_zero.segments] == [s.text for s in later.segments]
    for a, b in zip(at_zero.segments, later.segments, strict=True):
        assert (b.start, b.end) == pytest.approx((a.start + 12.5, a.end + 12.5))
        assert [w.start + 12.5 for w in a.words] == pytest.approx([w.start for w in b.words])


@pytest.mark.parametrize(("colour", "level"), [("pink", -45.0), ("brown", -30.0)])
def test_speech_under_room_noise(
    colour: str, level: float, fw_engines: Engines, english: Spoken
) -> None:
    """An ordinary room (pink, -45 dBFS) and a loud one (brown, -30: 10 dB under the
    voice) on the same open microphone."""
    result = one(fw_engines["base"], utterance(under_noise(english.pcm, colour, level), "en"))
    assert wer(english.text, text_of(result)) < MAX_WER_NOISY


def test_german_in_german(fw_engines: Engines, german: Spoken) -> None:
    result = one(fw_engines["base"], utterance(german.pcm, "de"))
    assert result.language == "de"
    assert wer(german.text, text_of(result)) < MAX_WER_GERMAN


def test_language_is_detected_when_none_is_given(
    fw_engines: Engines, english: Spoken, german: Spoken
) -> None:
    engine = fw_engines["base"]
    assert engine.options.language is None
    # "auto" means the same as None (see test_transcribe_plugin for the spellings).
    de, en = engine.transcribe_utterances(
        [utterance(german.pcm, None), utterance(english.pcm, "auto", user_id=8)]
    )
    assert de.language == "de" and de.language_probability > 0.5
    assert en.language == "en" and en.language_probability > 0.5
    assert wer(german.text, text_of(de)) < MAX_WER_GERMAN
    assert wer(english.text, text_of(en)) < MAX_WER
    assert {s.user_id for s in de.segments} == {7} and {s.user_id for s in en.segments} == {8}


def test_an_english_only_model_always_reports_english(fw_engines: Engines, german: Spoken) -> None:
    for asked in ("de", None):
        result = one(fw_engines["tiny.en"], utterance(german.pcm, asked))
        assert (result.language, result.language_probability) == ("en", 1.0)


# Room noise, typing, breathing and music (see sounds.open_mic): the music is chosen
# so that Silero VAD lets a little of each through, and the guard must do the rest.
NON_SPEECH = sounds.open_mic(DURATION)


@pytest.mark.parametrize("case", NON_SPEECH)
@pytest.mark.parametrize(("model", "language"), [("base", None), ("tiny.en", "en")])
def test_non_speech_gives_no_segments(
    case: str, model: str, language: str | None, fw_engines: Engines
) -> None:
    result = one(fw_engines[model], utterance(sounds.to_pcm16(NON_SPEECH[case]), language))
    assert result.segments == (), f"{case}: {text_of(result)!r} (rejected {result.rejected})"


def test_vad_is_the_one_inside_the_wheel_and_runs_offline(english: Spoken) -> None:
    import faster_whisper
    from faster_whisper.utils import get_assets_path

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assets = Path(get_assets_path())
    assert (assets / "silero_vad_v6.onnx").is_file()
    assert assets.is_relative_to(Path(faster_whisper.__file__).parent)
    assert has_speech(sounds.from_pcm16(english.pcm))
    assert not has_speech(NON_SPEECH["room-pink-loud"])


# Sounds on which tiny.en, with VAD bypassed, writes "Thank you.", "You" or ".".
INVENTION_BAIT = {
    "music-tonal-1": sounds.music(DURATION, seed=1, percussion=False),
    "music-tonal-2": sounds.music(DURATION, seed=2, percussion=False),
    "music-2": sounds.music(DURATION, seed=2),
    "music-20": sounds.music(DURATION, seed=20),
    "room-pink-loud-2": sounds.room_noise(DURATION, colour="pink", level_dbfs=-30, seed=2),
    "room-brown-loud-2": sounds.room_noise(DURATION, colour="brown", level_dbfs=-25, seed=2),
}


def _decode_without_vad(model: object, audio: np.ndarray) -> object:
    raw, _ = model.transcribe(  # type: ignore[attr-defined]
        audio, language="en", vad_filter=False, word_timestamps=True,
        condition_on_previous_text=False,
    )  # fmt: skip
    return raw


def test_the_guard_rejects_what_whisper_invents_when_vad_lets_noise_through(
    fw_engines: Engines, english: Spoken
) -> None:
    """VAD bypassed, so every sound reaches the model: what it writes for them must all
    be rejected, and real speech decoded the same way must all be kept."""
    model = fw_engines["tiny.en"].load()
    invented: list[tuple[str, tuple[tuple[str, int], ...]]] = []
    for name, audio in INVENTION_BAIT.items():
        rejections = Rejections()
        item = utterance(sounds.to_pcm16(audio), "en")
        kept = to_segments(_decode_without_vad(model, audio), item, rejections)
        assert kept == [], f"{name}: {[s.text for s in kept]}"
        if rejections.as_tuple():
            invented.append((name, rejections.as_tuple()))
    # Otherwise this test would show nothing about the guard.
    assert len(invented) >= 2, f"tiny.en invented text on too few sounds: {invented}"

    rejections = Rejections()
    speech = sounds.from_pcm16(english.pcm)
    kept = to_segments(_decode_without_vad(model, speech), utterance(english.pcm, "en"), rejections)
    assert rejections.as_tuple() == ()
    assert wer(english.text, " ".join(s.text for s in kept)) < MAX_WER


def test_a_batch_gives_one_result_per_utterance_in_order(
    fw_engines: Engines, english: Spoken
) -> None:
    noise = sounds.to_pcm16(NON_SPEECH["room-pink-realistic"])
    results = fw_engines["tiny.en"].transcribe_utterances(
        [
            utterance(b"", "en", user_id=1),
            utterance(english.pcm, "en", user_id=2),
            utterance(noise, "en", user_id=3),
        ]
    )
    assert [bool(r.segments) for r in results] == [False, True, False]
    assert {s.user_id for s in results[1].segments} == {2}
    assert results[0] == UtteranceResult((), "en", 1.0)
    assert fw_engines["tiny.en"].transcribe_utterances([]) == []
    assert FasterWhisperTranscriber.batch_size == 1


def test_nothing_heard_without_a_language_reports_none(fw_engines: Engines) -> None:
    result = one(fw_engines["base"], utterance(b"\0\0" * PCM_RATE, None))
    assert result == UtteranceResult((), None, 0.0)


def test_bad_input_is_a_transcription_error(fw_engines: Engines, english: Spoken) -> None:
    engine = fw_engines["base"]
    with pytest.raises(TranscriptionError, match="odd"):
        engine.transcribe_utterances([utterance(b"\0\0\0", "en")])
    with pytest.raises(TranscriptionError, match=r"faster-whisper failed on .* user 7 .*xx"):
        engine.transcribe_utterances([utterance(english.pcm, "xx")])


def test_an_unknown_model_is_a_model_resolution_error(tmp_path: Path) -> None:
    engine = FasterWhisperTranscriber(EngineOptions(model="medium.en", data_dir=tmp_path))
    with pytest.raises(ModelResolutionError, match=r"'medium\.en'"):
        engine.transcribe_utterances([utterance(b"\0\0", "en")])


def test_the_token_budget_follows_the_speech_heard() -> None:
    # 0.4 s of music let through by VAD: a loop is cut after a few dozen tokens...
    assert token_budget(0.4) == TOKENS_SLACK + 6
    # ...while a full window of speech keeps all of Whisper's own budget.
    assert token_budget(30.0) == MAX_NEW_TOKENS
    assert token_budget(0.0) == TOKENS_SLACK


def test_load_returns_the_model_once(fw_engines: Engines) -> None:
    engine = fw_engines["tiny.en"]
    model = engine.load()
    assert model is engine.load()
    assert engine.model_path is not None and (engine.model_path / "model.bin").is_file()
    assert not model.model.is_multilingual
