"""Datagram classification order (voice-protocol.md 4.4)."""

from __future__ import annotations

import struct

import pytest

from notetaker.voice.classify import PacketKind, classify
from notetaker.voice.discovery import build_request, build_response
from notetaker.voice.rtp import RtpHeader


def rtp(payload_type: int = 0x78, size: int = 40, marker: bool = False) -> bytes:
    header = RtpHeader(1, 960, 7, payload_type=payload_type, marker=marker).serialize()
    return header + bytes(size - len(header))


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (build_request(5), PacketKind.DISCOVERY),
        (build_response(5, "10.0.0.1", 4), PacketKind.DISCOVERY),
        (struct.pack("<I", 0x80) + bytes(4), PacketKind.KEEPALIVE),  # discord.js, LE counter
        (struct.pack(">Q", 1), PacketKind.KEEPALIVE),  # py-cord, u64 BE counter
        (b"\x80\x78" + bytes(6), PacketKind.KEEPALIVE),  # even if it looks like RTP
        (b"\x81\xc9\x00\x07" + bytes(28), PacketKind.RTCP),  # receiver report
        (b"\x80\xc8\x00\x06" + bytes(24), PacketKind.RTCP),  # sender report
        (b"\x80\xce\x00\x02" + bytes(8), PacketKind.RTCP),  # PSFB
        (rtp(), PacketKind.RTP),
        (rtp(marker=True), PacketKind.RTP),
        (rtp(size=74), PacketKind.RTP),  # 74 bytes but not a discovery type
        (rtp(payload_type=96), PacketKind.OTHER_RTP),
        (b"", PacketKind.MALFORMED),
        (b"\x80", PacketKind.MALFORMED),
        (b"\x80\x78" + bytes(8), PacketKind.MALFORMED),  # 10 bytes: shorter than RTP
        (b"\x40\x78" + bytes(30), PacketKind.MALFORMED),  # version 1
        (bytes(74), PacketKind.MALFORMED),  # 74 zero bytes: type 0
    ],
)
def test_classify(data: bytes, kind: PacketKind) -> None:
    assert classify(data) is kind


def test_discovery_wins_over_rtp_shape() -> None:
    data = bytearray(build_response(5, "10.0.0.1", 4))
    assert classify(data) is PacketKind.DISCOVERY
    data[1] = 3
    assert classify(data) is PacketKind.MALFORMED


def test_accepts_memoryview() -> None:
    assert classify(memoryview(rtp())) is PacketKind.RTP
