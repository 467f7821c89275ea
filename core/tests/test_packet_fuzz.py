"""Hypothesis throws arbitrary and mutated datagrams at the packet layer.

Nothing may escape ``feed``, nothing may be counted as an internal error (every bad
input must be recognised as a PacketError), and the counters must add up after every
datagram: received == ignored + dropped + delivered + still pending.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from notetaker.errors import PacketError
from notetaker.sink import CaptureSink
from notetaker.voice.classify import classify
from notetaker.voice.discovery import parse_discovery
from notetaker.voice.jitter import seq_diff
from notetaker.voice.pipeline import ReceivePipeline
from notetaker.voice.rtp import (
    RtpHeader,
    header_layout,
    parse_extension_elements,
    parse_header,
)
from notetaker.voice.transport_crypto import AES_GCM_MODE, XCHACHA_MODE, make_cipher

KEY = bytes(range(32))
CIPHERS = {mode: make_cipher(mode, KEY) for mode in (AES_GCM_MODE, XCHACHA_MODE)}
SSRCS = (11, 22, 33)
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def balanced(pipeline: ReceivePipeline) -> bool:
    s = pipeline.stats
    return s.received == s.ignored_total + s.dropped_total + s.delivered + pipeline.pending


def new_pipeline(mode: str, wants_pcm: bool = False) -> tuple[ReceivePipeline, CaptureSink]:
    sink = CaptureSink(wants_pcm=wants_pcm)
    pipeline = ReceivePipeline(CIPHERS[mode], sink, max_held=8, max_wait=0.1, prefill=2)
    pipeline.map_ssrc(SSRCS[0], 1)
    pipeline.map_ssrc(SSRCS[1], 2)  # SSRCS[2] stays unknown
    return pipeline, sink


@FUZZ
@given(st.lists(st.binary(max_size=120), max_size=40), st.sampled_from(sorted(CIPHERS)))
def test_arbitrary_bytes(datagrams: list[bytes], mode: str) -> None:
    pipeline, _ = new_pipeline(mode)
    for i, datagram in enumerate(datagrams):
        pipeline.feed(datagram, i * 0.01)
        assert balanced(pipeline)
    pipeline.close()
    assert "internal" not in pipeline.stats.dropped
    assert pipeline.pending == 0 and balanced(pipeline)


@FUZZ
@given(st.binary(max_size=200))
def test_parsers_raise_only_packet_errors(data: bytes) -> None:
    classify(data)
    try:
        header = parse_header(data)
    except PacketError as exc:
        with pytest.raises(PacketError, match=re.escape(str(exc))):
            header_layout(data)
    else:
        assert header_layout(data) == (
            header.sequence,
            header.timestamp,
            header.ssrc,
            header.size,
            header.extension_body_size,
            header.padding,
        )
    for parse in (parse_header, parse_discovery, parse_extension_elements):
        with contextlib.suppress(PacketError):
            parse(data)
    for cipher in CIPHERS.values():
        with contextlib.suppress(PacketError):
            cipher.decrypt_rtp(data, parse_header(data))
        with contextlib.suppress(PacketError):
            cipher.decrypt_rtcp(data)


packet_spec = st.tuples(
    st.sampled_from(SSRCS),
    st.integers(0, 65535),  # sequence number
    st.floats(0.0, 0.2),  # time since the previous datagram
    st.sampled_from(["ok", "flip", "truncate", "extend", "silence", "garbage-opus", "pad"]),
    st.integers(0, 200),  # mutation position / amount
    st.booleans(),  # X=1 with Discord's 8-byte extension
)


def build(mode: str, ssrc: int, seq: int, how: str, where: int, ext: bool) -> bytes:
    opus = b"\xf8\xff\xfe" if how == "silence" else b"\xfc" + seq.to_bytes(2, "big")
    if how == "garbage-opus":
        opus = b"\xff\xff\xff"
    header = RtpHeader(seq, seq * 960, ssrc, extension=ext, extension_length=2 if ext else 0)
    if how == "pad":
        header.padding = True
        opus += bytes([where % 8 + 1])  # often an invalid padding count
    packet = bytearray(CIPHERS[mode].encrypt_rtp(header, opus, seq, bytes(8) if ext else b""))
    if how == "flip":
        packet[where % len(packet)] ^= 1 << (where % 8)
    elif how == "truncate":
        del packet[len(packet) - 1 - where % len(packet) :]
    elif how == "extend":
        packet += bytes(where % 17)
    return bytes(packet)


def increasing(seqs: list[int]) -> bool:
    return all(seq_diff(b, a) > 0 for a, b in itertools.pairwise(seqs))


@FUZZ
@given(
    st.lists(packet_spec, max_size=60),
    st.sampled_from(sorted(CIPHERS)),
    st.booleans(),
)
# CI found it: a padding-only packet held in the jitter buffer was counted as ignored and
# as pending at once.
@example([(11, 0, 0.0, "ok", 0, False)] * 4 + [(11, 0, 0.0, "pad", 3, False)], AES_GCM_MODE, False)
@example([(11, 5, 0.0, "pad", 0, False), (11, 7, 0.0, "ok", 0, False)], AES_GCM_MODE, False)
def test_mutated_valid_packets(
    specs: list[tuple[int, int, float, str, int, bool]], mode: str, pcm: bool
) -> None:
    pipeline, sink = new_pipeline(mode, wants_pcm=pcm)
    now = 0.0
    for ssrc, seq, delta, how, where, ext in specs:
        now += delta
        pipeline.feed(build(mode, ssrc, seq, how, where, ext), now)
        pipeline.tick(now)
        assert balanced(pipeline)
    assert "internal" not in pipeline.stats.dropped
    # A sequence jump beyond resync_after restarts the stream: order holds per stream.
    resynced = {sp.user_id for sp in pipeline._speakers.values() if sp.buffer.resyncs}
    pipeline.close()
    assert pipeline.pending == 0 and balanced(pipeline)
    assert "internal" not in pipeline.stats.dropped
    for uid, frames in sink.by_user().items():
        if uid not in resynced:
            assert increasing([f.sequence for f in frames])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 40), st.floats(0.0, 0.1)), max_size=80))
def test_reordered_stream_is_delivered_in_order(jumble: list[tuple[int, float]]) -> None:
    """Valid packets of one speaker near the wrap point, in any order, any repeats."""
    pipeline, sink = new_pipeline(AES_GCM_MODE)
    cipher = CIPHERS[AES_GCM_MODE]
    now = 0.0
    for offset, delta in jumble:
        now += delta
        seq = (65520 + offset) & 0xFFFF
        header = RtpHeader(seq, seq * 960, SSRCS[0])
        pipeline.feed(cipher.encrypt_rtp(header, b"\xfc" + bytes([offset]), offset), now)
        assert balanced(pipeline)
    pipeline.close()
    frames = sink.by_user().get(1, [])
    assert increasing([f.sequence for f in frames])
    assert len({f.sequence for f in frames}) == len(frames)
    assert all(f.opus[1] == (f.sequence - 65520) & 0xFFFF for f in frames)
    s = pipeline.stats
    assert s.delivered + s.dropped.get("duplicate", 0) + s.dropped.get("late", 0) == len(jumble)
