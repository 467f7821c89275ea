"""Transport encryption of voice UDP packets, server side, for every mode the simulator offers.

The two rtpsize AEAD modes are today's Discord (voice-protocol.md §4.3). The discontinued
ones (xsalsa20_poly1305, _suffix, _lite, _lite_rtpsize and aead_aes256_gcm) exist only for
the ``legacy-2024`` scenario, so that old library versions can be exercised against the
world they were written for. The old modes encrypted everything after a fixed 12-byte
header (extension preamble included); the rtpsize modes keep CSRCs and the extension
preamble in the clear, as AAD, and encrypt the extension *body* with the payload.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Opus "silence" frame: senders send five before they pause.
SILENCE_FRAME = b"\xf8\xff\xfe"
#: RTP payload type of Opus on Discord.
OPUS_PT = 0x78
#: The 8-byte one-byte-profile extension Discord puts on forwarded audio: preamble BE DE 00 02,
#: then element id 1 (audio level, UNCONFIRMED), length 1, and padding to two words.
EXTENSION_PREAMBLE = b"\xbe\xde\x00\x02"


class CryptoError(ValueError):
    """A packet could not be decrypted or is malformed."""


@dataclass(frozen=True)
class _ModeSpec:
    cipher: str  #: "aesgcm" | "xchacha" | "secretbox"
    nonce: str  #: "counter" (4 bytes appended) | "suffix" (24 random appended) | "header"
    rtpsize: bool  #: header = 12 + CSRCs + ext preamble, else a fixed 12 bytes


MODES: dict[str, _ModeSpec] = {
    "aead_aes256_gcm_rtpsize": _ModeSpec("aesgcm", "counter", True),
    "aead_xchacha20_poly1305_rtpsize": _ModeSpec("xchacha", "counter", True),
    "aead_aes256_gcm": _ModeSpec("aesgcm", "counter", False),
    "xsalsa20_poly1305_lite_rtpsize": _ModeSpec("secretbox", "counter", True),
    "xsalsa20_poly1305_lite": _ModeSpec("secretbox", "counter", False),
    "xsalsa20_poly1305_suffix": _ModeSpec("secretbox", "suffix", False),
    "xsalsa20_poly1305": _ModeSpec("secretbox", "header", False),
}


def audio_level_extension(level: int = 0x20) -> bytes:
    """The 8-byte extension body: element (id 1, len 1) = ``level``, zero padding."""
    return bytes([0x10, level & 0x7F]) + b"\x00" * 6


def rtp_header(
    seq: int, timestamp: int, ssrc: int, *, extension: bool, padding: bool = False
) -> bytes:
    """A 12-byte RTP header for Opus; with X=1 when an extension follows, P=1 when the
    payload ends in padding (its last byte the count, RFC 3550 5.1)."""
    first = (0x90 if extension else 0x80) | (0x20 if padding else 0)
    return struct.pack(">BBHII", first, OPUS_PT, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)


def rtp_padding(count: int) -> bytes:
    """RTP padding of ``count`` bytes (1-255): zeros, then the count."""
    if not 1 <= count <= 255:
        raise ValueError(f"RTP padding is 1-255 bytes, not {count}")
    return bytes(count - 1) + bytes([count])


def is_rtcp(packet: bytes) -> bool:
    """Whether a (non-discovery, non-keepalive) datagram is RTCP (PT 200-206)."""
    return len(packet) >= 8 and 200 <= packet[1] <= 206


@dataclass(frozen=True)
class RtpPacket:
    """A decrypted RTP packet."""

    seq: int
    timestamp: int
    ssrc: int
    payload: bytes  #: the Opus frame (extension body and padding removed)
    extension: bytes  #: the extension body, empty when X=0


def _clear_header_len(packet: bytes, spec: _ModeSpec, rtcp: bool) -> int:
    if rtcp:
        return 8
    if len(packet) < 12:
        raise CryptoError("short RTP packet")
    if not spec.rtpsize:
        return 12
    size = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        size += 4
    if len(packet) < size:
        raise CryptoError("truncated RTP header")
    return size


class TransportCipher:
    """Encrypts and decrypts one voice connection's UDP packets in one mode.

    The outgoing nonce is a u32 counter that wraps at 2**32 (counter modes).
    """

    def __init__(self, mode: str, key: bytes) -> None:
        if mode not in MODES:
            raise CryptoError(f"unknown mode {mode!r}")
        if len(key) != 32:
            raise CryptoError("secret key must be 32 bytes")
        self.mode = mode
        self.key = key
        self._spec = MODES[mode]
        self._counter = 0
        self._aes = AESGCM(key) if self._spec.cipher == "aesgcm" else None
        self._box = nacl.secret.SecretBox(key) if self._spec.cipher == "secretbox" else None

    # -- primitives ------------------------------------------------------------------
    def _nonce_len(self) -> int:
        return 12 if self._spec.cipher == "aesgcm" else 24

    def _seal(self, header: bytes, body: bytes) -> bytes:
        spec = self._spec
        if spec.nonce == "counter":
            tail = struct.pack(">I", self._counter)
            self._counter = (self._counter + 1) & 0xFFFFFFFF
            nonce = tail + b"\x00" * (self._nonce_len() - 4)
        elif spec.nonce == "suffix":
            tail = nonce = os.urandom(24)
        else:
            tail = b""
            nonce = header[:12].ljust(24, b"\x00")
        if self._aes is not None:
            sealed = self._aes.encrypt(nonce, body, header)
        elif self._box is not None:
            sealed = self._box.encrypt(body, nonce).ciphertext
        else:
            sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
                body, header, nonce, self.key
            )
        return header + sealed + tail

    def _open(self, packet: bytes, header_len: int) -> tuple[bytes, bytes]:
        spec = self._spec
        header = packet[:header_len]
        if spec.nonce == "counter":
            if len(packet) < header_len + 4 + 16:
                raise CryptoError("packet too short for its mode")
            nonce = packet[-4:] + b"\x00" * (self._nonce_len() - 4)
            sealed = packet[header_len:-4]
        elif spec.nonce == "suffix":
            if len(packet) < header_len + 24 + 16:
                raise CryptoError("packet too short for its mode")
            nonce = packet[-24:]
            sealed = packet[header_len:-24]
        else:
            nonce = header[:12].ljust(24, b"\x00")
            sealed = packet[header_len:]
        try:
            if self._aes is not None:
                return header, self._aes.decrypt(nonce, sealed, header)
            if self._box is not None:
                return header, self._box.decrypt(sealed, nonce)
            plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed, header, nonce, self.key
            )
            return header, plain
        except (InvalidTag, nacl.exceptions.CryptoError, ValueError) as exc:
            raise CryptoError(f"{self.mode}: authentication failed") from exc

    # -- RTP -------------------------------------------------------------------------
    def encrypt_rtp(self, header: bytes, extension: bytes, payload: bytes) -> bytes:
        """Encrypt one packet: ``header`` is the 12-byte RTP header (X set iff ``extension``),
        ``extension`` the extension body (a multiple of 4 bytes), ``payload`` the Opus frame."""
        if extension:
            preamble = b"\xbe\xde" + struct.pack(">H", len(extension) // 4)
            if self._spec.rtpsize:
                return self._seal(header + preamble, extension + payload)
            return self._seal(header, preamble + extension + payload)
        return self._seal(header, payload)

    def decrypt_rtp(self, packet: bytes) -> RtpPacket:
        """Decrypt one RTP packet and split off its extension body and padding."""
        header, plain = self._open(packet, _clear_header_len(packet, self._spec, rtcp=False))
        first = packet[0]
        _, _, seq, timestamp, ssrc = struct.unpack_from(">BBHII", packet)
        if not self._spec.rtpsize:
            # Old modes: CSRCs and extension preamble were inside the ciphertext.
            skip = 4 * (first & 0x0F)
            plain = plain[skip:]
            if first & 0x10:
                if len(plain) < 4:
                    raise CryptoError("truncated extension preamble")
                words = struct.unpack_from(">H", plain, 2)[0]
                plain = plain[4:]
            else:
                words = 0
        else:
            words = struct.unpack_from(">H", header, len(header) - 2)[0] if first & 0x10 else 0
        ext_len = 4 * words
        if len(plain) < ext_len:
            raise CryptoError("extension longer than the packet")
        extension, payload = plain[:ext_len], plain[ext_len:]
        if first & 0x20 and payload:
            pad = payload[-1]
            if pad == 0 or pad > len(payload):
                raise CryptoError("bad RTP padding")
            payload = payload[:-pad]
        return RtpPacket(seq, timestamp, ssrc, payload, extension)

    # -- RTCP ------------------------------------------------------------------------
    def encrypt_rtcp(self, packet: bytes) -> bytes:
        """Encrypt an RTCP packet: the first 8 bytes stay clear (and are the AAD)."""
        return self._seal(packet[:8], packet[8:])

    def decrypt_rtcp(self, packet: bytes) -> bytes:
        """Decrypt an RTCP packet; returns header + plaintext body."""
        header, plain = self._open(packet, 8)
        return header + plain
