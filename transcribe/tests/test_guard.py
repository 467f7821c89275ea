"""The hallucination guard's rules, one by one, on texts and scores measured with the
shipped models (see notetaker_transcribe.guard for where each number comes from)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notetaker_transcribe.guard import (
    DEFAULT,
    LOW_LOGPROB,
    NO_SPEECH,
    NON_SPEECH,
    REASONS,
    REPETITIVE,
    Candidate,
    Rejections,
    Thresholds,
    compression_ratio,
    is_loop,
    is_non_speech,
    is_silence_phrase,
    judge,
    words,
)

# Scores of real espeak-ng speech decoded by base and tiny.en (VAD on): confident.
SURE = {"no_speech_prob": 0.05, "avg_logprob": -0.4, "compression_ratio": 1.0}


def sure(text: str) -> Candidate:
    return Candidate(text, **SURE)


@pytest.mark.parametrize(
    "text",
    ["♪", "♪♪ ♪", "[Music]", "[MUSIC PLAYING]", "(applause)", "*laughs*", "...", " - ", "",
     "<silence>", "♪ la la la ♪", "[Music] (upbeat)", "♫ ♬", "?!"],
)  # fmt: skip
def test_text_without_words_is_non_speech_whatever_the_scores(text: str) -> None:
    assert is_non_speech(text)
    assert judge(sure(text)) == NON_SPEECH


@pytest.mark.parametrize(
    "text", ["Yes.", "42", "OK [laughs]", "Guten Morgen zusammen.", "Продолжим.", "はい", "no"]
)
def test_any_word_outside_annotations_is_speech(text: str) -> None:
    assert not is_non_speech(text)
    assert judge(sure(text)) is None


@given(st.text(alphabet=st.sampled_from(list(" .,!?-…♪♫♬'\"")), max_size=30))
def test_only_symbols_and_punctuation_is_always_non_speech(text: str) -> None:
    assert judge(Candidate(text)) == NON_SPEECH


# What base and tiny.en wrote on noise and music with VAD off, and their scores.
INVENTED = [
    Candidate(" Thank you.", 0.86, -0.86, 0.56),
    Candidate(" You", 0.95, -0.99, 0.27),
    Candidate(" 1.0%", 0.84, -0.60, 1.60),
    Candidate(" 2-0-0-0-0-0-0-0-0-0-0-0", 0.86, -0.95, 1.92),
    Candidate(" Thank you very much.", 0.58, -1.02, 0.71),
    Candidate(" \u200bT.B.\u200b", 0.58, -3.64, 0.56),
]
# What they wrote on real speech, including the least confident cases measured.
SPOKEN = [
    Candidate(" Thank you.", 0.17, -0.62, 0.53),
    Candidate(" You", 0.30, -0.46, 0.27),
    Candidate(" Yes", 0.25, -0.46, 0.27),
    Candidate(" Okay, bye", 0.09, -0.29, 0.53),
    Candidate(" Thanks for watching!", 0.03, -0.63, 0.71),
    Candidate(" Danke!", 0.29, -1.07, 0.43),
    Candidate(" Guten Morgen, SUMAMMEN, die Gesprächern heute den Zeitplan.", 0.09, -0.80, 0.93),
    Candidate(" Please send the slides to the whole team tomorrow.", 0.02, -0.42, 0.96),
]


@pytest.mark.parametrize("candidate", INVENTED, ids=lambda c: c.text.strip())
def test_measured_inventions_are_rejected(candidate: Candidate) -> None:
    assert judge(candidate) is not None


@pytest.mark.parametrize("candidate", SPOKEN, ids=lambda c: c.text.strip())
def test_measured_speech_is_kept(candidate: Candidate) -> None:
    assert judge(candidate) is None


def test_no_speech_probability_alone_rejects() -> None:
    text = "We need to finish the report before the end of the month."
    assert judge(Candidate(text, 0.61, -0.2, 1.1)) == NO_SPEECH
    assert judge(Candidate(text, 0.59, -0.2, 1.1)) is None


def test_low_logprob_alone_rejects_only_below_whisper_s_retry_bound() -> None:
    text = "We need to finish the report before the end of the month."
    assert judge(Candidate(text, 0.1, -1.21, 1.1)) == LOW_LOGPROB
    # Between Whisper's -1.0 and the guard's -1.2 lies real short speech ("Danke!").
    assert judge(Candidate(text, 0.1, -1.1, 1.1)) is None


def test_a_high_compression_ratio_is_a_loop() -> None:
    text = "We need to finish the report. " * 6
    assert compression_ratio(text) > 2.4
    assert judge(Candidate(text, 0.1, -0.3, compression_ratio(text))) == REPETITIVE
    # whisperx reports no ratio; the guard's own measure of the text is the same one.
    assert compression_ratio("Hello there, how are you today?") < 1.5
    assert compression_ratio("") == 0.0


def test_short_loops_gzip_cannot_see_are_caught_by_counting() -> None:
    assert is_loop(words("thank you thank you thank you thank you"))
    assert is_loop(words("Okay. Okay. Okay. Okay. Okay. Okay."))
    assert judge(sure("Thank you. Thank you. Thank you. Thank you.")) == REPETITIVE
    # People repeat themselves, a little: these stay.
    for said in ("no, no, no", "thank you, thank you", "very very very good", "ha ha ha ha"):
        assert not is_loop(words(said)), said
        assert judge(sure(said)) is None, said


@pytest.mark.parametrize(
    "text",
    ["Thank you.", "thanks for watching!", "Bye-bye.", " you", "Vielen Dank.",
     "Subtitles by the Amara.org community", "Untertitel im Auftrag des ZDF, 2017",
     "Transcription by CastingWords", "ご視聴ありがとうございました"],
)  # fmt: skip
def test_a_silence_phrase_needs_weak_evidence_to_be_rejected(text: str) -> None:
    assert is_silence_phrase(text)
    # Said with confidence: kept. A participant may well thank the others.
    assert judge(sure(text)) is None
    assert judge(Candidate(text, 0.45, -0.4, 1.0)) == NO_SPEECH
    assert judge(Candidate(text, 0.1, -0.95, 1.0)) == LOW_LOGPROB


def test_the_same_scores_keep_a_sentence_that_is_not_a_silence_phrase() -> None:
    for text in ("Thank you for the report.", "We can say bye to the old server."):
        assert not is_silence_phrase(text)
        assert judge(Candidate(text, 0.45, -0.95, 1.0)) is None


def test_scores_an_engine_does_not_report_do_not_reject() -> None:
    assert judge(Candidate("Thank you.")) is None
    assert judge(Candidate("Please send the slides.", None, -0.3, None)) is None


def test_thresholds_can_be_tightened() -> None:
    strict = Thresholds(no_speech_prob=0.2)
    assert judge(Candidate("Yes", 0.25, -0.46, 0.27), strict) == NO_SPEECH
    assert judge(Candidate("Yes", 0.25, -0.46, 0.27), DEFAULT) is None


def test_rejections_are_counted_by_reason_in_a_stable_order() -> None:
    rejections = Rejections()
    kept = [
        rejections.keep(c)
        for c in (
            Candidate("Thank you. Thank you. Thank you. Thank you."),
            Candidate("[Music]"),
            Candidate("You", 0.95, -0.99, 0.27),
            Candidate("♪"),
            Candidate("Yes", 0.25, -0.46, 0.27),
        )
    ]
    assert kept == [False, False, False, False, True]
    assert rejections.as_tuple() == ((NON_SPEECH, 2), (NO_SPEECH, 1), (REPETITIVE, 1))
    assert Rejections().as_tuple() == ()
    assert set(REASONS) == {NON_SPEECH, NO_SPEECH, LOW_LOGPROB, REPETITIVE}
