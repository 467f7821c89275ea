"""One speaker's track: packets written where the meeting clock puts them, silence where
nothing came.

Every track starts at the meeting start, so sample *n* of every track is the same
instant and tracks mix or transcribe side by side without offsets. Where each packet goes
is :class:`~notetaker.recorder.placement.Placer`'s decision (its module says how); the
track writes it there, after Opus silence packets (``F8 FF FE``, 20 ms each) for the time
between. A granule jump would not do: decoders play the packets after a jump straight on
(see :mod:`notetaker.recorder.ogg`), which would pull everything after a gap out of line.

A restarted bot continues a track its killed process left (:meth:`Track.resume`): same
file, same logical stream, and the time nobody recorded becomes the same silence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from notetaker.errors import RecordingError
from notetaker.recorder.ogg import OggOpusWriter, opus_packet_samples
from notetaker.recorder.ogg_tail import repair_file
from notetaker.recorder.placement import Placer
from notetaker.recorder.timeline import TimelineEvent
from notetaker.sink import OPUS_SILENCE, SAMPLE_RATE, SAMPLES_PER_FRAME

MAX_FLUSH_SECONDS: Final = 2.0
#: What one Ogg page can carry whole; no valid Opus packet comes near it.
MAX_PACKET_BYTES: Final = 255 * 255 - 1


def open_new(path: Path) -> BinaryIO:
    """A new file for writing; "xb": a track is never silently overwritten (one meeting
    id, one set of files)."""
    return path.open("xb")


def open_existing(path: Path) -> BinaryIO:
    """An existing track to continue (``Track.resume``): read and written in place."""
    return path.open("r+b")


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """How tracks are paged and flushed, and when an RTP clock is re-anchored.

    ``page_seconds`` bounds the audio a page holds (and so what a crash can lose);
    ``flush_interval_s`` bounds, in wall-clock time, how long a partial page waits (a
    speaker who stops mid-page); ``fsync`` also survives power loss, at the cost of a
    disk sync per page on the receive path (milliseconds each). ``max_early_s`` and
    ``max_late_s``: see :mod:`notetaker.recorder.placement`.
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


class Track:
    """Writes one speaker's Ogg Opus file. Not thread-safe: the recorder serialises calls.

    ``events`` collects what the recorder should put on the timeline; the recorder takes
    them out after each call. ``opener`` makes the file (a seam for tests of write errors).
    :meth:`resume` continues a track an earlier process wrote.
    """

    def __init__(
        self,
        path: Path,
        *,
        user_id: int,
        meeting_start: float,
        config: RecorderConfig,
        comments: list[str] | None = None,
        opener: Callable[[Path], BinaryIO] = open_new,
    ) -> None:
        self._setup(path, user_id, meeting_start, config)
        file = opener(path)
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
            # Created here ("xb"), so ours to remove: a full disk must not leave a
            # headerless file that looks like a track.
            with contextlib.suppress(OSError):
                file.close()
            with contextlib.suppress(OSError):
                path.unlink()
            raise

    @classmethod
    def resume(
        cls,
        path: Path,
        *,
        user_id: int,
        meeting_start: float,
        config: RecorderConfig,
        reason: str = "restart",
        opener: Callable[[Path], BinaryIO] = open_existing,
    ) -> Track:
        """Continue the track an earlier process left at ``path`` (killed, so without its
        end-of-stream page) on the same meeting clock: a torn last page is cut off, pages
        follow in the same logical stream, and the next packet is placed by its arrival
        time (a ``reanchor`` event saying ``reason``) after silence from where the file's
        audio ends.

        Raises :class:`RecordingError` when the file is not a stream that can be
        continued (no whole Ogg Opus headers; ended with an end-of-stream page), and
        ``OSError`` when it cannot be opened (missing). The file is changed only when it
        can be continued.
        """
        track = cls.__new__(cls)
        track._setup(path, user_id, meeting_start, config)
        file = opener(path)
        try:
            # An ended stream is left as it is (repair_file does not cut it).
            end = repair_file(file, str(path), fsync=config.fsync)
            if end.eos:
                raise RecordingError(
                    f"cannot continue {path}: its stream already ended (it has its "
                    "end-of-stream page: the track was closed)"
                )
            track._writer = OggOpusWriter.resume(
                file,
                end,
                max_packets=config.max_packets_per_page,
                page_samples=round(config.page_seconds * SAMPLE_RATE),
                fsync=config.fsync,
            )
        except BaseException:
            with contextlib.suppress(OSError):
                file.close()
            raise
        track.torn_bytes = end.torn_bytes
        track.placer.continue_at(end.granule, reason)
        return track

    def _setup(
        self, path: Path, user_id: int, meeting_start: float, config: RecorderConfig
    ) -> None:
        self.path = path
        self.user_id = user_id
        self.placer = Placer(
            user_id, meeting_start, max_early_s=config.max_early_s, max_late_s=config.max_late_s
        )
        self.pending_since: float | None = None
        self.packets = 0
        self.invalid = 0
        self.lost = 0
        #: bytes of a torn last page cut off when the track was continued (resume).
        self.torn_bytes = 0

    @property
    def granule(self) -> int:
        """End of the last packet written (pending or not), in samples since meeting start."""
        return self.placer.granule

    @property
    def events(self) -> list[TimelineEvent]:
        return self.placer.events

    @property
    def first_ms(self) -> int | None:
        return self.placer.first_ms

    @property
    def silence_packets(self) -> int:
        return self.placer.silence_frames

    @property
    def dropped(self) -> int:
        """Packets not written: not Opus, duplicates, too late."""
        return self.invalid + self.placer.dropped

    @property
    def reanchors(self) -> int:
        return self.placer.reanchors

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
        self.placer.reanchor(reason)

    def write(self, rtp_timestamp: int, arrival: float, opus: bytes, ssrc: int) -> None:
        """Place one packet on the meeting clock and queue it for its page."""
        samples = opus_packet_samples(opus)
        if samples == 0 or len(opus) > MAX_PACKET_BYTES:
            self.invalid += 1  # not an Opus packet: counted, never fatal to the track
            return
        fill = self.placer.place(rtp_timestamp, arrival, ssrc, samples)
        if fill < 0:
            return
        writer = self._writer
        if writer.pending == 0:
            self.pending_since = arrival
        if fill:
            writer.add_repeated(OPUS_SILENCE, SAMPLES_PER_FRAME, fill)
        self.packets += 1
        if writer.add(opus, self.placer.granule) and writer.pending == 0:
            self.pending_since = None

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
