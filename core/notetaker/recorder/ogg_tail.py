"""Where a track written by :class:`~notetaker.recorder.ogg.OggOpusWriter` ends, so that a
restarted bot can continue it.

A process killed with SIGKILL leaves a track without its end-of-stream page, and its last
page may be torn (only part of its one ``write`` reached the file). Continuing the same
logical stream needs the serial, the next page sequence number and the granule position
the last whole page ended at; :func:`read_stream_end` finds them by checking every page
(capture pattern, CRC, serial, sequence), and :func:`repair_tail` cuts off what follows
the last whole page, so that the pages appended next follow it directly.

Only what the writer produces counts as a whole page: packets are never split across
pages, so a page flagged "continued", or whose last packet runs on into the next page,
ends the scan like a torn one does (a page appended after it would corrupt that packet).
The scan reads the file in chunks (a track of a long meeting is tens of megabytes); it is
done once, at a restart, never on the receive path.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from notetaker.errors import RecordingError
from notetaker.recorder.ogg import FLAG_BOS, FLAG_EOS, crc32_ogg

_HEADER: Final = struct.Struct("<4sBBqIII")  # capture, version, flags, granule, serial, seq, crc
_HEADER_SIZE: Final = _HEADER.size + 1  # plus the segment count
_FLAG_CONTINUED: Final = 0x01
#: Bytes read from the file at a time.
CHUNK_BYTES: Final = 1 << 20
#: An OpusHead packet of mapping family 0 (RFC 7845 5.1).
_OPUS_HEAD_BYTES: Final = 19


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The end of a track's logical stream as it is on disk.

    ``granule``: the granule position of the last whole page (samples since the meeting
    start where the audio on disk ends); ``next_sequence``: the sequence number the next
    page must carry; ``length``: bytes up to the end of the last whole, valid page;
    ``eos``: that page ends the stream (the track was closed); ``torn_bytes``: bytes after
    it (a torn page, garbage), which :func:`repair_tail` removes.
    """

    serial: int
    next_sequence: int
    granule: int
    length: int
    eos: bool
    torn_bytes: int


class _ChunkReader:
    """Exact-size reads from a file, served from chunks of :data:`CHUNK_BYTES`."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    def read(self, size: int) -> bytes | None:
        """The next ``size`` bytes, or None if the file ends first."""
        buf = self._buf
        if len(buf) - self._pos < size:
            del buf[: self._pos]
            self._pos = 0
            while len(buf) < size and not self._eof:
                chunk = self._file.read(max(CHUNK_BYTES, size - len(buf)))
                if not chunk:
                    self._eof = True
                buf += chunk
            if len(buf) < size:
                return None
        data = bytes(buf[self._pos : self._pos + size])
        self._pos += size
        return data


@dataclass(frozen=True, slots=True)
class _Page:
    flags: int
    granule: int
    serial: int
    sequence: int
    size: int
    packets: list[bytes]


def _next_page(reader: _ChunkReader) -> _Page | None:
    """The next page if it is whole, its CRC right and its packets whole; else None."""
    head = reader.read(_HEADER_SIZE)
    if head is None:
        return None
    capture, version, flags, granule, serial, sequence, crc = _HEADER.unpack_from(head)
    if capture != b"OggS" or version != 0 or flags & _FLAG_CONTINUED:
        return None
    lacing = reader.read(head[-1])
    if lacing is None or (lacing and lacing[-1] == 255):
        return None
    body = reader.read(sum(lacing))
    if body is None:
        return None
    if crc32_ogg(head[:22] + b"\0\0\0\0" + head[26:] + lacing + body) != crc:
        return None
    packets: list[bytes] = []
    pos = size = 0
    for value in lacing:
        size += value
        if value < 255:
            packets.append(body[pos : pos + size])
            pos += size
            size = 0
    return _Page(flags, granule, serial, sequence, len(head) + len(lacing) + len(body), packets)


def scan_stream_end(file: BinaryIO, name: str) -> StreamEnd:
    """:func:`read_stream_end` of an open file (read from its start; ``name`` is for
    messages). Leaves the file position anywhere."""
    file.seek(0)
    reader = _ChunkReader(file)
    head = _next_page(reader)
    if head is None:
        raise RecordingError(f"cannot continue {name}: it does not start with a whole Ogg page")
    if (
        not head.flags & FLAG_BOS
        or head.sequence != 0
        or len(head.packets) != 1
        or not head.packets[0].startswith(b"OpusHead")
        or len(head.packets[0]) < _OPUS_HEAD_BYTES
    ):
        raise RecordingError(
            f"cannot continue {name}: its first page is not an Ogg Opus identification "
            "header (OpusHead)"
        )
    serial = head.serial
    tags = _next_page(reader)
    if (
        tags is None
        or tags.serial != serial
        or tags.sequence != 1
        or tags.flags & (FLAG_BOS | FLAG_EOS)
        or len(tags.packets) != 1
        or not tags.packets[0].startswith(b"OpusTags")
    ):
        raise RecordingError(
            f"cannot continue {name}: no whole OpusTags comment page follows its OpusHead page"
        )
    length = head.size + tags.size
    sequence = 2
    granule = 0
    eos = False
    while True:
        page = _next_page(reader)
        if (
            page is None
            or page.serial != serial
            or page.sequence != sequence
            or page.flags & FLAG_BOS
            or (page.granule != -1 and page.granule < granule)
        ):
            break
        length += page.size
        sequence += 1
        if page.granule != -1:  # -1: no packet ends on the page
            granule = page.granule
        if page.flags & FLAG_EOS:
            eos = True
            break
    size = file.seek(0, os.SEEK_END)
    return StreamEnd(serial, sequence, granule, length, eos, max(0, size - length))


def read_stream_end(path: Path | str) -> StreamEnd:
    """Where the logical stream of the track at ``path`` ends on disk.

    Raises :class:`RecordingError` when the file is not an Ogg Opus stream this module
    can continue (no whole OpusHead and OpusTags pages), or cannot be read.
    """
    try:
        with Path(path).open("rb") as file:
            return scan_stream_end(file, str(path))
    except OSError as exc:
        raise RecordingError(f"cannot read track {path}: {exc}") from exc


def repair_file(file: BinaryIO, name: str, *, fsync: bool = False) -> StreamEnd:
    """Cut off what follows the last whole page of ``file`` (open "r+b") and leave its
    position there, ready for the next page. Returns the end as it was found:
    ``torn_bytes`` is what was cut off. A stream that ended (``eos``) is left as it is."""
    end = scan_stream_end(file, name)
    if end.torn_bytes and not end.eos:
        file.truncate(end.length)
        if fsync:
            file.flush()
            os.fsync(file.fileno())
    file.seek(end.length)
    return end


def repair_tail(path: Path | str) -> StreamEnd:
    """:func:`repair_file` of the track at ``path``: its torn tail truncated."""
    try:
        with Path(path).open("r+b") as file:
            return repair_file(file, str(path))
    except OSError as exc:
        raise RecordingError(f"cannot repair track {path}: {exc}") from exc
