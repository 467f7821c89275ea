"""Transport encryption for voice UDP: the two rtpsize AEAD modes Discord still offers.

Packet layout (both modes)::

    [12B header][4*CC CSRCs][4B extension preamble if X][ciphertext || 16B tag][u32 nonce BE]

The AAD is everything before the ciphertext; the extension *body* is encrypted with the
payload, so after opening we skip ``4 * extension_length`` bytes. The nonce is the
sender's u32 counter written big-endian into bytes 0-3 of an otherwise zero nonce (12
bytes for AES-256-GCM, 24 for XChaCha20-Poly1305). RTCP uses the first 8 bytes as AAD.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

try:  # PyNaCl's cffi module: libsodium without nacl.bindings' per-call overhead
    from nacl._sodium import ffi as _sodium_ffi
    from nacl._sodium import lib as _sodium_lib

    if not hasattr(_sodium_lib, "crypto_aead_xchacha20poly1305_ietf_decrypt"):
        _sodium_lib = None
except ImportError:  # pragma: no cover - other PyNaCl builds
    _sodium_ffi = _sodium_lib = None

from notetaker.errors import DecryptError, MalformedPacket, VoiceError
from notetaker.voice.rtp import RtpHeader, serialize_header

AES_GCM_MODE = "aead_aes256_gcm_rtpsize"
XCHACHA_MODE = "aead_xchacha20_poly1305_rtpsize"
#: Modes this module implements, in order of preference (when the CPU has AES).
SUPPORTED_MODES = (AES_GCM_MODE, XCHACHA_MODE)
KEY_SIZE = 32
TAG_SIZE = 16
NONCE_SUFFIX_SIZE = 4
RTCP_HEADER_SIZE = 8
_OVERHEAD = TAG_SIZE + NONCE_SUFFIX_SIZE

_U32 = struct.Struct(">I")


class TransportCipher(ABC):
    """Opens and seals rtpsize packets under one session key (from Session Description)."""

    __slots__ = ()

    mode: str

    @abstractmethod
    def _open(self, nonce4: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Authenticate and decrypt, raising :class:`DecryptError` on a bad tag."""

    @abstractmethod
    def _seal(self, nonce4: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and append the 16-byte tag."""

    def decrypt_rtp(self, packet: bytes, header: RtpHeader) -> bytes:
        """The Opus payload of ``packet`` (whose header was parsed into ``header``).

        RTP padding is stripped and the decrypted extension body skipped. Raises
        :class:`DecryptError` if authentication fails and :class:`MalformedPacket` if the
        packet is too short or its padding/extension lengths do not fit.
        """
        return self.open_rtp(packet, header.size, header.extension_body_size, header.padding)

    def open_rtp(self, packet: bytes, header_size: int, extension_size: int, padded: bool) -> bytes:
        """:meth:`decrypt_rtp` from the header's layout (see :func:`rtp.header_layout`)."""
        end = len(packet) - NONCE_SUFFIX_SIZE
        if end - header_size < TAG_SIZE:
            raise MalformedPacket(
                f"rtp: {len(packet)} bytes cannot hold a {header_size}-byte header, "
                f"{TAG_SIZE}-byte tag and {NONCE_SUFFIX_SIZE}-byte nonce"
            )
        plain = self._open(packet[end:], packet[header_size:end], packet[:header_size])
        if padded:
            count = plain[-1] if plain else 0
            if count == 0 or count > len(plain):
                raise MalformedPacket(
                    f"rtp: padding count {count} is invalid for a {len(plain)}-byte payload"
                )
            plain = plain[:-count]
        if extension_size:
            if extension_size > len(plain):
                raise MalformedPacket(
                    f"rtp: extension body of {extension_size} bytes but only {len(plain)} decrypted"
                )
            plain = plain[extension_size:]
        return plain

    def encrypt_rtp(
        self,
        header: RtpHeader,
        payload: bytes,
        nonce: int,
        extension_body: bytes = b"",
    ) -> bytes:
        """Build a complete encrypted packet; the inverse of :meth:`decrypt_rtp`.

        ``extension_body`` must be ``4 * header.extension_length`` bytes when X is set.
        If ``header.padding`` is set, ``payload`` must already end with the padding.
        ``nonce`` is the sender's u32 packet counter.
        """
        if len(extension_body) != header.extension_body_size:
            raise ValueError(
                f"rtp: extension body of {len(extension_body)} bytes, header announces "
                f"{header.extension_body_size}"
            )
        aad = serialize_header(header)
        nonce4 = _U32.pack(nonce & 0xFFFFFFFF)
        return aad + self._seal(nonce4, extension_body + payload, aad) + nonce4

    def decrypt_rtcp(self, packet: bytes) -> bytes:
        """The plaintext RTCP packet: its 8-byte header followed by the decrypted body."""
        end = len(packet) - NONCE_SUFFIX_SIZE
        if end - RTCP_HEADER_SIZE < TAG_SIZE:
            raise MalformedPacket(f"rtcp: {len(packet)} bytes is too short to be encrypted")
        aad = packet[:RTCP_HEADER_SIZE]
        return aad + self._open(packet[end:], packet[RTCP_HEADER_SIZE:end], aad)

    def encrypt_rtcp(self, packet: bytes, nonce: int) -> bytes:
        """Encrypt a plaintext RTCP packet (first 8 bytes stay clear as AAD)."""
        if len(packet) < RTCP_HEADER_SIZE:
            raise ValueError(f"rtcp: {len(packet)} bytes is shorter than the 8-byte header")
        aad = packet[:RTCP_HEADER_SIZE]
        nonce4 = _U32.pack(nonce & 0xFFFFFFFF)
        return aad + self._seal(nonce4, packet[RTCP_HEADER_SIZE:], aad) + nonce4


class AesGcmCipher(TransportCipher):
    """``aead_aes256_gcm_rtpsize``: AES-256-GCM, 12-byte nonce (about 1 us per packet)."""

    __slots__ = ("_aead",)
    mode = AES_GCM_MODE
    _PAD = bytes(8)

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._aead = AESGCM(bytes(key))

    def _open(self, nonce4: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce4 + self._PAD, ciphertext, aad)
        except InvalidTag:
            raise DecryptError("transport: AES-GCM tag mismatch", reason="decrypt") from None

    def _seal(self, nonce4: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce4 + self._PAD, plaintext, aad)


class XChaChaCipher(TransportCipher):
    """``aead_xchacha20_poly1305_rtpsize``: IETF XChaCha20-Poly1305, 24-byte nonce.

    Opening calls libsodium through PyNaCl's cffi module directly, into a buffer this
    instance reuses: about twice as fast as ``nacl.bindings``, whose argument checks and
    per-call allocations cost more than the cipher itself on voice-sized packets. So do
    not decrypt with one instance from two threads at once (the pipeline does not).
    ``fast=False`` (or a PyNaCl without that module) uses the public binding.
    """

    __slots__ = ("_buffer", "_fast", "_key", "_length")
    mode = XCHACHA_MODE
    _PAD = bytes(20)

    def __init__(self, key: bytes, *, fast: bool = True) -> None:
        _check_key(key)
        self._key = bytes(key)
        self._fast = fast and _sodium_lib is not None
        if self._fast:
            self._buffer = _sodium_ffi.new("unsigned char[]", 2048)
            self._length = _sodium_ffi.new("unsigned long long *")

    def _open(self, nonce4: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        if not self._fast:
            try:
                result: bytes = crypto_aead_xchacha20poly1305_ietf_decrypt(
                    ciphertext, aad, nonce4 + self._PAD, self._key
                )
            except CryptoError:
                raise DecryptError(
                    "transport: XChaCha20-Poly1305 tag mismatch", reason="decrypt"
                ) from None
            return result
        size = len(ciphertext)
        if size > len(self._buffer):
            self._buffer = _sodium_ffi.new("unsigned char[]", size)
        rc = _sodium_lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
            self._buffer,
            self._length,
            _sodium_ffi.NULL,
            ciphertext,
            size,
            aad,
            len(aad),
            nonce4 + self._PAD,
            self._key,
        )
        if rc != 0:
            raise DecryptError("transport: XChaCha20-Poly1305 tag mismatch", reason="decrypt")
        data: bytes = _sodium_ffi.buffer(self._buffer, self._length[0])[:]
        return data

    def _seal(self, nonce4: bytes, plaintext: bytes, aad: bytes) -> bytes:
        result: bytes = crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, aad, nonce4 + self._PAD, self._key
        )
        return result


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"transport: secret key is {len(key)} bytes, expected {KEY_SIZE}")


_CIPHERS: dict[str, Callable[[bytes], TransportCipher]] = {
    AES_GCM_MODE: AesGcmCipher,
    XCHACHA_MODE: XChaChaCipher,
}


def make_cipher(mode: str, key: bytes) -> TransportCipher:
    """The cipher for a negotiated ``mode`` and the 32-byte ``secret_key`` from op 4."""
    try:
        factory = _CIPHERS[mode]
    except KeyError:
        raise VoiceError(
            f"unsupported transport encryption mode {mode!r}; supported: "
            + ", ".join(SUPPORTED_MODES)
        ) from None
    return factory(key)


def cpu_has_aes(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU advertises AES instructions (x86 ``flags`` / ARM ``Features``).

    Without a readable cpuinfo (not Linux) this answers True: every x86-64 CPU of the
    last decade and every ARMv8 CPU with crypto extensions (Apple silicon) has them.
    """
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return True
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features") and "aes" in value.split():
            return True
    return False


def choose_mode(offered: Iterable[str], *, has_aes: bool | Callable[[], bool] = cpu_has_aes) -> str:
    """Pick the transport mode to announce in Select Protocol from the op 2 ``modes``.

    AES-256-GCM when offered and the CPU has AES instructions (it is about 6x cheaper
    per packet there), XChaCha20-Poly1305 otherwise. ``has_aes`` is a bool or a probe,
    injectable for tests. Raises :class:`VoiceError` listing the offer if neither is in it.
    """
    modes = list(offered)
    aes = has_aes() if callable(has_aes) else has_aes
    if AES_GCM_MODE in modes and (aes or XCHACHA_MODE not in modes):
        return AES_GCM_MODE
    if XCHACHA_MODE in modes:
        return XCHACHA_MODE
    raise VoiceError(
        "no supported voice encryption mode offered: server offered "
        + (", ".join(modes) if modes else "nothing")
        + "; notetaker supports "
        + ", ".join(SUPPORTED_MODES)
    )


class Packetizer:
    """One sender's outgoing stream: wraps Opus frames into encrypted RTP packets.

    Keeps the per-sender sequence number (+1 per packet), RTP timestamp (+``samples``)
    and nonce counter (+1), each wrapping at its field width. ``extension_body`` (a
    multiple of 4 bytes) is sent with X=1 in every packet, as Discord's forwarded audio
    does; the default is X=0, as bots send.
    """

    __slots__ = ("cipher", "extension_body", "nonce", "sequence", "ssrc", "timestamp")

    def __init__(
        self,
        cipher: TransportCipher,
        ssrc: int,
        *,
        sequence: int = 0,
        timestamp: int = 0,
        nonce: int = 0,
        extension_body: bytes | None = None,
    ) -> None:
        if extension_body is not None and len(extension_body) % 4:
            raise ValueError(f"extension body of {len(extension_body)} bytes is not whole words")
        self.cipher = cipher
        self.ssrc = ssrc
        self.sequence = sequence & 0xFFFF
        self.timestamp = timestamp & 0xFFFFFFFF
        self.nonce = nonce & 0xFFFFFFFF
        self.extension_body = extension_body

    def packet(self, opus: bytes, samples: int = 960) -> bytes:
        """The next packet carrying ``opus``; advances the stream's counters."""
        body = self.extension_body
        header = RtpHeader(
            self.sequence,
            self.timestamp,
            self.ssrc,
            extension=body is not None,
            extension_length=len(body) // 4 if body is not None else 0,
        )
        packet = self.cipher.encrypt_rtp(header, opus, self.nonce, body or b"")
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self.nonce = (self.nonce + 1) & 0xFFFFFFFF
        return packet
