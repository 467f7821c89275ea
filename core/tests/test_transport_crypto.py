"""rtpsize AEAD transport encryption: golden packets, round trips, tampering."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from notetaker.errors import DecryptError, MalformedPacket, VoiceError
from notetaker.voice.rtp import RtpHeader, parse_header
from notetaker.voice.transport_crypto import (
    AES_GCM_MODE,
    XCHACHA_MODE,
    AesGcmCipher,
    Packetizer,
    XChaChaCipher,
    choose_mode,
    cpu_has_aes,
    make_cipher,
)

FIXTURES = Path(__file__).parent / "fixtures"
KEY = bytes(range(32))
OPUS = bytes.fromhex("fc ff fe 01 02 03 04 05 06 07 08 09")
EXT_BODY = bytes.fromhex("10 7f 00 00 00 00 00 00")
MODES = [AES_GCM_MODE, XCHACHA_MODE]


def load_hex(name: str) -> list[bytes]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [bytes.fromhex(line) for line in lines if line and not line.startswith("#")]


def test_aes_gcm_golden_with_extension() -> None:
    raw = load_hex("aes_gcm_rtpsize.hex")[0]
    cipher = AesGcmCipher(KEY)
    header = parse_header(raw)
    assert header.extension and header.extension_length == 2
    assert cipher.decrypt_rtp(raw, header) == OPUS
    assert cipher.encrypt_rtp(header, OPUS, 7, EXT_BODY) == raw


def test_aes_gcm_golden_nonce_at_wrap_point() -> None:
    raw = load_hex("aes_gcm_rtpsize.hex")[1]
    cipher = AesGcmCipher(KEY)
    header = parse_header(raw)
    assert cipher.decrypt_rtp(raw, header) == OPUS
    assert raw[-4:] == b"\xff\xff\xff\xff"
    assert cipher.encrypt_rtp(header, OPUS, 0xFFFFFFFF) == raw


def test_xchacha_golden_with_extension() -> None:
    raw = load_hex("xchacha_rtpsize.hex")[0]
    cipher = XChaChaCipher(KEY)
    header = parse_header(raw)
    assert cipher.decrypt_rtp(raw, header) == OPUS
    assert cipher.encrypt_rtp(header, OPUS, 7, EXT_BODY) == raw


def test_xchacha_packet_from_pycord_sender() -> None:
    # Made by py-cord 2.8.1's own VoiceClient encrypt function (see make_voice_fixtures).
    raw = load_hex("xchacha_pycord.hex")[0]
    cipher = make_cipher(XCHACHA_MODE, KEY)
    header = parse_header(raw)
    assert (header.sequence, header.timestamp, header.ssrc) == (5, 4800, 0xBEEF)
    assert cipher.decrypt_rtp(raw, header) == OPUS
    assert cipher.encrypt_rtp(header, OPUS, 0x01020304) == raw


def test_rtcp_golden() -> None:
    plain, encrypted = load_hex("rtcp_aes_gcm.hex")
    cipher = AesGcmCipher(KEY)
    assert cipher.decrypt_rtcp(encrypted) == plain
    assert cipher.encrypt_rtcp(plain, 9) == encrypted


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_with_csrcs_padding_and_extension(mode: str) -> None:
    cipher = make_cipher(mode, os.urandom(32))
    assert cipher.mode == mode
    header = RtpHeader(
        40000, 123456789, 77, csrcs=(1, 2), padding=True, extension=True, extension_length=1
    )
    packet = cipher.encrypt_rtp(header, OPUS + b"\x00\x00\x03", 99, b"\x10\x01\x00\x00")
    parsed = parse_header(packet)
    assert parsed == header
    assert cipher.decrypt_rtp(packet, parsed) == OPUS


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", [0, 5, 12, 20, -18, -5, -1])
def test_tampering_anywhere_fails_authentication(mode: str, where: int) -> None:
    cipher = make_cipher(mode, KEY)
    header = RtpHeader(1, 960, 5, extension=True, extension_length=2)
    packet = bytearray(cipher.encrypt_rtp(header, OPUS, 3, EXT_BODY))
    packet[where] ^= 0x01
    with pytest.raises(DecryptError) as info:
        cipher.decrypt_rtp(bytes(packet), header)
    assert info.value.reason == "decrypt"


@pytest.mark.parametrize("mode", MODES)
def test_wrong_key_fails(mode: str) -> None:
    header = RtpHeader(1, 960, 5)
    packet = make_cipher(mode, KEY).encrypt_rtp(header, OPUS, 3)
    with pytest.raises(DecryptError):
        make_cipher(mode, bytes(32)).decrypt_rtp(packet, header)


@pytest.mark.parametrize("mode", MODES)
def test_rtcp_tamper_fails(mode: str) -> None:
    cipher = make_cipher(mode, KEY)
    encrypted = bytearray(cipher.encrypt_rtcp(b"\x81\xc9\x00\x07" + bytes(28), 1))
    assert cipher.decrypt_rtcp(bytes(encrypted))[:4] == b"\x81\xc9\x00\x07"
    encrypted[2] ^= 0x80
    with pytest.raises(DecryptError):
        cipher.decrypt_rtcp(bytes(encrypted))


def test_too_short_for_tag_and_nonce_is_malformed() -> None:
    cipher = AesGcmCipher(KEY)
    raw = load_hex("rtp_headers.hex")[0] + bytes(19)
    with pytest.raises(MalformedPacket, match="31 bytes cannot hold a 12-byte header"):
        cipher.decrypt_rtp(raw, parse_header(raw))
    with pytest.raises(MalformedPacket, match="rtcp: 27 bytes"):
        cipher.decrypt_rtcp(bytes(27))


@pytest.mark.parametrize("mode", MODES)
def test_extension_longer_than_plaintext_is_malformed(mode: str) -> None:
    # Authentic but inconsistent: the padding eats into the announced extension body.
    cipher = make_cipher(mode, KEY)
    header = RtpHeader(1, 2, 3, padding=True, extension=True, extension_length=1)
    packet = cipher.encrypt_rtp(header, b"\x06\x06\x06", 0, b"\x10\x00\x00\x00")
    with pytest.raises(MalformedPacket, match="extension body of 4 bytes but only 1 decrypted"):
        cipher.decrypt_rtp(packet, parse_header(packet))


@pytest.mark.parametrize("mode", MODES)
def test_bad_padding_count_is_malformed(mode: str) -> None:
    cipher = make_cipher(mode, KEY)
    header = RtpHeader(1, 2, 3, padding=True)
    packet = cipher.encrypt_rtp(header, b"\x01\x02\x09", 0)
    with pytest.raises(MalformedPacket, match="padding count 9"):
        cipher.decrypt_rtp(packet, header)


def test_encrypt_checks_extension_body_length() -> None:
    with pytest.raises(ValueError, match="header announces 8"):
        AesGcmCipher(KEY).encrypt_rtp(
            RtpHeader(1, 2, 3, extension=True, extension_length=2), b"", 0
        )


def test_key_and_mode_validation() -> None:
    with pytest.raises(ValueError, match="16 bytes, expected 32"):
        make_cipher(AES_GCM_MODE, bytes(16))
    with pytest.raises(VoiceError, match="xsalsa20_poly1305"):
        make_cipher("xsalsa20_poly1305", KEY)


def test_packetizer_advances_and_wraps_counters() -> None:
    cipher = AesGcmCipher(KEY)
    sender = Packetizer(
        cipher, 9, sequence=65535, timestamp=2**32 - 960, nonce=2**32 - 1, extension_body=EXT_BODY
    )
    first, second = sender.packet(OPUS), sender.packet(OPUS)
    h1, h2 = parse_header(first), parse_header(second)
    assert (h1.sequence, h1.timestamp, first[-4:]) == (65535, 2**32 - 960, b"\xff" * 4)
    assert (h2.sequence, h2.timestamp, second[-4:]) == (0, 0, b"\x00" * 4)
    assert h1.extension and h1.extension_length == 2
    assert cipher.decrypt_rtp(second, h2) == OPUS


def test_choose_mode_prefers_aes_when_cpu_has_it() -> None:
    both = ["aead_aes256_gcm_rtpsize", "aead_xchacha20_poly1305_rtpsize", "xsalsa20_poly1305"]
    assert choose_mode(both, has_aes=True) == AES_GCM_MODE
    assert choose_mode(both, has_aes=False) == XCHACHA_MODE
    assert choose_mode(both, has_aes=lambda: False) == XCHACHA_MODE
    assert choose_mode([XCHACHA_MODE], has_aes=True) == XCHACHA_MODE
    assert choose_mode([AES_GCM_MODE], has_aes=False) == AES_GCM_MODE


def test_choose_mode_lists_the_offer_when_nothing_fits() -> None:
    with pytest.raises(VoiceError, match="offered xsalsa20_poly1305, aead_aes256_gcm;"):
        choose_mode(["xsalsa20_poly1305", "aead_aes256_gcm"], has_aes=True)
    with pytest.raises(VoiceError, match="offered nothing"):
        choose_mode([], has_aes=True)


def test_cpu_has_aes_reads_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse2 aes avx2\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd aes pmull sha1\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu sse2 aesx\n")
    assert cpu_has_aes(x86)
    assert cpu_has_aes(arm)
    assert not cpu_has_aes(old)
    assert cpu_has_aes(tmp_path / "missing")


@pytest.mark.parametrize("fast", [True, False])
def test_xchacha_fast_and_binding_paths_agree(fast: bool) -> None:
    cipher = XChaChaCipher(KEY, fast=fast)
    raw = load_hex("xchacha_rtpsize.hex")[0]
    assert cipher.decrypt_rtp(raw, parse_header(raw)) == OPUS
    big = RtpHeader(1, 2, 3)
    payload = os.urandom(5000)  # larger than the reusable buffer
    packet = cipher.encrypt_rtp(big, payload, 1)
    assert cipher.decrypt_rtp(packet, big) == payload
    tampered = bytearray(raw)
    tampered[20] ^= 4
    with pytest.raises(DecryptError):
        cipher.decrypt_rtp(bytes(tampered), parse_header(raw))
    assert cipher.decrypt_rtp(raw, parse_header(raw)) == OPUS  # state survives a failure
