"""Recorder benchmark: CPU per speaker while recording, memory over a 2-hour meeting.

Real Opus packets (libopus through PyAV, 64 kb/s, a voiced, syllable-modulated signal
per speaker) are fed to a :class:`notetaker.recorder.Recorder` writing real files and a
real SQLite index in a temporary directory.

1. CPU: 10 speakers talking without pause for ``--minutes`` of meeting time, frames
   stamped with real-time arrival times and fed as fast as possible; ``process_time``
   spent in ``Recorder.write`` / ``tick``, as a percentage of one core per speaker in
   real time (target < 1 %).
2. Memory: a ``--hours`` meeting (default 2) with 10 speakers taking turns, 1 % packet
   loss reported as gaps, and a reconnect every 30 minutes, fed as fast as possible
   while the meeting clock advances; Python heap growth (tracemalloc) and resident set
   growth between the end of the first simulated minute and the end (target < 50 MB).

    .venv/bin/python bench/bench_recorder.py [--minutes 5] [--hours 2] [--fsync]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from notetaker.recorder import DataLayout, MeetingIndex, Recorder, RecorderConfig
from notetaker.sink import AudioFrame, Gap

RATE = 48_000
FRAME = 960
SPEAKERS = 10
START = 10_000.0


def voice_packets(f0: float, seconds: float = 10.0) -> list[bytes]:
    """Opus packets of a harmonic signal with a 4 Hz syllable envelope."""
    cc = av.CodecContext.create("libopus", "w")
    cc.sample_rate = RATE
    cc.layout = "stereo"
    cc.format = "s16"
    cc.bit_rate = 64_000
    cc.time_base = Fraction(1, RATE)
    n = int(seconds * 50) * FRAME
    t = np.arange(n) / RATE
    harmonics = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2 * t))
    wave = (0.2 * 32767 * harmonics / 2 * envelope).clip(-32767, 32767).astype(np.int16)
    stereo = np.repeat(wave, 2).reshape(1, -1)
    out: list[bytes] = []
    for s in range(0, n, FRAME):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo[:, 2 * s : 2 * (s + FRAME)]), format="s16", layout="stereo"
        )
        frame.sample_rate = RATE
        frame.pts = s
        out.extend(bytes(p) for p in cc.encode(frame))
    return out[: n // FRAME]


def rss_bytes() -> int:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def new_recorder(data: Path, config: RecorderConfig) -> Recorder:
    index = MeetingIndex.open(data)
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=1, started_at=time.time())
    return Recorder(DataLayout(data), mid, started_at=START, config=config, index=index)


def bench_cpu(packets: list[list[bytes]], minutes: float, config: RecorderConfig) -> None:
    steps = int(minutes * 60 * 50)
    frames = [
        AudioFrame(
            uid, uid, i & 0xFFFF, (uid * 7919 + i * FRAME) & 0xFFFF_FFFF,
            START + i * 0.02 + 0.001 * uid, packets[uid][i % len(packets[uid])],
        )
        for i in range(steps)
        for uid in range(SPEAKERS)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        recorder = new_recorder(Path(tmp), config)
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        next_tick = START + 1.0
        for frame in frames:
            recorder.write(frame)
            if frame.arrival >= next_tick:  # the bot's once-a-second timer
                recorder.tick(frame.arrival)
                next_tick += 1.0
        recorder.close_at(START + steps * 0.02)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.opus"))
    audio_s = steps * 0.02
    per_speaker = cpu / (audio_s * SPEAKERS) * 100
    print(f"CPU: {SPEAKERS} speakers x {minutes:g} min of continuous speech, fsync={config.fsync}")
    print(f"  frames              {len(frames):,}")
    print(f"  process time        {cpu:.3f} s   (wall {wall:.3f} s)")
    print(f"  per frame           {cpu / len(frames) * 1e6:.2f} us")
    print(f"  per speaker         {per_speaker:.4f} % of one core in real time  (target < 1 %)")
    print(f"  all {SPEAKERS} speakers     {per_speaker * SPEAKERS:.3f} % of one core")
    kbps = size * 8 / audio_s / SPEAKERS / 1e3
    print(f"  written             {size / 1e6:.1f} MB ({kbps:.1f} kb/s per speaker)")


def bench_memory(packets: list[list[bytes]], hours: float, config: RecorderConfig) -> None:
    rng = random.Random(1)
    steps = int(hours * 3600 * 50)
    warmup = 60 * 50
    reconnect_every = 30 * 60 * 50
    turn_steps = 15 * 50  # a 15 s turn each, three people talking at a time
    seq = [0] * SPEAKERS
    base = [rng.getrandbits(32) for _ in range(SPEAKERS)]
    ssrc = list(range(1, SPEAKERS + 1))
    with tempfile.TemporaryDirectory() as tmp:
        recorder = new_recorder(Path(tmp), config)
        heap0 = rss0 = 0
        cpu0 = time.process_time()
        for step in range(steps):
            if step == warmup:
                gc.collect()
                tracemalloc.start()
                heap0, rss0 = tracemalloc.get_traced_memory()[0], rss_bytes()
            now = START + step * 0.02
            if step and step % reconnect_every == 0:
                recorder.mark_reconnect(now - 1.5, now, "bench")
                base = [rng.getrandbits(32) for _ in range(SPEAKERS)]
                ssrc = [s + SPEAKERS for s in ssrc]
            if step % 50 == 0:
                recorder.tick(now)
            first = (step // turn_steps) % SPEAKERS
            for uid in (first, (first + 3) % SPEAKERS, (first + 7) % SPEAKERS):
                seq[uid] += 1
                if rng.random() < 0.01:
                    recorder.gap(Gap(uid, ssrc[uid], seq[uid] & 0xFFFF, 1, "loss"))
                    continue
                recorder.write(
                    AudioFrame(
                        uid, ssrc[uid], seq[uid] & 0xFFFF,
                        (base[uid] + step * FRAME) & 0xFFFF_FFFF,
                        now + 0.002, packets[uid][step % len(packets[uid])],
                    )
                )  # fmt: skip
        recorder.close_at(START + steps * 0.02)
        cpu = time.process_time() - cpu0
        heap1, heap_peak = tracemalloc.get_traced_memory()
        rss1 = rss_bytes()
        tracemalloc.stop()
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.opus"))
        events = len(MeetingIndex.open(tmp).get_meeting(recorder.meeting_id).events)
    print(f"Memory: a {hours:g} h meeting, {SPEAKERS} speakers (3 talking at a time), 1 % loss,"
          " a reconnect every 30 min")  # fmt: skip
    print(f"  simulated in        {cpu:.1f} s of CPU (tracemalloc on after the first minute)")
    print(f"  heap growth         {(heap1 - heap0) / 1e6:.3f} MB (peak {heap_peak / 1e6:.3f} MB)")
    print(f"  RSS growth          {(rss1 - rss0) / 1e6:.3f} MB  (target < 50 MB)")
    print(f"  timeline events     {events:,} in the index")
    print(f"  written             {size / 1e6:.1f} MB of Ogg Opus")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--fsync", action="store_true")
    args, _ = parser.parse_known_args(argv)  # nox passes the same posargs to every bench
    config = RecorderConfig(fsync=args.fsync)
    packets = [voice_packets(110.0 + 23.0 * uid) for uid in range(SPEAKERS)]
    bench_cpu(packets, args.minutes, config)
    bench_memory(packets, args.hours, config)


if __name__ == "__main__":
    main(sys.argv[1:])
