"""RTP framing as Discord uses it (RFC 3550 header, RFC 8285 one-byte extensions).

Only the parts a voice receiver needs: the fixed header, CSRCs, the header-extension
preamble (whose *body* rtpsize modes encrypt with the payload), RTP padding, and the
one-byte extension elements. ``parse_*`` raise :class:`MalformedPacket` saying what was
wrong; ``serialize`` functions are their exact inverses, for round trips and senders.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from notetaker.errors import MalformedPacket

RTP_VERSION = 2
#: Discord's dynamic payload type for Opus.
OPUS_PAYLOAD_TYPE = 0x78
RTP_HEADER_SIZE = 12
#: RFC 8285 one-byte header-extension profile, the only one Discord uses.
ONE_BYTE_PROFILE = 0xBEDE
#: RTCP packet types (SR, RR, SDES, BYE, APP, RTPFB, PSFB) occupy byte 1 when RTCP.
RTCP_TYPES = range(200, 207)

_FIXED = struct.Struct(">BBHII")
_EXT_PREAMBLE = struct.Struct(">HH")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


@dataclass(slots=True)
class RtpHeader:
    """An RTP header up to and including the extension preamble.

    ``extension_length`` is the preamble's length field in 32-bit words: the size of the
    extension *body* that follows the header (and, in rtpsize modes, is encrypted).
    Treat instances as immutable; they are not frozen only because frozen dataclasses
    cost several times more to build on the hot path.
    """

    sequence: int
    timestamp: int
    ssrc: int
    payload_type: int = OPUS_PAYLOAD_TYPE
    marker: bool = False
    padding: bool = False
    csrcs: tuple[int, ...] = ()
    extension: bool = False
    extension_profile: int = ONE_BYTE_PROFILE
    extension_length: int = 0

    @property
    def size(self) -> int:
        """Bytes this header occupies: fixed part, CSRCs and the extension preamble."""
        return RTP_HEADER_SIZE + 4 * len(self.csrcs) + (4 if self.extension else 0)

    @property
    def extension_body_size(self) -> int:
        """Bytes of extension body that follow the header (0 when X is clear)."""
        return 4 * self.extension_length if self.extension else 0

    def serialize(self) -> bytes:
        """The header bytes, exactly as ``parse_header`` reads them."""
        return serialize_header(self)


def parse_header(data: bytes | bytearray | memoryview) -> RtpHeader:
    """Parse the RTP header at the start of ``data`` (the payload is not examined).

    Raises :class:`MalformedPacket` if the version is not 2 or ``data`` is too short for
    the CSRCs or the extension preamble the header announces.
    """
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise MalformedPacket(f"rtp: {size} bytes is shorter than the 12-byte header")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise MalformedPacket(f"rtp: version {b0 >> 6}, expected 2")
    cc = b0 & 0x0F
    offset = RTP_HEADER_SIZE
    csrcs: tuple[int, ...] = ()
    if cc:
        offset += 4 * cc
        if size < offset:
            raise MalformedPacket(f"rtp: header says {cc} CSRCs but only {size} bytes")
        csrcs = struct.unpack_from(f">{cc}I", data, RTP_HEADER_SIZE)
    extension = bool(b0 & 0x10)
    profile = ONE_BYTE_PROFILE
    ext_words = 0
    if extension:
        if size < offset + 4:
            raise MalformedPacket(
                f"rtp: X bit set but {size} bytes leave no room for the extension preamble"
            )
        profile, ext_words = _EXT_PREAMBLE.unpack_from(data, offset)
    return RtpHeader(
        sequence,
        timestamp,
        ssrc,
        b1 & 0x7F,
        bool(b1 & 0x80),
        bool(b0 & 0x20),
        csrcs,
        extension,
        profile,
        ext_words,
    )


def header_layout(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int, bool]:
    """The hot-path subset of :func:`parse_header`, without building an object.

    Returns ``(sequence, timestamp, ssrc, header_size, extension_body_size, padded)``;
    raises :class:`MalformedPacket` exactly where :func:`parse_header` would.
    """
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise MalformedPacket(f"rtp: {size} bytes is shorter than the 12-byte header")
    b0, _, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise MalformedPacket(f"rtp: version {b0 >> 6}, expected 2")
    offset = RTP_HEADER_SIZE + 4 * (b0 & 0x0F)
    if size < offset:
        raise MalformedPacket(f"rtp: header says {b0 & 0x0F} CSRCs but only {size} bytes")
    extension_size = 0
    if b0 & 0x10:
        if size < offset + 4:
            raise MalformedPacket(
                f"rtp: X bit set but {size} bytes leave no room for the extension preamble"
            )
        extension_size = 4 * _U16.unpack_from(data, offset + 2)[0]
        offset += 4
    return sequence, timestamp, ssrc, offset, extension_size, bool(b0 & 0x20)


def serialize_header(header: RtpHeader) -> bytes:
    """Encode ``header``; the inverse of :func:`parse_header`."""
    cc = len(header.csrcs)
    if cc > 15:
        raise ValueError(f"rtp: {cc} CSRCs, at most 15 fit the CC field")
    b0 = (
        (RTP_VERSION << 6)
        | (0x20 if header.padding else 0)
        | (0x10 if header.extension else 0)
        | cc
    )
    b1 = (0x80 if header.marker else 0) | (header.payload_type & 0x7F)
    out = bytearray(_FIXED.pack(b0, b1, header.sequence, header.timestamp, header.ssrc))
    for csrc in header.csrcs:
        out += _U32.pack(csrc)
    if header.extension:
        out += _EXT_PREAMBLE.pack(header.extension_profile, header.extension_length)
    return bytes(out)


def strip_padding(payload: bytes, padded: bool) -> bytes:
    """Remove RTP padding (RFC 3550 5.1): the last byte counts the padding bytes."""
    if not padded:
        return payload
    if not payload:
        raise MalformedPacket("rtp: P bit set on an empty payload")
    count = payload[-1]
    if count == 0 or count > len(payload):
        raise MalformedPacket(
            f"rtp: padding count {count} is invalid for a {len(payload)}-byte payload"
        )
    return payload[:-count]


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True if byte 1 is an RTCP packet type (200-206); Opus RTP never has these."""
    return len(data) >= 2 and 200 <= data[1] <= 206


def parse_extension_elements(body: bytes) -> list[tuple[int, bytes]]:
    """Split a one-byte-profile extension body into ``(id, data)`` elements.

    Zero bytes are padding between elements; ID 15 ends parsing (RFC 8285 4.2).
    """
    elements: list[tuple[int, bytes]] = []
    i = 0
    end = len(body)
    while i < end:
        head = body[i]
        if head == 0:
            i += 1
            continue
        element_id = head >> 4
        if element_id == 15:
            break
        length = (head & 0x0F) + 1
        if i + 1 + length > end:
            raise MalformedPacket(
                f"rtp: extension element {element_id} needs {length} bytes "
                f"but only {end - i - 1} remain"
            )
        elements.append((element_id, bytes(body[i + 1 : i + 1 + length])))
        i += 1 + length
    return elements


def serialize_extension_elements(elements: list[tuple[int, bytes]]) -> bytes:
    """Encode one-byte-profile elements, zero-padded to a whole number of 32-bit words."""
    out = bytearray()
    for element_id, data in elements:
        if not 1 <= element_id <= 14:
            raise ValueError(f"rtp: one-byte extension id {element_id} not in 1..14")
        if not 1 <= len(data) <= 16:
            raise ValueError(f"rtp: one-byte extension data of {len(data)} bytes not in 1..16")
        out.append((element_id << 4) | (len(data) - 1))
        out += data
    out += bytes(-len(out) % 4)
    return bytes(out)
