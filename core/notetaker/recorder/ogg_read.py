"""Reading a recorded track back as Opus packets with their place on the meeting clock.

The live path keeps a backlog of utterances as packet ranges of the tracks (not audio in
memory), and ``notetaker transcribe`` re-cuts a meeting from its tracks; both read the
packets here, without decoding. Granule positions are 48 kHz samples since the meeting
start (:mod:`notetaker.recorder.ogg`), so a packet's place is its page's granule minus
the samples of the packets after it on that page.

A track may be read while the recorder still appends to it, or after a crash cut it
short: reading stops at the first page that is incomplete or fails its CRC, which is
exactly the audio a crash would keep.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from notetaker.errors import RecordingError
from notetaker.recorder.ogg import crc32_ogg, opus_packet_samples

_HEADER: Final = struct.Struct("<4sBBqIII")  # capture, version, flags, granule, serial, seq, crc
_HEADER_SIZE: Final = _HEADER.size + 1  # plus the segment count


@dataclass(frozen=True, slots=True)
class TrackPacket:
    """One Opus packet of a track: it covers ``[start, start + samples)`` (48 kHz)."""

    start: int
    samples: int
    opus: bytes

    @property
    def end(self) -> int:
        return self.start + self.samples


@dataclass(slots=True)
class _Page:
    offset: int
    size: int
    granule: int  #: end of the last packet completed on the page


@dataclass
class TrackReader:
    """Reads one track file; remembers the pages it has seen, so reading a range late in
    a long track does not rescan it from the start."""

    path: Path
    _pages: list[_Page] = field(default_factory=list)
    _granules: list[int] = field(default_factory=list)
    _scanned: int = 0  #: file offset up to which pages are known
    _headers: int = 0  #: header packets (OpusHead, OpusTags) seen so far

    def packets(self, start: int = 0, end: int | None = None) -> Iterator[TrackPacket]:
        """Packets that overlap ``[start, end)`` in order (``end`` None: to the end of
        what is written)."""
        try:
            with self.path.open("rb") as file:
                self._scan(file, end)
                first = bisect.bisect_right(self._granules, start)
                for page in self._pages[first:]:
                    for packet in self._read_page(file, page):
                        if end is not None and packet.start >= end:
                            return
                        if packet.end > start:
                            yield packet
        except OSError as exc:
            raise RecordingError(f"cannot read track {self.path}: {exc}") from exc

    @property
    def end(self) -> int:
        """End of the audio on the pages read so far (call :meth:`refresh` to look again)."""
        return self._granules[-1] if self._granules else 0

    def refresh(self) -> int:
        """Scan pages written since the last look; the track's end."""
        try:
            with self.path.open("rb") as file:
                self._scan(file, None)
        except OSError as exc:
            raise RecordingError(f"cannot read track {self.path}: {exc}") from exc
        return self.end

    def _scan(self, file: BinaryIO, until: int | None) -> None:
        """Index whole, valid pages from where the last scan stopped."""
        while until is None or not self._granules or self._granules[-1] < until:
            file.seek(self._scanned)
            head = file.read(_HEADER_SIZE)
            if len(head) < _HEADER_SIZE:
                return
            capture, version, _flags, granule, _serial, _seq, crc = _HEADER.unpack_from(head)
            if capture != b"OggS" or version != 0:
                return
            lacing = file.read(head[-1])
            if len(lacing) < head[-1]:
                return
            body_size = sum(lacing)
            body = file.read(body_size)
            if len(body) < body_size:
                return
            page = bytearray(head + lacing + body)
            page[22:26] = b"\0\0\0\0"
            if crc32_ogg(bytes(page)) != crc:
                return  # a torn write: the crash tail
            size = len(page)
            # The first two packets are OpusHead and OpusTags, never audio.
            if self._headers < 2:
                self._headers += sum(1 for v in lacing if v < 255)
            elif granule >= 0 and body_size:
                self._pages.append(_Page(self._scanned, size, granule))
                self._granules.append(granule)
            self._scanned += size

    @staticmethod
    def _read_page(file: BinaryIO, page: _Page) -> list[TrackPacket]:
        file.seek(page.offset)
        data = file.read(page.size)
        count = data[_HEADER_SIZE - 1]
        lacing = data[_HEADER_SIZE : _HEADER_SIZE + count]
        pos = _HEADER_SIZE + count
        raw: list[bytes] = []
        size = 0
        for value in lacing:
            size += value
            if value < 255:
                raw.append(data[pos : pos + size])
                pos += size
                size = 0
        out: list[TrackPacket] = []
        cursor = page.granule
        for opus in reversed(raw):
            samples = opus_packet_samples(opus)
            cursor -= samples
            out.append(TrackPacket(cursor, samples, opus))
        out.reverse()
        return out
