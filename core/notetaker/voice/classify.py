"""Tell apart the datagrams that arrive on a voice UDP socket, cheaply, before parsing.

The order matters (voice-protocol.md 4.4): discovery first, then 8-byte keepalives (a
little-endian counter can start with 0x80 and would look like RTP), then RTCP by its
packet type in byte 1, then RTP carrying Opus. Everything else is malformed.
"""

from __future__ import annotations

from enum import IntEnum

from notetaker.voice.discovery import DISCOVERY_SIZE, REQUEST, RESPONSE
from notetaker.voice.rtp import OPUS_PAYLOAD_TYPE, RTP_HEADER_SIZE

KEEPALIVE_SIZE = 8
_RTCP_MIN_SIZE = 8


class PacketKind(IntEnum):
    """What a datagram is; see :func:`classify`."""

    DISCOVERY = 1
    KEEPALIVE = 2
    RTCP = 3
    RTP = 4
    #: RTP version 2 but not Opus (another payload type): not ours to decode.
    OTHER_RTP = 5
    MALFORMED = 6


def classify(data: bytes | bytearray | memoryview) -> PacketKind:
    """Classify one datagram by its size and first bytes; never raises."""
    size = len(data)
    if size == DISCOVERY_SIZE and data[0] == 0 and data[1] in (REQUEST, RESPONSE):
        return PacketKind.DISCOVERY
    if size == KEEPALIVE_SIZE:
        return PacketKind.KEEPALIVE
    if size < _RTCP_MIN_SIZE or data[0] >> 6 != 2:
        return PacketKind.MALFORMED
    second = data[1]
    if 200 <= second <= 206:
        return PacketKind.RTCP
    if size < RTP_HEADER_SIZE:
        return PacketKind.MALFORMED
    if second & 0x7F == OPUS_PAYLOAD_TYPE:
        return PacketKind.RTP
    return PacketKind.OTHER_RTP
