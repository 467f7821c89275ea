"""RTP header parsing and serialization against golden bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from notetaker.errors import MalformedPacket
from notetaker.voice.rtp import (
    RtpHeader,
    header_layout,
    is_rtcp,
    parse_extension_elements,
    parse_header,
    serialize_extension_elements,
    serialize_header,
    strip_padding,
)

FIXTURES = Path(__file__).parent / "fixtures"


def load_hex(name: str) -> list[bytes]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [bytes.fromhex(line) for line in lines if line and not line.startswith("#")]


def test_plain_header_golden_round_trip() -> None:
    raw = load_hex("rtp_headers.hex")[0]
    header = parse_header(raw)
    assert header == RtpHeader(sequence=0x1234, timestamp=0x89ABCDEF, ssrc=0x01020304)
    assert header.size == 12
    assert header.extension_body_size == 0
    assert serialize_header(header) == raw


def test_full_header_golden_round_trip() -> None:
    raw = load_hex("rtp_headers.hex")[1]
    header = parse_header(raw)
    assert (header.padding, header.extension, header.marker) == (True, True, True)
    assert header.payload_type == 0x78
    assert (header.sequence, header.timestamp, header.ssrc) == (65535, 960, 42)
    assert header.csrcs == (7, 8)
    assert header.extension_profile == 0xBEDE
    assert header.extension_length == 2
    assert header.size == 12 + 8 + 4
    assert header.extension_body_size == 8
    assert header.serialize() == raw


def test_header_layout_matches_parse_header() -> None:
    plain, full = load_hex("rtp_headers.hex")
    assert header_layout(plain) == (0x1234, 0x89ABCDEF, 0x01020304, 12, 0, False)
    assert header_layout(full) == (65535, 960, 42, 24, 8, True)
    with pytest.raises(MalformedPacket, match="2 CSRCs but only 13 bytes"):
        header_layout(b"\x82\x78" + bytes(11))


def test_payload_after_header_is_ignored() -> None:
    raw = load_hex("rtp_headers.hex")[0]
    assert parse_header(raw + b"opus payload").sequence == 0x1234


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x78\x00", "rtp: 3 bytes is shorter than the 12-byte header"),
        (b"\x40\x78" + bytes(10), "rtp: version 1, expected 2"),
        (b"\x82\x78" + bytes(11), "rtp: header says 2 CSRCs but only 13 bytes"),
        (b"\x90\x78" + bytes(12), "no room for the extension preamble"),
    ],
)
def test_malformed_headers_say_why(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message) as info:
        parse_header(data)
    assert info.value.reason == "malformed"


def test_too_many_csrcs_cannot_be_serialized() -> None:
    with pytest.raises(ValueError, match="15"):
        serialize_header(RtpHeader(1, 2, 3, csrcs=tuple(range(16))))


def test_strip_padding() -> None:
    assert strip_padding(b"opus\x00\x00\x03", True) == b"opus"
    assert strip_padding(b"opus\x00\x00\x03", False) == b"opus\x00\x00\x03"
    with pytest.raises(MalformedPacket, match="padding count 9"):
        strip_padding(b"opus\x09", True)
    with pytest.raises(MalformedPacket, match="padding count 0"):
        strip_padding(b"opus\x00", True)
    with pytest.raises(MalformedPacket, match="empty payload"):
        strip_padding(b"", True)


def test_rtcp_detection_by_second_byte() -> None:
    assert is_rtcp(b"\x81\xc9\x00\x07")  # 201 receiver report
    assert is_rtcp(b"\x80\xc8")  # 200 sender report
    assert is_rtcp(b"\x80\xce")  # 206 payload-specific feedback
    assert not is_rtcp(b"\x80\x78")
    assert not is_rtcp(b"\x80\xf8")  # Opus with the marker bit
    assert not is_rtcp(b"\x80")


def test_extension_elements_round_trip_discord_layout() -> None:
    # What the simulator sends on forwarded audio: id 1 (audio level), 1 byte, padded.
    body = bytes.fromhex("10 7f 00 00 00 00 00 00")
    assert parse_extension_elements(body) == [(1, b"\x7f")]
    assert serialize_extension_elements([(1, b"\x7f")]) == body[:4]
    two = serialize_extension_elements([(1, b"\x7f"), (9, b"\x01\x02")])
    assert len(two) % 4 == 0
    assert parse_extension_elements(two) == [(1, b"\x7f"), (9, b"\x01\x02")]


def test_extension_element_overrun_is_malformed() -> None:
    with pytest.raises(MalformedPacket, match="element 2 needs 4 bytes but only 1 remain"):
        parse_extension_elements(b"\x23\x00")


def test_extension_id_15_stops_parsing() -> None:
    assert parse_extension_elements(b"\x10\x01\xf0\x55\x55") == [(1, b"\x01")]
