"""The audio seam: what receives decrypted, ordered voice frames.

A voice transport (core's engine or a library's native receive) delivers one
:class:`AudioFrame` per 20 ms Opus packet to an :class:`AudioSink`, per speaker, in
RTP order. The recorder is the production sink; tests use :class:`CaptureSink`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

#: Opus frame Discord sends as silence (never DAVE-encrypted).
OPUS_SILENCE = b"\xf8\xff\xfe"
#: Samples per channel in one 20 ms frame at 48 kHz; RTP timestamps advance by this.
SAMPLES_PER_FRAME = 960
SAMPLE_RATE = 48_000


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One speaker's 20 ms of audio, after transport (and DAVE) decryption.

    ``opus`` is the Opus packet exactly as the speaker's client encoded it; ``pcm`` is
    48 kHz stereo s16le, present only when the sink asked for PCM (``wants_pcm``).
    ``arrival`` is the receiver's monotonic clock in seconds.
    """

    user_id: int
    ssrc: int
    sequence: int
    rtp_timestamp: int
    arrival: float
    opus: bytes
    pcm: bytes | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Packets of one speaker that never arrived (or arrived too late to use).

    ``first_sequence`` is the first missing RTP sequence number; ``count`` how many are
    missing; ``reason`` one of ``loss``, ``late``, ``decrypt``, ``decode``, ``reconnect``.
    """

    user_id: int
    ssrc: int
    first_sequence: int
    count: int
    reason: str = "loss"


class AudioSink(ABC):
    """Receives frames per speaker. Called from the receive loop: must not block.

    ``write`` is called in RTP order per speaker. ``gap`` reports missing frames so a
    recorder can mark them instead of mistaking them for silence. ``close`` is called
    once when the meeting's capture ends.
    """

    #: Set to True to receive ``AudioFrame.pcm`` (costs one Opus decode per frame).
    wants_pcm: bool = False

    @abstractmethod
    def write(self, frame: AudioFrame) -> None:
        """Take one frame. Must not block the receive loop."""

    def gap(self, gap: Gap) -> None:  # noqa: B027 - optional hook, default ignores gaps
        """Told about frames that will never come."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Capture ended; flush and release resources."""


class FanOut(AudioSink):
    """Hands every frame and gap to each of ``sinks`` in order. A sink that raises does
    not keep the frame from the ones after it (the recorder goes first: it is the source
    of truth); the first error is raised again once all have had the frame."""

    def __init__(self, *sinks: AudioSink) -> None:
        self.sinks = sinks
        self.wants_pcm = any(s.wants_pcm for s in sinks)

    def write(self, frame: AudioFrame) -> None:
        self._each(lambda s: s.write(frame))

    def gap(self, gap: Gap) -> None:
        self._each(lambda s: s.gap(gap))

    def close(self) -> None:
        self._each(lambda s: s.close())

    def _each(self, call: Callable[[AudioSink], None]) -> None:
        error: Exception | None = None
        for sink in self.sinks:
            try:
                call(sink)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error


@dataclass
class CaptureSink(AudioSink):
    """A public in-memory sink for tests and small tools: keeps every frame and gap."""

    wants_pcm: bool = False
    frames: list[AudioFrame] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def write(self, frame: AudioFrame) -> None:
        with self._lock:
            self.frames.append(frame)

    def gap(self, gap: Gap) -> None:
        with self._lock:
            self.gaps.append(gap)

    def close(self) -> None:
        self.closed = True

    def by_user(self) -> dict[int, list[AudioFrame]]:
        """Frames grouped by user id, each list in arrival (= RTP) order."""
        out: dict[int, list[AudioFrame]] = {}
        with self._lock:
            for f in self.frames:
                out.setdefault(f.user_id, []).append(f)
        return out
