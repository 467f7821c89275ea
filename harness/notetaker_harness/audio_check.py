"""Whether a speaker's audio arrived: enough of the frames sent, and the sound that was sent.

The stack check's scripted speakers each play a steady tone of their own frequency, so
"the decoded audio matches what was sent" has a sharp test: decode what notetaker
received with libopus and find the strongest frequency. Noise (py-cord's receive under
DAVE decodes still-encrypted frames), another speaker's stream under this speaker's
name, or silence all miss it. Pure apart from libopus and numpy, so it is tested on
frames made here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Share of the frames sent that must arrive. On loopback the simulator loses nothing;
#: the margin is for the first frames, which a sink set just after the join can miss,
#: and it is the bar the matrix promises users ("recorded" = at least 90 % arrived).
MIN_SHARE = 0.9
#: How far the strongest frequency may sit from the tone sent. Opus at 48 kHz keeps a
#: pure tone's pitch within a bin; the FFT of 10 s has 0.1 Hz bins, 1 s has 1 Hz bins.
TOLERANCE_HZ = 3.0
#: Below this RMS (of s16 samples) the decoded audio counts as silence; the speakers'
#: tones have amplitude 8000 (RMS about 5657).
SILENCE_RMS = 200.0
SAMPLE_RATE = 48_000


@dataclass(frozen=True)
class SpeakerAudio:
    """What arrived of one speaker, against what was sent."""

    sent: int  #: frames the speaker sent
    received: int  #: frames notetaker received
    expected_hz: float  #: the tone the speaker played
    heard_hz: float | None  #: the strongest frequency decoded (None: silence or nothing)

    @property
    def enough(self) -> bool:
        return self.sent > 0 and self.received >= math.ceil(MIN_SHARE * self.sent)

    @property
    def matches(self) -> bool:
        return self.heard_hz is not None and abs(self.heard_hz - self.expected_hz) <= TOLERANCE_HZ

    @property
    def ok(self) -> bool:
        return self.enough and self.matches

    @property
    def verdict(self) -> str:
        """``recorded``, ``no audio``, ``lost audio`` (under 90 %) or ``wrong audio``."""
        if self.received == 0:
            return "no audio"
        if not self.enough:
            return "lost audio"
        if not self.matches:
            return "wrong audio"
        return "recorded"

    def describe(self) -> str:
        heard = "silence" if self.heard_hz is None else f"{self.heard_hz:.0f} Hz"
        return f"{self.received}/{self.sent} frames, heard {heard} (sent {self.expected_hz:.0f} Hz)"


def dominant_hz(opus_frames: Sequence[bytes]) -> float | None:
    """The strongest frequency of the frames decoded in order (one decoder, as a speaker's
    stream is decoded), or None when they decode to silence or there are none."""
    if not opus_frames:
        return None
    import numpy as np

    from notetaker.voice.opus import Decoder

    decoder = Decoder(SAMPLE_RATE, 2)
    pcm = b"".join(decoder.decode(frame) for frame in opus_frames)
    left = np.frombuffer(pcm, dtype="<i2")[::2].astype(np.float64)
    # The codec's first frames ramp up; judge the steady part.
    left = left[min(len(left) // 10, SAMPLE_RATE // 10) :]
    if len(left) < SAMPLE_RATE // 50 or math.sqrt(float(np.mean(left**2))) < SILENCE_RMS:
        return None
    spectrum = np.abs(np.fft.rfft(left * np.hanning(len(left))))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    return float(peak * SAMPLE_RATE / len(left))


def judge(sent: int, opus_frames: Sequence[bytes], expected_hz: float) -> SpeakerAudio:
    return SpeakerAudio(sent, len(opus_frames), expected_hz, dominant_hz(opus_frames))
