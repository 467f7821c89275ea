"""Ogg pages for Ogg Opus (RFC 3533, RFC 7845), written as packets arrive.

The recorder never decodes or re-encodes: each Opus packet a speaker's client sent is
laced into an Ogg page as it is. :class:`OggOpusWriter` holds the packets of the page
being built and writes the page out when it is full, when it holds ``page_samples`` of
audio, or when the caller asks (the wall-clock flush). Every page is written with one
``write`` and flushed to the kernel, so a process killed with SIGKILL leaves a stream that
decodes up to its last whole page; ``fsync`` additionally survives a power cut.

Header choices (documented because they decide how tracks line up):

* ``channels = 2``: Discord's Opus is stereo; a decoder honours the packets' own
  mono/stereo coding either way.
* ``pre-skip = 0``: sample *n* of a decoded track is meeting time ``n / 48000`` exactly.
  Every speaker's encoder has the same look-ahead (312 samples, 6.5 ms, for libopus), so
  a pre-skip would shift all tracks alike and buy nothing for alignment, while 0 keeps
  the arithmetic (granule == meeting samples) exact. The only cost is that a decoded
  track lags its speaker's microphone by the encoder's look-ahead.
* ``input sample rate = 48000``, output gain 0, channel mapping family 0.

Granule positions are 48 kHz samples since the meeting start. RFC 7845 lets a granule
position skip samples only to trim the end of the last page; decoders (checked with
ffmpeg 5.1 / PyAV 18) ignore a granule jump in the middle of a stream and play the
following packets straight on, so silence is written as real Opus silence packets (see
:mod:`notetaker.recorder.track`), never as a jump.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import TYPE_CHECKING, BinaryIO, Final

from notetaker.errors import RecordingError

if TYPE_CHECKING:
    from notetaker.recorder.ogg_tail import StreamEnd

#: The generator polynomial of the Ogg CRC (RFC 3533): CRC-32, MSB first, init 0, no xorout.
OGG_CRC_POLY: Final = 0x04C11DB7
SAMPLE_RATE: Final = 48_000
#: Most lacing values one page can carry (the segment count is one byte).
MAX_SEGMENTS: Final = 255
# Packets are never split across pages (no "continued" flag): one page carries up to
# 255 * 255 - 1 bytes, far more than any Opus packet (at most 1275 bytes per frame).
FLAG_BOS: Final = 0x02
FLAG_EOS: Final = 0x04


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        reg = byte << 24
        for _ in range(8):
            reg = ((reg << 1) ^ OGG_CRC_POLY) if reg & 0x8000_0000 else (reg << 1)
        table.append(reg & 0xFFFF_FFFF)
    return tuple(table)


CRC_TABLE: Final = _crc_table()


def crc32_ogg_reference(data: bytes, crc: int = 0) -> int:
    """The Ogg CRC, table-driven, one byte at a time: the definition the fast path matches."""
    table = CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF_FFFF) ^ table[(crc >> 24) ^ byte]
    return crc


# zlib computes the bit-reflected CRC-32 with the same polynomial. Reflecting every input
# byte, undoing zlib's init/xorout and reflecting the 32-bit result gives the Ogg CRC at C
# speed; this matters when a long silence is written as thousands of pages at once.
_REFLECT8: Final = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _reflect32(value: int) -> int:
    r = _REFLECT8
    return (
        (r[value & 0xFF] << 24)
        | (r[(value >> 8) & 0xFF] << 16)
        | (r[(value >> 16) & 0xFF] << 8)
        | r[value >> 24]
    )


def crc32_ogg(data: bytes) -> int:
    """The Ogg page CRC of ``data`` (the page with its CRC field zeroed)."""
    return _reflect32(zlib.crc32(data.translate(_REFLECT8), 0xFFFF_FFFF) ^ 0xFFFF_FFFF)


_PAGE_HEADER = struct.Struct("<4sBBqIII")  # capture, version, flags, granule, serial, seq, crc


def build_page(
    packets: list[bytes], *, granule: int, serial: int, sequence: int, flags: int = 0
) -> bytes:
    """One Ogg page holding ``packets`` whole (the caller keeps within 255 segments)."""
    lacing = bytearray()
    for packet in packets:
        full, rest = divmod(len(packet), 255)
        if full:
            lacing += b"\xff" * full
        lacing.append(rest)
    if len(lacing) > MAX_SEGMENTS:
        raise RecordingError(f"{len(lacing)} lacing values do not fit one Ogg page")
    header = _PAGE_HEADER.pack(b"OggS", 0, flags, granule, serial, sequence, 0)
    page = bytearray(header)
    page.append(len(lacing))
    page += lacing
    for packet in packets:
        page += packet
    crc = crc32_ogg(bytes(page))
    page[22:26] = crc.to_bytes(4, "little")
    return bytes(page)


def opus_head(*, channels: int = 2, pre_skip: int = 0, input_rate: int = SAMPLE_RATE) -> bytes:
    """The OpusHead identification header (RFC 7845 5.1), mapping family 0."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)


def opus_tags(vendor: str, comments: list[str]) -> bytes:
    """The OpusTags comment header (RFC 7845 5.2)."""
    out = bytearray(b"OpusTags")
    raw_vendor = vendor.encode()
    out += struct.pack("<I", len(raw_vendor)) + raw_vendor
    out += struct.pack("<I", len(comments))
    for comment in comments:
        raw = comment.encode()
        out += struct.pack("<I", len(raw)) + raw
    return bytes(out)


# Frame size in samples at 48 kHz per TOC configuration (RFC 6716 3.1): SILK 10/20/40/60,
# hybrid 10/20, CELT 2.5/5/10/20 ms.
_CONFIG_SAMPLES: Final = (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4
OPUS_SAMPLES_BY_TOC: Final = tuple(_CONFIG_SAMPLES[toc >> 3] for toc in range(256))


def opus_packet_samples(packet: bytes) -> int:
    """Samples (at 48 kHz) one Opus packet decodes to; 0 if it is not a valid packet."""
    if not packet:
        return 0
    toc = packet[0]
    code = toc & 0x03
    if code == 0:
        return OPUS_SAMPLES_BY_TOC[toc]
    if code != 3:
        return 2 * OPUS_SAMPLES_BY_TOC[toc]
    if len(packet) < 2:
        return 0
    total = (packet[1] & 0x3F) * OPUS_SAMPLES_BY_TOC[toc]
    return total if 0 < total <= 5760 else 0  # RFC 6716: at most 120 ms per packet


class OggOpusWriter:
    """Writes one logical Ogg Opus stream to ``file`` page by page.

    Call :meth:`add` per packet with the granule position (samples since the meeting
    start) at the *end* of that packet. A page is written when it reaches
    ``max_packets`` packets, 255 lacing values, or ``page_samples`` samples; call
    :meth:`flush` to write the partial page now and :meth:`close` to end the stream.
    :meth:`resume` continues a stream an earlier process left without its end.
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        serial: int,
        vendor: str = "notetaker",
        comments: list[str] | None = None,
        channels: int = 2,
        pre_skip: int = 0,
        max_packets: int = 50,
        page_samples: int = 48_000,
        fsync: bool = False,
    ) -> None:
        self._setup(file, serial, max_packets, page_samples, fsync)
        head = build_page(
            [opus_head(channels=channels, pre_skip=pre_skip)], **self._next(0, FLAG_BOS)
        )
        tags = build_page([opus_tags(vendor, comments or [])], **self._next(0, 0))
        self._write(head + tags)

    @classmethod
    def resume(
        cls,
        file: BinaryIO,
        end: StreamEnd,
        *,
        max_packets: int = 50,
        page_samples: int = 48_000,
        fsync: bool = False,
    ) -> OggOpusWriter:
        """A writer that continues the stream ``end`` describes (a restarted bot): no
        header pages, the next page sequence number, granules from ``end.granule``.

        ``file`` must be positioned at ``end.length`` with nothing after it (see
        :func:`~notetaker.recorder.ogg_tail.repair_file`). Raises
        :class:`RecordingError` for a stream that already ended.
        """
        if end.eos:
            raise RecordingError("the stream already ended (end-of-stream page)")
        writer = cls.__new__(cls)
        writer._setup(file, end.serial, max_packets, page_samples, fsync)
        writer._sequence = end.next_sequence
        writer._last_granule = end.granule
        writer._built_granule = end.granule
        writer.flushed_granule = end.granule
        return writer

    def _setup(
        self, file: BinaryIO, serial: int, max_packets: int, page_samples: int, fsync: bool
    ) -> None:
        if not 1 <= max_packets <= MAX_SEGMENTS:
            raise RecordingError(f"max_packets must be 1..{MAX_SEGMENTS}, got {max_packets}")
        self._file = file
        self.serial = serial & 0xFFFF_FFFF
        self._fsync = fsync
        self._max_packets = max_packets
        self._page_samples = page_samples
        self._sequence = 0
        self._packets: list[bytes] = []
        self._segments = 0
        self._page_start = 0
        self._last_granule = 0
        #: granule position of the last page written (what survives a crash).
        self.flushed_granule = 0
        # The last page built; it becomes flushed_granule once its write succeeded, so
        # that a write error (disk full) leaves flushed_granule where the file ends.
        self._built_granule = 0
        self.pages_written = 0
        self.closed = False

    @property
    def pending(self) -> int:
        """Packets waiting for the page being built."""
        return len(self._packets)

    def _next(self, granule: int, flags: int) -> dict[str, int]:
        seq = self._sequence
        self._sequence += 1
        return {"granule": granule, "serial": self.serial, "sequence": seq, "flags": flags}

    def _append(self, packet: bytes, granule: int, segments: int) -> bool:
        """Queue one packet; True when the page is now full and must be written."""
        if not self._packets:
            self._page_start = self._last_granule
        self._packets.append(packet)
        self._segments += segments
        self._last_granule = granule
        return (
            len(self._packets) >= self._max_packets
            or granule - self._page_start >= self._page_samples
        )

    def add(self, packet: bytes, granule: int) -> bool:
        """Queue ``packet`` ending at ``granule``; True if a page was written.

        Raises :class:`RecordingError` for a packet too large for one page.
        """
        segments = len(packet) // 255 + 1
        if segments > MAX_SEGMENTS:
            raise RecordingError(f"Opus packet of {len(packet)} bytes is too large")
        wrote = False
        if self._segments + segments > MAX_SEGMENTS:
            self._page_out(0)
            wrote = True
        if self._append(packet, granule, segments):
            self._page_out(0)
            wrote = True
        return wrote

    def add_repeated(self, packet: bytes, samples: int, count: int) -> None:
        """Queue ``count`` copies of a short ``packet`` of ``samples`` each (silence).

        Whole pages of copies are built from one template, and everything that closes is
        written at once: an hour of silence costs milliseconds, not a stall of the
        receive loop.
        """
        if count <= 0:
            return
        if len(packet) >= 255:
            raise RecordingError("a repeated packet must be shorter than 255 bytes")
        out = bytearray()
        granule = self._last_granule
        if self._segments + 1 > MAX_SEGMENTS:
            out += self._build(0)
        while count and self._packets:
            granule += samples
            count -= 1
            if self._append(packet, granule, 1):
                out += self._build(0)
        per_page = min(self._max_packets, MAX_SEGMENTS, -(-self._page_samples // samples))
        full, rest = divmod(count, per_page)
        body = bytes((per_page,)) + bytes((len(packet),)) * per_page + packet * per_page
        for _ in range(full):
            granule += per_page * samples
            header = _PAGE_HEADER.pack(b"OggS", 0, 0, granule, self.serial, self._sequence, 0)
            self._sequence += 1
            crc = crc32_ogg(header + body)
            out += header[:22] + crc.to_bytes(4, "little") + body
            self.pages_written += 1
        if full:
            self._last_granule = granule
            self._built_granule = granule
        for _ in range(rest):
            granule += samples
            self._append(packet, granule, 1)
        if out:
            self._write(bytes(out))

    def _build(self, flags: int) -> bytes:
        page = build_page(self._packets, **self._next(self._last_granule, flags))
        self._packets = []
        self._segments = 0
        self._built_granule = self._last_granule
        self.pages_written += 1
        return page

    def _page_out(self, flags: int) -> bytes:
        page = self._build(flags)
        self._write(page)
        return page

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self.flushed_granule = self._built_granule

    def flush(self) -> bool:
        """Write the partial page now (the wall-clock flush). True if one was written."""
        if not self._packets or self.closed:
            return False
        self._page_out(0)
        return True

    def close(self) -> None:
        """Write the last page with the end-of-stream flag and close the file."""
        if self.closed:
            return
        self.closed = True
        try:
            # An EOS page may carry no packet; its granule then repeats the last one.
            self._page_out(FLAG_EOS)
        finally:
            self._file.close()
