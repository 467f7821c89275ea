"""Discord's UDP IP discovery packet (74 bytes, request type 1, response type 2).

Layout: u16 type, u16 length (= 70), u32 SSRC, 64 bytes NUL-padded ASCII address, u16
port, all big-endian. The response carries the address and port the server saw the
request come from; the client announces them in Select Protocol.

Servers differ in the details of the response (field-behaviours.md L1): some do not echo
the SSRC. :func:`parse_discovery_reply` is what the client uses on a response, and is as
lenient as discord.js (type 2 and a dotted IPv4 address; the port is the last two bytes)
while naming the field at fault in anything else. :func:`parse_discovery` is the strict
parse of the documented layout.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from notetaker.errors import MalformedPacket

DISCOVERY_SIZE = 74
DISCOVERY_LENGTH = 70
REQUEST = 1
RESPONSE = 2
_ADDRESS_SIZE = 64

_LAYOUT = struct.Struct(">HHI64sH")
#: Header (type, length, SSRC), then at least a NUL-terminated address and the port.
_HEADER = struct.Struct(">HHI")
_PORT = struct.Struct(">H")
MIN_REPLY_SIZE = _HEADER.size + 1 + _PORT.size


@dataclass(frozen=True, slots=True)
class DiscoveryPacket:
    """One discovery datagram. ``address`` is empty in a request."""

    type: int
    ssrc: int
    address: str = ""
    port: int = 0

    def serialize(self) -> bytes:
        """The 74 bytes on the wire; the inverse of :func:`parse_discovery`."""
        encoded = self.address.encode("ascii")
        if len(encoded) >= _ADDRESS_SIZE:
            raise ValueError(f"discovery: address of {len(encoded)} bytes does not fit 63")
        return _LAYOUT.pack(self.type, DISCOVERY_LENGTH, self.ssrc, encoded, self.port)


def build_request(ssrc: int) -> bytes:
    """The request a client sends right after Ready (op 2)."""
    return DiscoveryPacket(REQUEST, ssrc).serialize()


def build_response(ssrc: int, address: str, port: int) -> bytes:
    """The server's answer: the address and port it observed."""
    return DiscoveryPacket(RESPONSE, ssrc, address, port).serialize()


def parse_discovery(data: bytes | bytearray | memoryview) -> DiscoveryPacket:
    """Parse a discovery datagram; a response's address must be dotted IPv4.

    Raises :class:`MalformedPacket` naming the field at fault.
    """
    if len(data) != DISCOVERY_SIZE:
        raise MalformedPacket(f"discovery: {len(data)} bytes, expected {DISCOVERY_SIZE}")
    kind, length, ssrc, raw_address, port = _LAYOUT.unpack(data)
    if kind not in (REQUEST, RESPONSE):
        raise MalformedPacket(f"discovery: type {kind}, expected 1 or 2")
    if length != DISCOVERY_LENGTH:
        raise MalformedPacket(f"discovery: length field {length}, expected {DISCOVERY_LENGTH}")
    nul = raw_address.find(b"\x00")
    if nul < 0:
        raise MalformedPacket("discovery: address is not NUL-terminated")
    try:
        address = raw_address[:nul].decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedPacket("discovery: address is not ASCII") from exc
    if kind == RESPONSE:
        try:
            ipaddress.IPv4Address(address)
        except ValueError as exc:
            raise MalformedPacket(f"discovery: address {address!r} is not IPv4") from exc
    return DiscoveryPacket(kind, ssrc, address, port)


def parse_discovery_reply(data: bytes | bytearray | memoryview) -> DiscoveryPacket:
    """Parse an IP discovery response leniently (field-behaviours.md L1).

    Checked: the type is 2, the address (from byte 8 up to its NUL) is dotted IPv4, the
    port (the last two bytes, as discord.js reads it) is not 0. Not checked: the SSRC
    (some servers send 0 instead of echoing it), the length field, the exact size.
    Raises :class:`MalformedPacket` naming the field at fault.
    """
    raw = bytes(data)
    if len(raw) < MIN_REPLY_SIZE:
        raise MalformedPacket(
            f"discovery reply: {len(raw)} bytes, expected at least {MIN_REPLY_SIZE}"
        )
    kind, _length, ssrc = _HEADER.unpack_from(raw)
    if kind != RESPONSE:
        raise MalformedPacket(f"discovery reply: type {kind}, expected {RESPONSE}")
    end = len(raw) - _PORT.size
    nul = raw.find(b"\x00", _HEADER.size, end)
    if nul < 0:
        raise MalformedPacket("discovery reply: address is not NUL-terminated before the port")
    try:
        address = raw[_HEADER.size : nul].decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedPacket("discovery reply: address is not ASCII") from exc
    try:
        ipaddress.IPv4Address(address)
    except ValueError as exc:
        raise MalformedPacket(f"discovery reply: address {address!r} is not IPv4") from exc
    (port,) = _PORT.unpack_from(raw, end)
    if port == 0:
        raise MalformedPacket("discovery reply: port 0")
    return DiscoveryPacket(RESPONSE, ssrc, address, port)
