"""IP discovery packets against golden bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from notetaker.errors import MalformedPacket
from notetaker.voice.discovery import (
    REQUEST,
    RESPONSE,
    DiscoveryPacket,
    build_request,
    build_response,
    parse_discovery,
)

FIXTURES = Path(__file__).parent / "fixtures"


def load_hex(name: str) -> list[bytes]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [bytes.fromhex(line) for line in lines if line and not line.startswith("#")]


def test_request_golden() -> None:
    raw = load_hex("discovery.hex")[0]
    assert len(raw) == 74
    assert build_request(0xDEADBEEF) == raw
    assert parse_discovery(raw) == DiscoveryPacket(REQUEST, 0xDEADBEEF, "", 0)


def test_response_golden() -> None:
    raw = load_hex("discovery.hex")[1]
    assert build_response(0xDEADBEEF, "203.0.113.7", 50004) == raw
    packet = parse_discovery(raw)
    assert packet == DiscoveryPacket(RESPONSE, 0xDEADBEEF, "203.0.113.7", 50004)
    assert packet.serialize() == raw


def _raw(kind: int = 2, length: int = 70, address: bytes = b"127.0.0.1") -> bytes:
    return struct.pack(">HHI64sH", kind, length, 1, address, 9)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_raw()[:73], "discovery: 73 bytes, expected 74"),
        (_raw(kind=3), "discovery: type 3, expected 1 or 2"),
        (_raw(length=74), "discovery: length field 74, expected 70"),
        (_raw(address=b"x" * 64), "not NUL-terminated"),
        (_raw(address=b"\xff\xfe"), "not ASCII"),
        (_raw(address=b"::1"), "'::1' is not IPv4"),
        (_raw(address=b"localhost"), "is not IPv4"),
    ],
)
def test_malformed_discovery_says_why(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message):
        parse_discovery(data)


def test_address_too_long_to_serialize() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        build_response(1, "1" * 64, 1)
