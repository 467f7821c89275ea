"""Utterances cut on the receive side: each speaker's packets between pauses.

Discord clients stop sending a few silence frames (``F8 FF FE``) after their speaker goes
quiet, while the RTP clock runs on; so a pause shows in the packets as silence frames, a
jump in the speaker's place on the meeting clock, and no arrivals. Nothing is decoded
here: an utterance is the speaker's Opus packets with their places, handed on when it
ends, and only the transcription worker decodes it.

Where an utterance ends:

* ``pause``: the speaker's next speech starts ``pause_s`` or more after the end of their
  last speech (silence frames are not speech), or no speech has *arrived* for ``pause_s``
  (:meth:`UtteranceCutter.tick`; this is what lets the last words of a turn go to the
  transcriber while nobody else talks);
* ``max-length``: an utterance reaching ``max_utterance_s`` is split at its quietest
  point after ``min_split_s``: the longest pause inside it if there is one of at least
  ``split_gap_s``, else the ``quiet_window_s`` window whose packets are smallest (Opus is
  variable-bitrate: quiet frames encode small, so packet size stands in for loudness
  without decoding). The rest carries on as the next utterance: an open mic that never
  pauses is cut into pieces, never dropped;
* ``reconnect``: the connection dropped (the RTP clock restarts after it);
* ``close``: capture ended.

Places come from :class:`~notetaker.recorder.placement.Placer`, the recorder's own rule,
run on the same frames: an utterance starts exactly where its first packet lies in the
speaker's track, so a backlog can wait as packet ranges of the track, and
:func:`cut_track` cuts a recorded track into the same utterances again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from notetaker.errors import ConfigError
from notetaker.recorder.ogg import opus_packet_samples
from notetaker.recorder.ogg_read import TrackPacket
from notetaker.recorder.placement import Placer
from notetaker.recorder.track import RecorderConfig
from notetaker.sink import OPUS_SILENCE, SAMPLE_RATE, AudioFrame, AudioSink, Gap

#: Splitting a too-long utterance looks for its quietest point after this (seconds).
DEFAULT_MIN_SPLIT_S = 10.0

#: A packet as an utterance holds it: its place on the meeting clock and its bytes.
Packet = tuple[int, bytes]


@dataclass(frozen=True, slots=True)
class CutterConfig:
    """Where utterances end (see the module docstring); seconds."""

    pause_s: float = 0.6
    max_utterance_s: float = 30.0
    min_split_s: float = DEFAULT_MIN_SPLIT_S
    split_gap_s: float = 0.1
    quiet_window_s: float = 0.2

    def __post_init__(self) -> None:
        if not 0.1 <= self.pause_s <= 10:
            raise ConfigError("live.pause_s must be between 0.1 and 10 seconds")
        if not 2 <= self.max_utterance_s <= 120:
            raise ConfigError("live.max_utterance_s must be between 2 and 120 seconds")
        if not 0 < self.min_split_s < self.max_utterance_s:
            raise ConfigError("live.min_split_s must be between 0 and max_utterance_s")


@dataclass(frozen=True, slots=True)
class Utterance:
    """One speaker's speech between pauses.

    ``start``/``end``: 48 kHz samples on the meeting clock, from the start of the first
    packet to the end of the last speech packet. ``packets``: (place, Opus) in order;
    empty when the utterance waits as a range of the track (``spilled``).
    ``speech_samples``: samples of the packets that are not silence frames.
    """

    user_id: int
    seq: int
    start: int
    end: int
    packets: tuple[Packet, ...]
    speech_samples: int
    reason: str
    opus_bytes: int = 0
    spilled: bool = False

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE

    @property
    def speech_s(self) -> float:
        return self.speech_samples / SAMPLE_RATE


@dataclass(slots=True)
class _Open:
    """The utterance being built for one speaker."""

    packets: list[Packet] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  #: samples of each packet
    speech_end: int = 0  #: end of the last speech packet
    speech_samples: int = 0
    opus_bytes: int = 0
    last_speech_arrival: float = 0.0


def _part(packets: list[Packet], sizes: list[int]) -> _Open:
    """An open utterance holding ``packets`` (speech only)."""
    last = len(packets) - 1
    return _Open(
        packets,
        sizes,
        speech_end=packets[last][0] + sizes[last] if packets else 0,
        speech_samples=sum(sizes),
        opus_bytes=sum(len(opus) for _, opus in packets),
    )


#: Called with an ended utterance's packets, its builder state and why it ended.
_Emit = Callable[[list[Packet], "_Open", str], None]


class _Builder:
    """Turns one speaker's placed packets into utterances (shared by the live cutter and
    :func:`cut_track`)."""

    def __init__(self, user_id: int, config: CutterConfig, emit: _Emit) -> None:
        self.user_id = user_id
        self._pause = round(config.pause_s * SAMPLE_RATE)
        self._max = round(config.max_utterance_s * SAMPLE_RATE)
        self._min_split = round(config.min_split_s * SAMPLE_RATE)
        self._split_gap = round(config.split_gap_s * SAMPLE_RATE)
        self._window = max(1, round(config.quiet_window_s * 50))
        self._emit = emit
        self.open = _Open()

    def add(self, place: int, samples: int, opus: bytes, arrival: float) -> None:
        if opus == OPUS_SILENCE:
            # Not speech: the hole it leaves in the places is what the cut rules read,
            # and the decoder fills holes with silence.
            return
        cur = self.open
        if cur.packets and place - cur.speech_end >= self._pause:
            self.cut("pause")
            cur = self.open
        cur.packets.append((place, opus))
        cur.sizes.append(samples)
        cur.speech_end = place + samples
        cur.speech_samples += samples
        cur.opus_bytes += len(opus)
        cur.last_speech_arrival = arrival
        if cur.speech_end - cur.packets[0][0] >= self._max:
            self._split()

    def idle_since(self) -> float | None:
        """Arrival time of the open utterance's last speech, None if there is none."""
        return self.open.last_speech_arrival if self.open.packets else None

    def cut(self, reason: str) -> None:
        cur = self.open
        self.open = _Open()
        if cur.packets:
            self._emit(cur.packets, cur, reason)

    def _split(self) -> None:
        """Cut a too-long utterance at its quietest point after ``min_split``."""
        cur = self.open
        packets, sizes = cur.packets, cur.sizes
        start = packets[0][0]
        first = next(
            (i for i, (place, _) in enumerate(packets) if place - start >= self._min_split),
            len(packets) - 1,
        )
        at = self._longest_pause(first) or self._quietest(first)
        done = _part(packets[:at], sizes[:at])
        self.open = _part(packets[at:], sizes[at:])
        self.open.last_speech_arrival = cur.last_speech_arrival
        self._emit(done.packets, done, "max-length")

    def _longest_pause(self, first: int) -> int | None:
        """Index of the packet after the longest silence (gap or silence frames) at or
        after ``first``, if that silence is at least ``split_gap`` long."""
        packets, sizes = self.open.packets, self.open.sizes
        best, best_len = None, self._split_gap - 1
        for i in range(max(1, first), len(packets)):
            silence = packets[i][0] - (packets[i - 1][0] + sizes[i - 1])
            if silence > best_len:
                best, best_len = i, silence
        return best

    def _quietest(self, first: int) -> int:
        """Index of the packet in the middle of the quietest window at or after ``first``."""
        packets = self.open.packets
        n, w = len(packets), self._window
        if n - first <= w:
            return max(1, first)
        lengths = [len(opus) for _, opus in packets]
        total = sum(lengths[first : first + w])
        best, best_at = total, first
        for i in range(first + 1, n - w + 1):
            total += lengths[i + w - 1] - lengths[i - 1]
            if total < best:
                best, best_at = total, i
        return max(1, best_at + w // 2)


class UtteranceCutter(AudioSink):
    """The live sink: cuts every speaker's frames into :class:`Utterance` objects and
    hands each to ``emit`` as it ends (from the receive loop: ``emit`` must not block).

    ``started_at`` and ``recorder_config`` must be the recorder's, so that places match
    the tracks. Call :meth:`tick` a few times a second: it ends utterances whose speaker
    went quiet. Thread-safe: frames may come from a library's receive thread.
    """

    wants_pcm = False

    def __init__(
        self,
        emit: Callable[[Utterance], None],
        *,
        started_at: float,
        config: CutterConfig | None = None,
        recorder_config: RecorderConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or CutterConfig()
        self._recorder = recorder_config or RecorderConfig()
        self._emit = emit
        self._started_at = started_at
        self._clock = clock
        self._lock = threading.Lock()
        self._speakers: dict[int, tuple[Placer, _Builder]] = {}
        self._ignored: set[int] = set()
        self._seq = 0
        self.closed = False
        self.dropped = 0  #: packets placed before their predecessor (late, duplicate) or invalid
        self.emitted = 0

    def write(self, frame: AudioFrame) -> None:
        with self._lock:
            if self.closed or frame.user_id in self._ignored:
                return
            samples = opus_packet_samples(frame.opus)
            if samples == 0:
                self.dropped += 1
                return
            speaker = self._speakers.get(frame.user_id)
            if speaker is None:
                speaker = self._speakers[frame.user_id] = self._new_speaker(frame.user_id)
            placer, builder = speaker
            fill = placer.place(frame.rtp_timestamp, frame.arrival, frame.ssrc, samples)
            placer.events.clear()
            if fill < 0:
                self.dropped += 1
                return
            builder.add(placer.granule - samples, samples, frame.opus, frame.arrival)

    def gap(self, gap: Gap) -> None:
        if gap.reason != "reconnect":
            return  # a loss leaves a hole in the places; the cut rules see it there
        with self._lock:
            speaker = self._speakers.get(gap.user_id)
            if speaker is not None:
                speaker[0].reanchor("reconnect")
                speaker[1].cut("reconnect")

    def mark_reconnect(self) -> None:
        """The connection dropped and came back: end every utterance; the next packets
        are placed by their arrival, as the recorder does."""
        with self._lock:
            for placer, builder in self._speakers.values():
                placer.reanchor("reconnect")
                builder.cut("reconnect")

    def tick(self, now: float | None = None) -> None:
        """End the utterances of speakers whose last speech arrived ``pause_s`` ago."""
        now = self._clock() if now is None else now
        with self._lock:
            for _, builder in self._speakers.values():
                since = builder.idle_since()
                if since is not None and now - since >= self.config.pause_s:
                    builder.cut("pause")

    def drop_user(self, user_id: int) -> None:
        """Forget ``user_id`` (an opt-out): their open utterance is discarded."""
        with self._lock:
            self._ignored.add(user_id)
            self._speakers.pop(user_id, None)

    def close(self) -> None:
        """End every utterance (reason ``close``); later frames are ignored."""
        with self._lock:
            if self.closed:
                return
            for _, builder in self._speakers.values():
                builder.cut("close")
            self.closed = True

    def open_speech_s(self) -> float:
        """Seconds of speech in utterances not yet ended."""
        with self._lock:
            return sum(b.open.speech_samples for _, b in self._speakers.values()) / SAMPLE_RATE

    def _new_speaker(self, user_id: int) -> tuple[Placer, _Builder]:
        cfg = self._recorder
        placer = Placer(
            user_id, self._started_at, max_early_s=cfg.max_early_s, max_late_s=cfg.max_late_s
        )
        return placer, _Builder(user_id, self.config, self._emitter(user_id))

    def _emitter(self, user_id: int) -> _Emit:
        def emit(packets: list[Packet], done: _Open, reason: str) -> None:
            self._seq += 1
            self.emitted += 1
            self._emit(_utterance(user_id, self._seq, packets, done, reason))

        return emit


def _utterance(
    user_id: int, seq: int, packets: list[Packet], done: _Open, reason: str
) -> Utterance:
    return Utterance(
        user_id=user_id,
        seq=seq,
        start=packets[0][0],
        end=done.speech_end,
        packets=tuple(packets),
        speech_samples=done.speech_samples,
        reason=reason,
        opus_bytes=done.opus_bytes,
    )


def cut_track(
    user_id: int, packets: Iterable[TrackPacket], config: CutterConfig | None = None
) -> Iterator[Utterance]:
    """Cut a recorded track into utterances by the live cutter's rules (the silence the
    recorder wrote for pauses is what the live cutter saw as pauses)."""
    out: list[Utterance] = []
    seq = 0

    def emit(packets: list[Packet], done: _Open, reason: str) -> None:
        nonlocal seq
        seq += 1
        out.append(_utterance(user_id, seq, packets, done, reason))

    builder = _Builder(user_id, config or CutterConfig(), emit)
    for packet in packets:
        builder.add(packet.start, packet.samples, packet.opus, 0.0)
        yield from out
        out.clear()
    builder.cut("close")
    yield from out
