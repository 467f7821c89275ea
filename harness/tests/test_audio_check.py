"""The matrix's "recorded": at least 90 % of the frames sent arrived and they decode to
the tone that was sent. Frames are made here with real libopus."""

from __future__ import annotations

import numpy as np
import pytest

from notetaker.voice.opus import FRAME_SAMPLES, SAMPLE_RATE, Encoder
from notetaker_harness.audio_check import MIN_SHARE, SpeakerAudio, dominant_hz, judge
from notetaker_harness.stackcheck import SUITE_BY_NAME, TONES, Result


def _frames(signal: np.ndarray) -> list[bytes]:
    encoder = Encoder()
    stereo = np.repeat(signal.astype("<i2"), 2)
    step = FRAME_SAMPLES * 2
    return [
        encoder.encode(stereo[i : i + step].tobytes())
        for i in range(0, len(stereo) - step + 1, step)
    ]


def _tone(hz: float, seconds: float = 2.0) -> list[bytes]:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return _frames(8000 * np.sin(2 * np.pi * hz * t))


def test_a_tone_decodes_to_its_frequency() -> None:
    for hz in TONES.values():
        heard = dominant_hz(_tone(hz))
        assert heard is not None and abs(heard - hz) < 1.0


def test_every_frame_of_the_right_tone_is_recorded() -> None:
    frames = _tone(330)
    audio = judge(len(frames), frames, 330)
    assert (audio.verdict, audio.ok) == ("recorded", True)


def test_the_loss_budget_is_ninety_percent_of_the_frames_sent() -> None:
    frames = _tone(330)
    sent = len(frames)
    keep = -(-int(MIN_SHARE * 100) * sent // 100)  # ceil(0.9 * sent)
    assert judge(sent, frames[:keep], 330).verdict == "recorded"
    short = judge(sent, frames[: keep - 1], 330)
    assert (short.verdict, short.ok) == ("lost audio", False)


def test_another_speakers_tone_noise_or_silence_is_wrong_audio() -> None:
    rng = np.random.default_rng(7)
    n = SAMPLE_RATE * 2
    cases = {
        "carol's tone under bob's name": _tone(550),
        "noise": _frames(rng.normal(0, 6000, n).clip(-32000, 32000)),
        "silence": _frames(np.zeros(n)),
    }
    for what, frames in cases.items():
        audio = judge(len(frames), frames, 330)
        assert (audio.verdict, audio.ok) == ("wrong audio", False), what
    assert judge(100, [], 330).verdict == "no audio"


def _receive(speech: dict[str, SpeakerAudio] | None) -> Result:
    check = SUITE_BY_NAME["receive"]
    r = Result(check.name, check.scenario, "engine", "py-cord", "2.8.1", outcome="connected")
    r.speech = speech
    r.audio = {k: a.received for k, a in (speech or {}).items()}
    return r


@pytest.mark.parametrize(
    ("carol", "label"),
    [
        (SpeakerAudio(500, 500, 550, 550.0), "recorded"),
        (SpeakerAudio(500, 449, 550, 550.0), "lost audio"),
        (SpeakerAudio(500, 500, 550, 330.0), "wrong audio"),
        (SpeakerAudio(500, 0, 550, None), "no audio"),
    ],
)
def test_the_check_is_recorded_only_when_every_speaker_is(carol: SpeakerAudio, label: str) -> None:
    r = _receive({"bob": SpeakerAudio(500, 500, 330, 330.0), "carol": carol})
    assert r.label == label
    assert r.ok is (label == "recorded")
    assert r.to_json()["label"] == label


def test_a_sink_that_got_nothing_is_no_audio() -> None:
    assert _receive(None).label == "no audio"
    assert _receive({}).ok is False
