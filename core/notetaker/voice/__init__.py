"""notetaker's own voice receive engine.

The packet layer lives here, free of sockets: ``rtp`` (framing), ``discovery`` (IP
discovery), ``transport_crypto`` (rtpsize AEAD), ``classify`` (what a datagram is),
``jitter`` (per-speaker reordering), ``stats`` (counters), ``opus`` (libopus via ctypes)
and ``pipeline`` (all of them joined: datagram in, ``AudioSink`` calls out).
"""

from __future__ import annotations

from notetaker.voice.pipeline import FrameDecryptor, PassthroughDecryptor, ReceivePipeline
from notetaker.voice.stats import ReceiveStats
from notetaker.voice.transport_crypto import TransportCipher, choose_mode, make_cipher

__all__ = [
    "FrameDecryptor",
    "PassthroughDecryptor",
    "ReceivePipeline",
    "ReceiveStats",
    "TransportCipher",
    "choose_mode",
    "make_cipher",
]
