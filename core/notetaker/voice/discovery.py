"""Discord's UDP IP discovery packet (74 bytes, request type 1, response type 2).

Layout: u16 type, u16 length (= 70), u32 SSRC, 64 bytes NUL-padded ASCII address, u16
port, all big-endian. The response carries the address and port the server saw the
request come from; the client announces them in Select Protocol.
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
