"""Receive-path throughput: packets per second per core, notetaker vs py-cord.

Pre-generates encrypted RTP packets of real Opus (a sine, 64 kb/s, with Discord's 8-byte
header extension as on forwarded audio) for 1, 10 and 100 simulated speakers,
interleaved as they would arrive (one packet per speaker per 20 ms), then times only
the feed loop: classify -> transport decrypt -> extension skip -> SSRC map -> jitter
buffer -> sink (no Opus decode). CPU time (``process_time``) is what "per core" means.

When py-cord is importable, the same XChaCha packets also go through py-cord 2.8.x's
own receive path, without its threads: ``discord.voice.packets.rtp.decode`` ->
``PacketDecryptor`` decrypt for ``aead_xchacha20_poly1305_rtpsize`` -> a per-SSRC
``JitterBuffer`` push/pop -> ``VoiceData`` (its speaking timer, event router and sink
threads are left out, which flatters py-cord). Run it in a py-cord environment::

    python bench/bench_receive.py            # notetaker only, or both with py-cord
    python bench/bench_receive.py --packets 200000 --speakers 1,10,100

Targets (for the engine, later): >= 20,000 packets/s/core and >= 3x py-cord.
"""

from __future__ import annotations

import argparse
import gc
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from notetaker.sink import AudioFrame, AudioSink
from notetaker.voice.opus import Encoder
from notetaker.voice.pipeline import ReceivePipeline
from notetaker.voice.transport_crypto import (
    AES_GCM_MODE,
    XCHACHA_MODE,
    Packetizer,
    TransportCipher,
    make_cipher,
)

KEY = bytes(range(7, 39))
DISCORD_EXTENSION = bytes.fromhex("10 7f 00 00 00 00 00 00")
DISTINCT_FRAMES = 50


class CountingSink(AudioSink):
    """Counts frames and bytes; stands in for the recorder without any I/O."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0

    def write(self, frame: AudioFrame) -> None:
        self.frames += 1
        self.bytes += len(frame.opus)


@dataclass
class Workload:
    speakers: int
    datagrams: list[bytes]
    arrivals: list[float]
    ssrcs: list[int]
    opus: list[bytes]


def sine_frames(count: int) -> list[bytes]:
    encoder = Encoder(bitrate=64_000)
    frames = []
    for i in range(count):
        samples = (
            int(8000 * math.sin(2 * math.pi * 440 * (i * 960 + n) / 48_000)) for n in range(960)
        )
        pcm = b"".join(struct.pack("<hh", s, s) for s in samples)
        frames.append(encoder.encode(pcm))
    return frames


def make_workload(
    cipher: TransportCipher, speakers: int, total: int, opus: list[bytes]
) -> Workload:
    ssrcs = [1000 + i for i in range(speakers)]
    senders = [
        Packetizer(cipher, ssrc, sequence=(i * 4099) & 0xFFFF, extension_body=DISCORD_EXTENSION)
        for i, ssrc in enumerate(ssrcs)
    ]
    datagrams: list[bytes] = []
    arrivals: list[float] = []
    rounds = max(1, total // speakers)
    for r in range(rounds):
        frame = opus[r % len(opus)]
        for s, sender in enumerate(senders):
            datagrams.append(sender.packet(frame))
            arrivals.append(r * 0.02 + s * 0.02 / speakers)
    return Workload(speakers, datagrams, arrivals, ssrcs, opus)


def timed(run: Callable[[], int]) -> tuple[float, float, int]:
    gc.collect()
    gc.disable()
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        delivered = run()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        gc.enable()
    return cpu, wall, delivered


def run_notetaker(cipher: TransportCipher, work: Workload) -> tuple[float, float, int]:
    sink = CountingSink()
    pipeline = ReceivePipeline(cipher, sink)
    for i, ssrc in enumerate(work.ssrcs):
        pipeline.map_ssrc(ssrc, 10_000 + i)
    datagrams, arrivals, speakers = work.datagrams, work.arrivals, work.speakers

    def loop() -> int:
        feed, tick = pipeline.feed, pipeline.tick
        for i, datagram in enumerate(datagrams):
            feed(datagram, arrivals[i])
            if i % speakers == speakers - 1:
                tick(arrivals[i])  # the receive loop's 20 ms timer
        pipeline.close()
        return sink.frames

    result = timed(loop)
    bad = {k: v for k, v in pipeline.stats.dropped.items() if v}
    if bad:
        raise SystemExit(f"notetaker dropped packets in the benchmark: {bad}")
    return result


def load_pycord() -> Any | None:
    try:
        import discord
        from discord.voice.packets import VoiceData
        from discord.voice.packets.rtp import decode
        from discord.voice.receive.reader import PacketDecryptor, is_rtcp
        from discord.voice.utils.buffer import JitterBuffer
    except Exception as exc:  # ImportError, or py-cord's MissingVoiceDependenciesError
        return SimpleNamespace(error=f"{type(exc).__name__}: {exc}")
    return SimpleNamespace(
        error=None,
        version=discord.__version__,
        VoiceData=VoiceData,
        decode=decode,
        PacketDecryptor=PacketDecryptor,
        is_rtcp=is_rtcp,
        JitterBuffer=JitterBuffer,
    )


def run_pycord(pc: Any, work: Workload) -> tuple[float, float, int]:
    client = SimpleNamespace(_connection=SimpleNamespace(dave_session=None, ssrc_user_map={}))
    decryptor = pc.PacketDecryptor(XCHACHA_MODE, KEY, client)
    decode, is_rtcp, VoiceData = pc.decode, pc.is_rtcp, pc.VoiceData
    buffers = {ssrc: pc.JitterBuffer() for ssrc in work.ssrcs}
    users = {ssrc: object() for ssrc in work.ssrcs}
    # py-cord 2.8.1's decrypt_rtp() returns packet.decrypted_data, which is still None
    # when DAVE is off, so its reader drops every packet; we call the mode's decrypt
    # function it uses (same cost) and keep the result, as a working reader would.
    decrypt = decryptor._decryptor_rtp
    first = decode(work.datagrams[0])
    if decrypt(first) != work.opus[0]:
        raise SystemExit("py-cord decrypted the benchmark packets to something else")
    datagrams = work.datagrams
    out: list[int] = [0]

    def loop() -> int:
        delivered = 0
        for data in datagrams:
            if is_rtcp(data):
                continue
            packet = decode(data)
            packet.decrypted_data = decrypt(packet)
            buffer = buffers[packet.ssrc]
            buffer.push(packet)
            while (ready := buffer.pop(timeout=0)) is not None:
                VoiceData(ready, users[packet.ssrc])
                delivered += 1
        for buffer in buffers.values():
            delivered += len(buffer.flush())
        out[0] = delivered
        return delivered

    return timed(loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100_000, help="packets per run")
    parser.add_argument("--speakers", default="1,10,100")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the best counts")
    args = parser.parse_args()
    speaker_counts = [int(s) for s in args.speakers.split(",")]
    opus = sine_frames(DISTINCT_FRAMES)
    pc = load_pycord()
    print(f"receive path, {args.packets} packets per run, best of {args.repeat}, CPU time")
    print(f"Opus payload {min(map(len, opus))}-{max(map(len, opus))} B, X=1 with 8 B extension")
    if pc.error:
        print(f"py-cord: not importable here ({pc.error}); run this in a py-cord venv")
    else:
        print(f"py-cord {pc.version}: reader decode + XChaCha decrypt + JitterBuffer (no threads)")
    header = f"{'speakers':>8} {'mode':<8} {'notetaker pkt/s':>16} {'us/pkt':>7}"
    header += f" {'py-cord pkt/s':>14} {'us/pkt':>7} {'ratio':>6}"
    print(header)
    for speakers in speaker_counts:
        for mode, label in ((AES_GCM_MODE, "aes-gcm"), (XCHACHA_MODE, "xchacha")):
            cipher = make_cipher(mode, KEY)
            work = make_workload(cipher, speakers, args.packets, opus)
            n = len(work.datagrams)
            ours = min(run_notetaker(cipher, work)[0] for _ in range(args.repeat))
            row = f"{speakers:>8} {label:<8} {n / ours:>16,.0f} {ours / n * 1e6:>7.2f}"
            if mode == XCHACHA_MODE and not pc.error:
                theirs = min(run_pycord(pc, work)[0] for _ in range(args.repeat))
                row += f" {n / theirs:>14,.0f} {theirs / n * 1e6:>7.2f} {theirs / ours:>5.1f}x"
            elif mode == XCHACHA_MODE:
                row += f" {'n/a':>14} {'':>7} {'':>6}"
            print(row)


if __name__ == "__main__":
    main()
