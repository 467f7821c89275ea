"""The non-speech generators: deterministic, at the level asked, shaped like their names."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from notetaker_transcribe import sounds

GENERATORS: dict[str, Callable[..., sounds.Samples]] = {
    "pink": lambda **kw: sounds.room_noise(colour="pink", **kw),
    "brown": lambda **kw: sounds.room_noise(colour="brown", **kw),
    "clicks": sounds.keyboard_clicks,
    "breathing": sounds.breathing,
    "music": sounds.music,
}


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("rate", [16_000, 48_000])
def test_deterministic_per_seed_and_in_range(name: str, rate: int) -> None:
    make = GENERATORS[name]
    first = make(duration_s=3.0, seed=7, rate=rate)
    assert first.dtype == np.float32 and first.shape == (3 * rate,)
    assert np.array_equal(first, make(duration_s=3.0, seed=7, rate=rate))
    assert not np.array_equal(first, make(duration_s=3.0, seed=8, rate=rate))
    assert float(np.max(np.abs(first))) < 1.0
    assert sounds.rms_dbfs(first) > -80.0


@pytest.mark.parametrize("level", [-50.0, -30.0])
@pytest.mark.parametrize("colour", ["pink", "brown", "white"])
def test_room_noise_at_the_level_asked(colour: str, level: float) -> None:
    noise = sounds.room_noise(5.0, colour=colour, level_dbfs=level, seed=1)
    assert sounds.rms_dbfs(noise) == pytest.approx(level, abs=0.01)


def _band_share(samples: np.ndarray, rate: int, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(power[(freqs >= low) & (freqs < high)].sum() / power.sum())


def test_brown_noise_is_darker_than_pink_and_pink_than_white() -> None:
    low = {
        c: _band_share(sounds.room_noise(4.0, colour=c, seed=2), 16_000, 20, 500)
        for c in ("white", "pink", "brown")
    }
    assert low["white"] < low["pink"] < low["brown"]


def test_clicks_are_impulses_over_a_quiet_floor() -> None:
    clicks = sounds.keyboard_clicks(5.0, level_dbfs=-20.0, seed=3)
    peak_db = 20 * np.log10(float(np.max(np.abs(clicks))))
    assert peak_db == pytest.approx(-20.0, abs=1.5)
    # Crest factor: a click track is mostly floor, with tall, brief peaks.
    assert peak_db - sounds.rms_dbfs(clicks) > 20.0
    frames = np.abs(clicks[: len(clicks) // 160 * 160]).reshape(-1, 160).max(axis=1)
    loud = frames > 10 ** (-40 / 20)
    assert 0.02 < loud.mean() < 0.5, "clicks should occupy a small part of the time"


def test_breathing_rises_and_falls_over_seconds() -> None:
    breath = sounds.breathing(12.0, level_dbfs=-35.0, seed=4)
    # RMS per 100 ms: breaths are runs of loud frames, each lasting about a second.
    energy = np.sqrt(np.mean(breath.reshape(120, 1600) ** 2, axis=1))
    loud = energy > energy.max() / 4
    edges = np.flatnonzero(np.diff(loud.astype(int)))
    runs = np.diff(np.concatenate(([0], edges + 1, [len(loud)])))[0 if loud[0] else 1 :: 2]
    assert 4 <= len(runs) <= 10, runs
    assert np.median(runs) >= 5, "a breath lasts at least half a second"
    assert _band_share(breath, 16_000, 300, 3000) > 0.99


def test_music_is_harmonic_with_percussion_optional() -> None:
    rate = 16_000
    tonal = sounds.music(8.0, seed=5, percussion=False)
    with_drums = sounds.music(8.0, seed=5)
    assert sounds.rms_dbfs(tonal) == pytest.approx(-22.0, abs=0.01)
    # Notes concentrate power in a few spectral lines, unlike noise.
    power = np.abs(np.fft.rfft(tonal)) ** 2
    top = np.sort(power)[::-1]
    assert top[: len(top) // 100].sum() / power.sum() > 0.8
    assert _band_share(with_drums, rate, 5000, 8000) > _band_share(tonal, rate, 5000, 8000)


def test_pcm_round_trip_and_mix() -> None:
    noise = sounds.room_noise(1.0, level_dbfs=-30.0, seed=6)
    pcm = sounds.to_pcm16(noise)
    assert len(pcm) == 2 * len(noise)
    assert np.max(np.abs(sounds.from_pcm16(pcm) - noise)) < 1 / 16_000
    assert sounds.to_pcm16(np.array([2.0, -2.0])) == b"\xff\x7f\x01\x80"
    mixed = sounds.mix(noise, np.ones(10, dtype=np.float32))
    assert len(mixed) == len(noise) and mixed[0] == pytest.approx(noise[0] + 1.0)
    assert sounds.rms_dbfs(np.zeros(4)) == float("-inf")
    with pytest.raises(ValueError, match="colour"):
        sounds.room_noise(1.0, colour="purple")
