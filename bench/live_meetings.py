"""Generated meetings for the transcription benchmarks, as a Discord client would send them.

A meeting is a script of turns by four speakers (espeak-ng voices), synthesised line by
line and encoded the way a client sends: 20 ms Opus packets while talking, five silence
frames when the speaker goes quiet, then nothing (the simulator's own participant code
cuts the pauses). The packets of the whole meeting are written to one file, in arrival
order, so that a replay streams them without holding the meeting in memory:

    u32 time (ms since the meeting start)  u8 speaker  u16 length  <Opus packet>

The script and each speaker's words are kept beside it (``script.json``) for the WER.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SPEAKERS = ("alice", "bob", "carol", "dave")
VOICES = {"alice": "en-us", "bob": "en-gb", "carol": "en-us+f3", "dave": "en-gb-x-rp"}
USER_IDS = {name: 1000 + i for i, name in enumerate(SPEAKERS)}
_HEAD = struct.Struct("<IBH")

_SUBJECTS = (
    "the new release", "the budget", "the server costs", "the design review", "the test plan",
    "the documentation", "the support queue", "the hiring plan", "the office move",
    "the customer survey", "the security audit", "the marketing launch", "the roadmap",
)  # fmt: skip
_PATTERNS = (
    "I think {s} needs another week before we can decide.",
    "Can we talk about {s} before the end of the meeting?",
    "The numbers for {s} look better than last month.",
    "I will send a short summary of {s} to everyone on Friday.",
    "We should ask the other team what they think about {s}.",
    "My main worry about {s} is that nobody owns it yet.",
    "Let us keep {s} on the agenda for next Tuesday.",
    "Good point. I agree that {s} is the priority this quarter.",
    "I spoke with the manager about {s} yesterday afternoon.",
    "If {s} slips again we will have to tell the customers.",
    "Thanks. That answers my question about {s}.",
    "Could you write down the open questions about {s} please?",
)


@dataclass(frozen=True)
class Generated:
    """A meeting on disk: its packets file, length, and what each speaker said."""

    packets: Path
    duration_s: float
    said: dict[str, str]
    speech_s: float
    lines: int


def script(minutes: float, seed: int = 1) -> Iterator[tuple[str, str]]:
    """(speaker, line) turns, endlessly; the caller stops at the meeting's length."""
    rng = random.Random(seed)
    last = None
    while True:
        speaker = rng.choice([s for s in SPEAKERS if s != last])
        last = speaker
        turn = " ".join(
            rng.choice(_PATTERNS).format(s=rng.choice(_SUBJECTS)) for _ in range(rng.randint(1, 3))
        )
        yield speaker, turn


def generate(folder: Path, minutes: float, seed: int = 1, gap_s: float = 0.8) -> Generated:
    """Synthesise a meeting of at least ``minutes`` into ``folder``."""
    from discordsim.voice.participants import SAMPLE_RATE, encode_opus, timeline
    from notetaker_transcribe.speech import speak

    folder.mkdir(parents=True, exist_ok=True)
    events: list[tuple[int, int, bytes]] = []
    said: dict[str, list[str]] = {s: [] for s in SPEAKERS}
    clock = 1.0
    speech_s = 0.0
    lines = 0
    for speaker, text in script(minutes, seed):
        if clock >= minutes * 60:
            break
        pcm = _stereo48(*speak(text, VOICES[speaker]))
        slots = timeline(pcm, encode_opus(pcm), -45.0, 0.3)
        start_ms = round(clock * 1000)
        for i, slot in enumerate(slots):
            if slot is not None:
                events.append((start_ms + 20 * i, SPEAKERS.index(speaker), slot))
        said[speaker].append(text)
        clock += len(pcm) / SAMPLE_RATE + gap_s
        speech_s += len(pcm) / SAMPLE_RATE
        lines += 1
    events.sort(key=lambda e: (e[0], e[1]))
    path = folder / "packets.bin"
    with path.open("wb") as out:
        for at, who, opus in events:
            out.write(_HEAD.pack(at, who, len(opus)) + opus)
    joined = {s: " ".join(t) for s, t in said.items()}
    (folder / "script.json").write_text(
        json.dumps({"duration_s": clock, "said": joined, "speech_s": speech_s, "lines": lines})
    )
    return Generated(path, clock, joined, speech_s, lines)


def load(folder: Path) -> Generated:
    meta = json.loads((folder / "script.json").read_text())
    return Generated(
        folder / "packets.bin", meta["duration_s"], meta["said"], meta["speech_s"], meta["lines"]
    )


def packets(path: Path) -> Iterator[tuple[float, str, bytes]]:
    """(seconds since the meeting start, speaker, Opus packet), in arrival order."""
    with path.open("rb") as f:
        while head := f.read(_HEAD.size):
            at, who, size = _HEAD.unpack(head)
            yield at / 1000, SPEAKERS[who], f.read(size)


def _stereo48(pcm: bytes, rate: int) -> object:
    """espeak's mono 16-bit PCM as 48 kHz stereo s16 (samples, 2), as a client captures."""
    import numpy as np

    mono = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    n = round(len(mono) * 48_000 / rate)
    resampled = np.interp(np.arange(n) * rate / 48_000, np.arange(len(mono)), mono)
    return np.repeat(resampled.astype(np.int16)[:, None], 2, axis=1)
