"""A small ctypes binding to the system libopus: decode (with loss concealment) and encode.

Only what notetaker needs: 48 kHz, s16le interleaved PCM, 20 ms frames by default. The
library is loaded on first use, so importing this module never fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any, Final

from notetaker.errors import NotetakerError, PacketError

SAMPLE_RATE: Final = 48_000
CHANNELS: Final = 2
FRAME_SAMPLES: Final = 960
#: 120 ms at 48 kHz: the longest frame an Opus packet can carry.
MAX_FRAME_SAMPLES: Final = 5760
MAX_PACKET_SIZE: Final = 4000

APPLICATION_VOIP: Final = 2048
APPLICATION_AUDIO: Final = 2049
_SET_BITRATE: Final = 4002
_SET_INBAND_FEC: Final = 4012
_SET_PACKET_LOSS_PERC: Final = 4014


class OpusUnavailable(NotetakerError):
    """libopus could not be loaded."""


class OpusError(PacketError):
    """libopus rejected a packet or a call; ``reason`` is ``opus``."""

    reason = "opus"


_lib: Any = None
_lib_lock = threading.Lock()


def _load() -> Any:
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        name = ctypes.util.find_library("opus")
        if name is None:
            raise OpusUnavailable(
                "libopus not found: install it (Debian/Ubuntu: `apt install libopus0`, "
                "macOS: `brew install opus`)"
            )
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise OpusUnavailable(f"libopus ({name}) could not be loaded: {exc}") from exc
        p = ctypes.c_void_p
        i = ctypes.c_int
        lib.opus_strerror.argtypes = [i]
        lib.opus_strerror.restype = ctypes.c_char_p
        lib.opus_get_version_string.argtypes = []
        lib.opus_get_version_string.restype = ctypes.c_char_p
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, i, ctypes.POINTER(i)]
        lib.opus_decoder_create.restype = p
        lib.opus_decode.argtypes = [
            p,
            ctypes.c_char_p,
            ctypes.c_int32,
            ctypes.POINTER(ctypes.c_int16),
            i,
            i,
        ]
        lib.opus_decode.restype = i
        lib.opus_decoder_destroy.argtypes = [p]
        lib.opus_decoder_destroy.restype = None
        lib.opus_encoder_create.argtypes = [ctypes.c_int32, i, i, ctypes.POINTER(i)]
        lib.opus_encoder_create.restype = p
        lib.opus_encode.argtypes = [p, ctypes.c_char_p, i, ctypes.c_char_p, ctypes.c_int32]
        lib.opus_encode.restype = ctypes.c_int32
        lib.opus_encoder_destroy.argtypes = [p]
        lib.opus_encoder_destroy.restype = None
        # opus_encoder_ctl is variadic; ctypes passes the extra int arguments as ints.
        lib.opus_encoder_ctl.restype = i
        _lib = lib
        return lib


def _error(code: int) -> str:
    message: bytes = _load().opus_strerror(code)
    return message.decode(errors="replace")


def version() -> str:
    """The libopus version string, e.g. ``libopus 1.4``."""
    text: bytes = _load().opus_get_version_string()
    return text.decode()


class Decoder:
    """One Opus decoder (keeps state between packets: use one per speaker, in order)."""

    __slots__ = ("_buffer", "_lib", "_state", "channels", "sample_rate")

    def __init__(self, sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> None:
        self._lib = _load()
        self._state: int | None = None
        error = ctypes.c_int(0)
        state = self._lib.opus_decoder_create(sample_rate, channels, ctypes.byref(error))
        if error.value != 0 or not state:
            raise OpusError(f"opus: decoder_create failed: {_error(error.value)}")
        self._state = state
        self.sample_rate = sample_rate
        self.channels = channels
        self._buffer = (ctypes.c_int16 * (MAX_FRAME_SAMPLES * channels))()

    def decode(self, packet: bytes | None, *, fec: bool = False) -> bytes:
        """PCM (s16le, interleaved) for ``packet``; ``None`` conceals one lost 20 ms frame.

        With ``fec=True`` the frame *before* ``packet`` is rebuilt from its in-band FEC.
        Raises :class:`OpusError` for a corrupt packet.
        """
        if packet is None or fec:
            frame = FRAME_SAMPLES * self.sample_rate // SAMPLE_RATE
        else:
            frame = MAX_FRAME_SAMPLES * self.sample_rate // SAMPLE_RATE
        size = 0 if packet is None else len(packet)
        n = self._lib.opus_decode(self._state, packet, size, self._buffer, frame, int(fec))
        if n < 0:
            raise OpusError(f"opus: cannot decode a {size}-byte packet: {_error(n)}")
        return ctypes.string_at(self._buffer, n * self.channels * 2)

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.opus_decoder_destroy(self._state)
            self._state = None


class Encoder:
    """One Opus encoder, for tests, benchmarks, fixtures and a real sender."""

    __slots__ = ("_lib", "_out", "_state", "channels", "sample_rate")

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        channels: int = CHANNELS,
        *,
        application: int = APPLICATION_AUDIO,
        bitrate: int = 64_000,
        fec: bool = False,
        packet_loss_percent: int = 0,
    ) -> None:
        self._lib = _load()
        self._state: int | None = None
        error = ctypes.c_int(0)
        state = self._lib.opus_encoder_create(
            sample_rate, channels, application, ctypes.byref(error)
        )
        if error.value != 0 or not state:
            raise OpusError(f"opus: encoder_create failed: {_error(error.value)}")
        self._state = state
        self.sample_rate = sample_rate
        self.channels = channels
        self._out = ctypes.create_string_buffer(MAX_PACKET_SIZE)
        self._ctl(_SET_BITRATE, bitrate)
        self._ctl(_SET_INBAND_FEC, int(fec))
        self._ctl(_SET_PACKET_LOSS_PERC, packet_loss_percent)

    def _ctl(self, request: int, value: int) -> None:
        code = self._lib.opus_encoder_ctl(
            ctypes.c_void_p(self._state), ctypes.c_int(request), ctypes.c_int(value)
        )
        if code != 0:
            raise OpusError(f"opus: encoder_ctl({request}, {value}) failed: {_error(code)}")

    def encode(self, pcm: bytes, frame_samples: int = FRAME_SAMPLES) -> bytes:
        """One Opus packet for ``frame_samples`` per channel of s16le interleaved PCM."""
        expected = frame_samples * self.channels * 2
        if len(pcm) != expected:
            raise ValueError(f"opus: {len(pcm)} bytes of PCM, expected {expected}")
        n = self._lib.opus_encode(self._state, pcm, frame_samples, self._out, MAX_PACKET_SIZE)
        if n < 0:
            raise OpusError(f"opus: encode failed: {_error(n)}")
        return ctypes.string_at(self._out, n)

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.opus_encoder_destroy(self._state)
            self._state = None
