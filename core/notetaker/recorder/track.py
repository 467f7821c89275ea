"""One speaker's track: RTP timestamps onto the meeting clock, silence where nothing came.

Every track starts at the meeting start, so sample *n* of every track is the same
instant and tracks mix or transcribe side by side without offsets.

Placement, per packet (positions are 48 kHz samples since the meeting start):

* The first packet of a speaker is placed at its arrival offset from the meeting start,
  rounded to the 20 ms grid (so a late joiner starts at the right offset).
* A packet that follows the previous one without a hole (RTP timestamp advanced by the
  previous packet's duration, arrived within ``max_early_s``) goes right after it: the
  hot path, no clock arithmetic.
* Any other packet (after a pause, a loss, a stall) is placed by its RTP timestamp delta
  (u32, wrapping) from the anchor, unless the RTP clock cannot be trusted; then the
  anchor is re-taken from the arrival time. That is when the SSRC changed, a reconnect
  was reported, the packet would be placed more than ``max_early_s`` after its arrival
  (the anchor packet itself came late, or the sender's clock runs fast) or more than
  ``max_late_s`` before it (a new RTP base; a sender's clock running slow), or its RTP
  timestamp did not move over a pause (bots that stop their RTP clock while silent).
  Re-anchoring happens at such a boundary only, so it never cuts into continuous speech.
* Time between the end of the last packet and the next one's place is filled with Opus
  silence packets (``F8 FF FE``, 20 ms each). A granule jump would not do: decoders play
  the packets after a jump straight on (see :mod:`notetaker.recorder.ogg`), which would
  pull everything after a gap out of line.
* A packet placed before the end of the last one (after a re-anchor) is written right
  after it; alignment recovers at the speaker's next pause. A packet whose RTP timestamp
  is up to ``max_late_s`` older than the last one's (or equal) is a duplicate or came too
  late, and is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from notetaker.errors import RecordingError
from notetaker.recorder.ogg import OggOpusWriter, opus_packet_samples
from notetaker.recorder.timeline import TimelineEvent
from notetaker.sink import OPUS_SILENCE, SAMPLE_RATE, SAMPLES_PER_FRAME

MAX_FLUSH_SECONDS: Final = 2.0
#: What one Ogg page can carry whole; no valid Opus packet comes near it.
MAX_PACKET_BYTES: Final = 255 * 255 - 1


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """How tracks are paged and flushed, and when an RTP clock is re-anchored.

    ``page_seconds`` bounds the audio a page holds (and so what a crash can lose);
    ``flush_interval_s`` bounds, in wall-clock time, how long a partial page waits (a
    speaker who stops mid-page); ``fsync`` also survives power loss, at the cost of a
    disk sync per page on the receive path (milliseconds each). ``max_early_s`` and
    ``max_late_s``: see :mod:`notetaker.recorder.track`.
    """

    max_packets_per_page: int = 50
    page_seconds: float = 1.0
    flush_interval_s: float = 1.0
    fsync: bool = False
    max_early_s: float = 0.2
    max_late_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.page_seconds <= MAX_FLUSH_SECONDS:
            raise RecordingError(f"page_seconds must be in (0, {MAX_FLUSH_SECONDS}]")
        if not 0 < self.flush_interval_s <= MAX_FLUSH_SECONDS:
            raise RecordingError(f"flush_interval_s must be in (0, {MAX_FLUSH_SECONDS}]")
        if not 1 <= self.max_packets_per_page <= 255:
            raise RecordingError("max_packets_per_page must be in 1..255")
        if not 0 < self.max_early_s <= self.max_late_s:
            raise RecordingError("need 0 < max_early_s <= max_late_s")


def _signed32(delta: int) -> int:
    delta &= 0xFFFF_FFFF
    return delta - 0x1_0000_0000 if delta >= 0x8000_0000 else delta


class Track:
    """Writes one speaker's Ogg Opus file. Not thread-safe: the recorder serialises calls.

    ``events`` collects what the recorder should put on the timeline; the recorder takes
    them out after each call.
    """

    def __init__(
        self,
        path: Path,
        *,
        user_id: int,
        meeting_start: float,
        config: RecorderConfig,
        comments: list[str] | None = None,
    ) -> None:
        self.path = path
        self.user_id = user_id
        self._start = meeting_start
        self._max_early_s = config.max_early_s
        self._max_early = config.max_early_s * SAMPLE_RATE
        self._max_late = config.max_late_s * SAMPLE_RATE
        # "xb": a track is never silently overwritten; one meeting id, one set of files.
        file = path.open("xb")
        try:
            self._writer = OggOpusWriter(
                file,
                serial=user_id,
                comments=comments,
                max_packets=config.max_packets_per_page,
                page_samples=round(config.page_seconds * SAMPLE_RATE),
                fsync=config.fsync,
            )
        except BaseException:
            file.close()
            raise
        #: end of the last packet written (pending or not), in samples since meeting start.
        self.granule = 0
        self.first_ms: int | None = None
        self._ssrc = -1
        self._anchor_rtp = 0
        self._anchor_granule = 0
        self._last_rtp = 0
        self._last_samples = 0
        self._last_arrival = 0.0
        self._reanchor: str | None = "join"
        self.pending_since: float | None = None
        self.packets = 0
        self.silence_packets = 0
        self.dropped = 0
        self.lost = 0
        self.reanchors = 0
        self.events: list[TimelineEvent] = []

    @property
    def flushed_granule(self) -> int:
        """Samples written out in whole pages: what a crash right now would keep."""
        return self._writer.flushed_granule

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._writer.closed

    def reanchor(self, reason: str) -> None:
        """Place the next packet by its arrival time (a reconnect: the RTP base may change)."""
        if self._reanchor is None:
            self._reanchor = reason

    def write(self, rtp_timestamp: int, arrival: float, opus: bytes, ssrc: int) -> None:
        """Place one packet on the meeting clock and queue it for its page."""
        samples = opus_packet_samples(opus)
        if samples == 0 or len(opus) > MAX_PACKET_BYTES:
            self.dropped += 1  # not an Opus packet: counted, never fatal to the track
            return
        step = (rtp_timestamp - self._last_rtp) & 0xFFFF_FFFF
        if (
            step == self._last_samples
            and ssrc == self._ssrc
            and self._reanchor is None
            and arrival - self._last_arrival < self._max_early_s
        ):
            target = self.granule  # the hot path: the next packet of continuous speech
        else:
            target = self._place(rtp_timestamp, arrival, ssrc, _signed32(step))
            if target < 0:
                self.dropped += 1
                return
        self._last_rtp = rtp_timestamp
        self._last_samples = samples
        self._last_arrival = arrival
        writer = self._writer
        if writer.pending == 0:
            self.pending_since = arrival
        silence = target - self.granule
        if silence >= SAMPLES_PER_FRAME // 2:
            count = (silence + SAMPLES_PER_FRAME // 2) // SAMPLES_PER_FRAME
            writer.add_repeated(OPUS_SILENCE, SAMPLES_PER_FRAME, count)
            self.granule += count * SAMPLES_PER_FRAME
            self.silence_packets += count
        self.granule += samples
        self.packets += 1
        if writer.add(opus, self.granule) and writer.pending == 0:
            self.pending_since = None

    def _place(self, rtp_timestamp: int, arrival: float, ssrc: int, step: int) -> int:
        """Where a packet that does not simply continue the last one goes; -1: drop it."""
        arrival_pos = (arrival - self._start) * SAMPLE_RATE
        if self._reanchor is not None or ssrc != self._ssrc:
            return self._anchor(rtp_timestamp, arrival_pos, ssrc, self._reanchor or "ssrc-change")
        if -self._max_late <= step <= 0:
            return -1  # a duplicate or an old packet
        target = self._anchor_granule + _signed32(rtp_timestamp - self._anchor_rtp)
        early = target - arrival_pos
        if early > self._max_early:
            return self._anchor(rtp_timestamp, arrival_pos, ssrc, "rtp-ahead")
        if -early > self._max_late:
            return self._anchor(rtp_timestamp, arrival_pos, ssrc, "rtp-behind")
        if step == self._last_samples and -early > self._max_early:
            return self._anchor(rtp_timestamp, arrival_pos, ssrc, "rtp-paused")
        return target

    def _anchor(self, rtp_timestamp: int, arrival_pos: float, ssrc: int, reason: str) -> int:
        # The 20 ms grid keeps silence fills whole frames; the error is at most 10 ms.
        frames = max(0, round(arrival_pos / SAMPLES_PER_FRAME))
        target = frames * SAMPLES_PER_FRAME
        at_ms = target * 1000 // SAMPLE_RATE
        if reason == "join" and self.first_ms is None:
            self.first_ms = at_ms
            self.events.append(TimelineEvent("join", self.user_id, at_ms))
        else:
            self.reanchors += 1
            skipped_ms = max(0, target - self.granule) * 1000 // SAMPLE_RATE
            self.events.append(TimelineEvent("reanchor", self.user_id, at_ms, skipped_ms, reason))
        self._reanchor = None
        self._ssrc = ssrc
        self._anchor_rtp = rtp_timestamp
        self._anchor_granule = target
        return target

    def flush_due(self, now: float, interval: float) -> bool:
        """Write the partial page if its first packet arrived ``interval`` ago or more."""
        since = self.pending_since
        if since is None or now - since < interval:
            return False
        self.pending_since = None
        return self._writer.flush()

    def flush(self) -> None:
        """Write the partial page now."""
        self.pending_since = None
        self._writer.flush()

    def close(self) -> None:
        """End the stream (end-of-stream page) and close the file."""
        self.pending_since = None
        self._writer.close()
