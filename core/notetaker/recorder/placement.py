"""Where one speaker's packets go on the meeting clock: RTP timestamps onto sample positions.

Every track starts at the meeting start, so sample *n* of every track is the same
instant. :class:`Placer` is the pure rule that decides each packet's position; the
recorder's :class:`~notetaker.recorder.track.Track` writes packets where it says, and the
live path's utterance cutter runs its own :class:`Placer` on the same frames, so an
utterance's start on the meeting clock is exactly where its first packet lies in the
track (a transcript line plays from the right moment of the file).

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
* Time between the end of the last packet and the next one's place is filled with whole
  20 ms frames of silence (the track writes Opus silence packets there).
* A placer that continues a track an earlier process wrote (:meth:`Placer.continue_at`)
  places its first packet by its arrival time too, as after a reconnect.
* A packet placed before the end of the last one (after a re-anchor) is placed right
  after it; alignment recovers at the speaker's next pause. A packet whose RTP timestamp
  is up to ``max_late_s`` older than the last one's (or equal) is a duplicate or came too
  late, and is dropped.
"""

from __future__ import annotations

from notetaker.recorder.timeline import TimelineEvent
from notetaker.sink import SAMPLE_RATE, SAMPLES_PER_FRAME


def _signed32(delta: int) -> int:
    delta &= 0xFFFF_FFFF
    return delta - 0x1_0000_0000 if delta >= 0x8000_0000 else delta


class Placer:
    """Places one speaker's packets. Not thread-safe: its owner serialises calls.

    ``events`` collects ``join`` and ``reanchor`` timeline events; the owner takes them
    out after each call.
    """

    __slots__ = (
        "_anchor_granule",
        "_anchor_rtp",
        "_last_arrival",
        "_last_rtp",
        "_last_samples",
        "_max_early",
        "_max_early_s",
        "_max_late",
        "_reanchor",
        "_ssrc",
        "_start",
        "dropped",
        "events",
        "first_ms",
        "granule",
        "reanchors",
        "silence_frames",
        "user_id",
    )

    def __init__(
        self, user_id: int, meeting_start: float, *, max_early_s: float, max_late_s: float
    ) -> None:
        self.user_id = user_id
        self._start = meeting_start
        self._max_early_s = max_early_s
        self._max_early = max_early_s * SAMPLE_RATE
        self._max_late = max_late_s * SAMPLE_RATE
        #: end of the last packet placed, in samples since the meeting start.
        self.granule = 0
        self.first_ms: int | None = None
        self._ssrc = -1
        self._anchor_rtp = 0
        self._anchor_granule = 0
        self._last_rtp = 0
        self._last_samples = 0
        self._last_arrival = 0.0
        self._reanchor: str | None = "join"
        self.dropped = 0
        self.reanchors = 0
        self.silence_frames = 0
        self.events: list[TimelineEvent] = []

    def reanchor(self, reason: str) -> None:
        """Place the next packet by its arrival time (a reconnect: the RTP base may change)."""
        if self._reanchor is None:
            self._reanchor = reason

    def continue_at(self, granule: int, reason: str) -> None:
        """Continue after audio that ends at ``granule`` (a track an earlier process
        wrote): the next packet is placed by its arrival time, with a ``reanchor`` event
        saying ``reason``, and silence fills from ``granule`` up to it.

        The speaker joined before, in the earlier process's timeline, so no ``join``
        follows; :attr:`first_ms` becomes the continuation point, the earliest this
        placer knows of them.
        """
        self.granule = granule
        if self.first_ms is None:
            self.first_ms = granule * 1000 // SAMPLE_RATE
        self._ssrc = -1
        self._reanchor = reason

    def place(self, rtp_timestamp: int, arrival: float, ssrc: int, samples: int) -> int:
        """Place a packet of ``samples`` samples: how many 20 ms silence frames go before
        it, or -1 to drop it. After a call that did not drop, the packet occupies
        ``[granule - samples, granule)``."""
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
                return -1
        self._last_rtp = rtp_timestamp
        self._last_samples = samples
        self._last_arrival = arrival
        silence = target - self.granule
        fill = 0
        if silence >= SAMPLES_PER_FRAME // 2:
            fill = (silence + SAMPLES_PER_FRAME // 2) // SAMPLES_PER_FRAME
            self.granule += fill * SAMPLES_PER_FRAME
            self.silence_frames += fill
        self.granule += samples
        return fill

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
