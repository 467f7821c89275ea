"""A full disk during a live meeting: the channel's callback hears a sentence on the
event loop, the meeting goes on, and the notes' coverage says where and why the
speaker's audio ends.

The recorder, the cutter, the queue, the index and the notes are real; the engine is a
stand-in that "hears" one word per utterance, and the disk fills up through the
recorder's file seam.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import io
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest

from notetaker import meeting as meeting_module
from notetaker.commands import Member
from notetaker.config import Settings
from notetaker.meeting import RecordedMeeting, make_queue
from notetaker.recorder import MeetingIndex, Recorder
from notetaker.recorder.track import open_new
from notetaker.sink import AudioFrame
from notetaker.transcript import Segment, Transcriber, UtteranceAudio, UtteranceResult
from notetaker.voice.opus import Encoder

ALICE, BOB = 5, 6
GUARD_S = 30.0  # a guard against a hang, never a timing assertion


class OneWord(Transcriber):
    name = "one-word"

    def transcribe_utterances(self, batch: Sequence[UtteranceAudio]) -> list[UtteranceResult]:
        return [
            UtteranceResult(
                (Segment(a.user_id, a.start_s, a.start_s + a.duration_s, "hello"),), "en", 0.9
            )
            for a in batch
        ]


class _Filling(io.FileIO):
    """A disk with ``budget`` bytes free: writes what fits, then ENOSPC."""

    def __init__(self, path: Path, budget: int) -> None:
        super().__init__(path, "xb")
        self.left = budget

    def write(self, data: object) -> int:
        if self.left <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = super().write(memoryview(data)[: self.left]) or 0  # type: ignore[arg-type]
        self.left -= written
        return written


def alice_fills_the_disk(path: Path) -> BinaryIO:
    # Headers and two pages (two seconds) of Alice's audio fit.
    if int(path.stem) == ALICE:
        return io.BufferedWriter(_Filling(path, 17_000))
    return open_new(path)


@functools.cache
def tone(hz: float, count: int) -> tuple[bytes, ...]:
    enc = Encoder()
    wave = (8000 * np.sin(2 * math.pi * hz * np.arange(count * 960) / 48_000)).astype("<i2")
    stereo = np.repeat(wave, 2)
    return tuple(enc.encode(stereo[1920 * i : 1920 * (i + 1)].tobytes()) for i in range(count))


async def test_a_full_disk_is_told_and_marked_in_the_notes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        meeting_module, "Recorder", functools.partial(Recorder, open_file=alice_fills_the_disk)
    )
    settings = Settings(data_dir=tmp_path / "data")
    queue = make_queue(settings, OneWord())
    names = {ALICE: "Alice", BOB: "Bob"}
    meeting = RecordedMeeting(
        settings,
        guild_id=1,
        voice_channel_id=2,
        started_by=Member(ALICE, "Alice"),
        queue=queue,
        display_name=names.get,
    )
    told: list[tuple[str, threading.Thread]] = []
    heard = asyncio.Event()

    def tell(text: str) -> None:
        told.append((text, threading.current_thread()))
        heard.set()

    meeting.listen_failures(tell)
    start = meeting.recorder.started_at
    for i in range(250):  # five seconds each, interleaved as they arrive
        for uid, hz in ((ALICE, 330.0), (BOB, 550.0)):
            frame = AudioFrame(uid, uid, i, i * 960, start + i * 0.02, tone(hz, 250)[i])
            meeting.sink.write(frame)
    await asyncio.wait_for(heard.wait(), GUARD_S)  # told by the meeting's ticker
    ((text, thread),) = told
    assert thread is threading.current_thread()  # on the event loop, ready to post
    assert text.startswith("Recording of Alice stopped at 00:02: the disk is full")

    async def progress(_: str) -> None:
        pass

    try:
        result = await meeting.finish(progress)
    finally:
        queue.close()
    assert len(told) == 1
    assert "- Alice: audio missing 00:02-00:05, Alice: disk full" in result.markdown
    assert "Bob: audio missing" not in result.markdown
    index = MeetingIndex.open(settings.data_dir)
    stopped = [(e.user_id, e.at_ms, e.detail) for e in index.get_meeting(meeting.meeting_id).events
               if e.kind == "stopped"]  # fmt: skip
    assert stopped == [(ALICE, 2000, "disk full")]
    assert index.get_meeting(meeting.meeting_id).status == "done"
    index.close()
