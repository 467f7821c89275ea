"""A meeting recorded on disk, as /stopnotes leaves it before the notes: the real
recorder writing real Ogg Opus tracks (a tone per speaker: alice 330 Hz, bob 550 Hz),
the real index, and (optionally) its transcript lines."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path

from notetaker.recorder import DataLayout, MeetingIndex, Recorder
from notetaker.sink import AudioFrame
from notetaker.transcript import Segment
from notetaker.voice.opus import Encoder

ALICE, BOB = 1_000_000_000_000_000_001, 1_000_000_000_000_000_002
STARTED = 1_790_000_000.0
LINES = [
    (ALICE, 0.5, 2.0, "Good morning, the release is ready."),
    (BOB, 2.5, 4.5, "Then we ship it on Friday."),
    (ALICE, 5.0, 5.8, "Agreed."),
]


def record_meeting(
    data: Path,
    seconds: float = 6.0,
    guild_id: int = 5,
    *,
    started_at: float = STARTED,
    lines: Sequence[tuple[int, float, float, str]] = LINES,
) -> int:
    """The meeting's id. With ``lines`` it is left ``transcribing`` with them as its
    transcript; without, ``recording`` with none."""
    index = MeetingIndex.open(data)
    mid = index.create_meeting(
        guild_id=guild_id,
        channel_id=6,
        started_by=ALICE,
        started_at=started_at,
        channel_name="standup",
    )
    names = {ALICE: "alice", BOB: "bob"}
    rec = Recorder(
        DataLayout(data),
        mid,
        index=index,
        started_at=0.0,
        display_name=names.get,
        clock=lambda: 0.0,
    )
    enc = Encoder()
    for uid, hz, ssrc in ((ALICE, 330.0, 11), (BOB, 550.0, 22)):
        for n in range(int(seconds * 50)):
            pcm = b"".join(
                struct.pack("<hh", s, s)
                for s in (
                    int(6000 * math.sin(2 * math.pi * hz * (n * 960 + i) / 48_000))
                    for i in range(960)
                )
            )
            rec.write(AudioFrame(uid, ssrc, n, n * 960, n * 0.02, enc.encode(pcm)))
    rec.close_at(seconds)
    if lines:
        index.add_segments(mid, 1, [Segment(u, s, e, t) for u, s, e, t in lines])
        index.set_status(mid, "transcribing", at=started_at + seconds)
    index.close()
    return mid
