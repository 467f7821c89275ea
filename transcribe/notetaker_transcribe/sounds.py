"""Synthetic non-speech sounds a voice channel carries, for tests and benchmarks.

What an open microphone sends when nobody is talking: room noise (pink or brown, the
spectra of fans, traffic and air handling), keyboard clicks, breathing, and music played
near the microphone. Every generator is deterministic for a given ``seed`` and returns
mono float32 samples in [-1, 1] at ``rate`` (16 kHz, what Whisper takes; 48 kHz, what
Discord carries). :func:`to_pcm16` turns them into the s16le bytes of
:class:`notetaker.transcript.UtteranceAudio`.

Levels are RMS in dBFS (0 dBFS: a full-scale sine has -3 dBFS RMS). As a guide, from
recordings of headset and desk microphones without noise suppression: a quiet room is
around -60 dBFS, an ordinary room with a computer fan -50 to -45, a loud fan or a window
onto a street -30; normal speech sits around -20.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Samples = NDArray[np.float32]

#: Equal-tempered pitch of MIDI note ``n``: A4 (note 69) is 440 Hz.
_A4 = 440.0


def db_to_amplitude(db: float) -> float:
    """Linear amplitude of a level in dB (relative to full scale)."""
    return float(10.0 ** (db / 20.0))


def rms_dbfs(samples: NDArray[np.floating]) -> float:
    """RMS level in dBFS; -inf for digital silence."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20.0 * float(np.log10(rms)) if rms > 0 else float("-inf")


def set_level(samples: NDArray[np.floating], level_dbfs: float) -> Samples:
    """``samples`` scaled to an RMS of ``level_dbfs`` (silence stays silence)."""
    current = rms_dbfs(samples)
    if current == float("-inf"):
        return samples.astype(np.float32)
    gain = db_to_amplitude(level_dbfs - current)
    return (samples * gain).astype(np.float32)


def to_pcm16(samples: NDArray[np.floating]) -> bytes:
    """s16le bytes, clipped to full scale."""
    clipped = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    return (np.round(clipped * 32767.0)).astype("<i2").tobytes()


def from_pcm16(pcm: bytes) -> Samples:
    """float32 samples in [-1, 1) from s16le bytes."""
    return (np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def mix(*tracks: NDArray[np.floating]) -> Samples:
    """The sum of ``tracks`` (zero-padded to the longest)."""
    length = max((len(t) for t in tracks), default=0)
    out = np.zeros(length, dtype=np.float64)
    for track in tracks:
        out[: len(track)] += track
    return out.astype(np.float32)


def _n(duration_s: float, rate: int) -> int:
    if duration_s < 0 or rate <= 0:
        raise ValueError("duration must be >= 0 and rate > 0")
    return round(duration_s * rate)


def _coloured(n: int, exponent: float, rng: np.random.Generator, rate: int) -> Samples:
    """Gaussian noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown).

    Shaped in the frequency domain; below 20 Hz the slope stops, as a microphone's
    high-pass does, so brown noise does not wander off as DC.
    """
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    shape = np.maximum(freqs, 20.0) ** (-exponent / 2.0)
    shape[0] = 0.0
    return np.fft.irfft(spectrum * shape, n).astype(np.float32)


def _band(samples: NDArray[np.floating], rate: int, low: float, high: float) -> Samples:
    """``samples`` with everything outside [low, high] Hz removed (FFT brick wall)."""
    spectrum = np.fft.rfft(samples)
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate)
    spectrum[(freqs < low) | (freqs > high)] = 0.0
    return np.fft.irfft(spectrum, len(samples)).astype(np.float32)


def room_noise(
    duration_s: float,
    *,
    colour: str = "pink",
    level_dbfs: float = -50.0,
    seed: int = 0,
    rate: int = 16_000,
) -> Samples:
    """Steady room noise on an open microphone: ``pink`` (fans, air) or ``brown`` (rumble,
    traffic), with a slow 0.3 Hz wobble of +-1.5 dB as air handling has."""
    exponents = {"white": 0.0, "pink": 1.0, "brown": 2.0}
    if colour not in exponents:
        raise ValueError(f"colour must be one of {', '.join(exponents)}")
    n = _n(duration_s, rate)
    rng = np.random.default_rng(seed)
    noise = _coloured(n, exponents[colour], rng, rate)
    t = np.arange(n) / rate
    wobble = db_to_amplitude(1.5) ** np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    return set_level(noise * wobble, level_dbfs)


def keyboard_clicks(
    duration_s: float,
    *,
    level_dbfs: float = -20.0,
    seed: int = 0,
    rate: int = 16_000,
    floor_dbfs: float = -65.0,
) -> Samples:
    """Typing near the microphone: key presses at random 80-350 ms intervals in bursts of
    a few words, each press a 2-5 ms impulse of band-passed noise ringing at 2-4 kHz (the
    key cap) followed by a softer release click; a quiet noise floor between.

    ``level_dbfs`` is each click's peak level; the whole sounds much quieter in RMS.
    """
    n = _n(duration_s, rate)
    rng = np.random.default_rng(seed)
    out = _coloured(n, 1.0, rng, rate)
    out = set_level(out, floor_dbfs) if n else out
    peak = db_to_amplitude(level_dbfs)
    t = 0.05 + rng.uniform(0, 0.2)
    while t < duration_s - 0.05:
        for press in (True, False):
            length = round(rate * rng.uniform(0.002, 0.005))
            ring = rng.uniform(2000.0, 4000.0)
            tt = np.arange(length * 4) / rate
            click = rng.standard_normal(len(tt)) * np.exp(-tt * rate / length)
            click += np.sin(2 * np.pi * ring * tt) * np.exp(-tt * rate / (length * 2))
            click *= peak * (1.0 if press else 0.5) / max(float(np.max(np.abs(click))), 1e-9)
            at = round(t * rate) if press else round((t + rng.uniform(0.06, 0.12)) * rate)
            end = min(at + len(click), n)
            if at < n:
                out[at:end] += click[: end - at].astype(np.float32)
        # Within a word presses come quickly; between words (about 1 in 5) there is a gap.
        t += rng.uniform(0.08, 0.35) + (rng.uniform(0.3, 1.2) if rng.random() < 0.2 else 0.0)
    return out.astype(np.float32)


def breathing(
    duration_s: float,
    *,
    level_dbfs: float = -35.0,
    seed: int = 0,
    rate: int = 16_000,
) -> Samples:
    """Breathing into a headset microphone: band-passed (300-3000 Hz) noise under a slow
    envelope, a 1.0-1.6 s inhale and a 1.4-2.2 s exhale, pauses of 0.3-1.0 s between.

    ``level_dbfs`` is the RMS during a breath.
    """
    n = _n(duration_s, rate)
    rng = np.random.default_rng(seed)
    noise = _band(_coloured(n, 1.0, rng, rate), rate, 300.0, 3000.0) if n else np.zeros(0)
    envelope = np.zeros(n)
    t = rng.uniform(0.0, 0.5)
    inhale = True
    while t < duration_s:
        length = rng.uniform(1.0, 1.6) if inhale else rng.uniform(1.4, 2.2)
        full = round(length * rate)
        start = round(t * rate)
        stop = min(start + full, n)
        phase = np.linspace(0.0, 1.0, full)[: stop - start]
        # A rise quicker than the fall: air starts moving faster than it stops.
        envelope[start:stop] = np.sin(np.pi * phase**0.7) ** 2 * (0.7 if inhale else 1.0)
        t += length + (rng.uniform(0.3, 1.0) if not inhale else rng.uniform(0.0, 0.2))
        inhale = not inhale
    breath = noise * envelope
    voiced = envelope > 0.1
    level = rms_dbfs(breath[voiced]) if voiced.any() else float("-inf")
    if level == float("-inf"):
        return breath.astype(np.float32)
    return (breath * db_to_amplitude(level_dbfs - level)).astype(np.float32)


def _tone(freq: float, length: int, rate: int, harmonics: int, decay: float) -> NDArray:
    """A plucked/struck note: ``harmonics`` partials falling as 1/k, an exponential decay."""
    t = np.arange(length) / rate
    wave = np.zeros(length)
    for k in range(1, harmonics + 1):
        if freq * k < rate / 2:
            wave += np.sin(2 * np.pi * freq * k * t) / k
    attack = np.minimum(t / 0.01, 1.0)
    return wave * attack * np.exp(-t * decay)


def _midi(note: int) -> float:
    return _A4 * 2.0 ** ((note - 69) / 12.0)


def music(
    duration_s: float,
    *,
    level_dbfs: float = -22.0,
    seed: int = 0,
    rate: int = 16_000,
    percussion: bool = True,
) -> Samples:
    """Instrumental music played near the microphone: a I-V-vi-IV chord progression with
    harmonic-rich voices, a melody drawn from the key's scale, and (``percussion``) kick,
    snare and hi-hat at 100-130 bpm. No voice, no lyrics: nothing in it is speech.
    """
    n = _n(duration_s, rate)
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    bpm = rng.uniform(100, 130)
    beat = 60.0 / bpm
    key = int(rng.integers(55, 62))  # G3..C#4
    progression = [(0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12)]
    scale = [0, 2, 4, 5, 7, 9, 11, 12, 14, 16]
    bar = 4 * beat
    for i in range(int(duration_s / bar) + 1):
        start = round(i * bar * rate)
        if start >= n:
            break
        chord = progression[i % len(progression)]
        length = min(round(bar * rate), n - start)
        for interval in chord:
            out[start : start + length] += 0.25 * _tone(_midi(key + interval), length, rate, 8, 1.2)
        bass = _tone(_midi(key - 12 + chord[0]), length, rate, 5, 0.8)
        out[start : start + length] += 0.35 * bass
    t = 0.0
    while t < duration_s:
        length_s = beat * float(rng.choice([0.5, 0.5, 1.0, 1.0, 2.0]))
        start, length = round(t * rate), round(length_s * rate)
        length = min(length, n - start)
        if length > 0 and rng.random() > 0.15:  # a rest now and then
            note = key + 12 + int(rng.choice(scale))
            out[start : start + length] += 0.3 * _tone(_midi(note), length, rate, 6, 2.5)
        t += length_s
    if percussion:
        for b in range(int(duration_s / beat) + 1):
            at = round(b * beat * rate)
            if at >= n:
                break
            hit = _drum(b % 4, rng, rate)
            end = min(at + len(hit), n)
            out[at:end] += hit[: end - at]
            # Hi-hat on the off-beat.
            off = round((b + 0.5) * beat * rate)
            if off < n:
                hat = _hat(rng, rate)
                end = min(off + len(hat), n)
                out[off:end] += hat[: end - off]
    return set_level(out, level_dbfs)


def _drum(position: int, rng: np.random.Generator, rate: int) -> NDArray:
    """Kick on beats 1 and 3 (a falling sine), snare on 2 and 4 (noise and a 180 Hz body)."""
    t = np.arange(round(0.2 * rate)) / rate
    if position in (0, 2):
        sweep = 50.0 + 100.0 * np.exp(-t * 30.0)
        return 0.8 * np.sin(2 * np.pi * np.cumsum(sweep) / rate) * np.exp(-t * 18.0)
    body = 0.3 * np.sin(2 * np.pi * 180.0 * t) * np.exp(-t * 25.0)
    return body + 0.4 * rng.standard_normal(len(t)) * np.exp(-t * 20.0)


def _hat(rng: np.random.Generator, rate: int) -> NDArray:
    t = np.arange(round(0.05 * rate)) / rate
    hiss = _band(rng.standard_normal(len(t)), rate, min(6000.0, rate / 2 - 1), rate / 2)
    return 0.2 * hiss * np.exp(-t * 80.0)


def open_mic(duration_s: float = 10.0, *, rate: int = 16_000) -> dict[str, Samples]:
    """A named set of what an open microphone carries between utterances, for tests and
    benchmarks: room noise at an ordinary (-50 dBFS) and loud (-30, -25) level, typing,
    breathing, and music with drums, without, and under room noise.

    The music seeds are ones in which Silero VAD finds a little "speech" (0.4-0.9 s of
    each, at 16 kHz and 10 s), so that what keeps them out of the notes is the
    hallucination guard, not VAD alone.
    """
    d, r = duration_s, rate
    return {
        "room-pink-realistic": room_noise(d, colour="pink", level_dbfs=-50, seed=1, rate=r),
        "room-pink-loud": room_noise(d, colour="pink", level_dbfs=-30, seed=2, rate=r),
        "room-brown-loud": room_noise(d, colour="brown", level_dbfs=-25, seed=2, rate=r),
        "keyboard": keyboard_clicks(d, level_dbfs=-15, seed=2, rate=r),
        "breathing": breathing(d, level_dbfs=-30, seed=2, rate=r),
        "music-with-drums": music(d, seed=20, rate=r),
        "music-tonal": music(d, seed=16, percussion=False, rate=r),
        "music-in-a-room": mix(
            music(d, seed=22, rate=r), room_noise(d, level_dbfs=-45, seed=3, rate=r)
        ),
    }
