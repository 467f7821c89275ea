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
    parse_discovery_reply,
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


# -- the client's lenient parse of a reply (field-behaviours.md L1) -------------------------


def test_reply_golden_parses_leniently_too() -> None:
    raw = load_hex("discovery.hex")[1]
    assert parse_discovery_reply(raw) == DiscoveryPacket(RESPONSE, 0xDEADBEEF, "203.0.113.7", 50004)


def test_reply_with_ssrc_zero_is_accepted() -> None:
    """Some servers do not echo the SSRC: only the address and port matter."""
    raw = bytes.fromhex("0002004600000000" + b"203.0.113.7".hex() + "00" * (64 - 11) + "c354")
    assert len(raw) == 74
    assert parse_discovery_reply(raw) == DiscoveryPacket(RESPONSE, 0, "203.0.113.7", 50004)
    # The strict parse of the documented layout takes it too (it never checked the SSRC).
    assert parse_discovery(raw).ssrc == 0


@pytest.mark.parametrize(
    ("raw", "address", "port"),
    [
        # Length field 74 (the whole datagram) instead of 70.
        (_raw(length=74), "127.0.0.1", 9),
        # Shorter than 74 bytes: the port is the last two bytes, as discord.js reads it.
        (
            struct.pack(">HHI", 2, 70, 1) + b"10.0.0.2\x00" + struct.pack(">H", 4242),
            "10.0.0.2",
            4242,
        ),
        # Longer: trailing padding after the address field.
        (_raw() + b"\x00" * 6 + struct.pack(">H", 9), "127.0.0.1", 9),
    ],
    ids=["length field 74", "short", "long"],
)
def test_reply_variants_discord_js_accepts(raw: bytes, address: str, port: int) -> None:
    assert parse_discovery_reply(raw) == DiscoveryPacket(RESPONSE, 1, address, port)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"\x00\x02\x00\x46\x00\x00\x00\x01\x00\x00",
            "discovery reply: 10 bytes, expected at least 11",
        ),
        (_raw(kind=1), "discovery reply: type 1, expected 2"),
        (_raw(kind=3), "discovery reply: type 3, expected 2"),
        (_raw(address=b"x" * 64), "address is not NUL-terminated before the port"),
        (struct.pack(">HHI", 2, 70, 1) + b"10.0.0.2" + b"\x00\x09", "not NUL-terminated"),
        (_raw(address=b"\xff\xfe"), "discovery reply: address is not ASCII"),
        (_raw(address=b""), "discovery reply: address '' is not IPv4"),
        (_raw(address=b"::1"), "discovery reply: address '::1' is not IPv4"),
        (_raw(address=b"localhost"), "'localhost' is not IPv4"),
        (_raw(address=b"256.1.1.1"), "'256.1.1.1' is not IPv4"),
        (struct.pack(">HHI64sH", 2, 70, 1, b"10.0.0.2", 0), "discovery reply: port 0"),
    ],
    ids=[
        "short",
        "request",
        "type 3",
        "no NUL",
        "NUL only in the port",
        "not ASCII",
        "empty",
        "IPv6",
        "name",
        "bad octet",
        "port 0",
    ],
)
def test_malformed_reply_says_why(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message):
        parse_discovery_reply(data)
