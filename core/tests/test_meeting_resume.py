"""A meeting whose process died, picked up by the next one: resumed (same tracks, same
clock, the outage marked, the speech the dead process had not transcribed done now) or
finished (notes of what was recorded, saying where it was cut short).

The recorder, the cutter, the queue, the index, the tracks and the notes are real; the
engines are stand-ins that say which process "heard" an utterance. A process "dies" here
the way SIGKILL leaves things: pages written so far on disk, no end-of-stream page, a torn
last page, the meeting left ``recording`` in the index. The real thing, with processes
killed by SIGKILL, is tests/process/test_restart.py.
"""

from __future__ import annotations

import functools
import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from notetaker.commands import Member
from notetaker.config import Settings
from notetaker.meeting import RecordedMeeting, finish_interrupted, make_queue
from notetaker.recorder import MeetingIndex
from notetaker.recorder.ogg_read import TrackReader
from notetaker.recovery import Interrupted
from notetaker.sink import AudioFrame
from notetaker.transcript import Segment, Transcriber, UtteranceAudio, UtteranceResult
from notetaker.voice.opus import Encoder

ALICE, BOB = 5, 6
NAMES = {ALICE: "Alice", BOB: "Bob"}
DOWN_S = 20.0  #: how long the "dead" process was down


class Says(Transcriber):
    """Hears ``word`` in every utterance of ``users``, nothing from anyone else."""

    name = "says"

    def __init__(self, word: str, users: frozenset[int] = frozenset({ALICE, BOB})) -> None:
        self.word, self.users = word, users

    def transcribe_utterances(self, batch: Sequence[UtteranceAudio]) -> list[UtteranceResult]:
        return [
            UtteranceResult(
                (Segment(a.user_id, a.start_s, a.start_s + a.duration_s, self.word),)
                if a.user_id in self.users
                else (),
                "en",
                0.9,
            )
            for a in batch
        ]


@functools.cache
def tone(hz: float, count: int) -> tuple[bytes, ...]:
    enc = Encoder()
    wave = (8000 * np.sin(2 * math.pi * hz * np.arange(count * 960) / 48_000)).astype("<i2")
    stereo = np.repeat(wave, 2)
    return tuple(enc.encode(stereo[1920 * i : 1920 * (i + 1)].tobytes()) for i in range(count))


def speak(meeting: RecordedMeeting, at_s: float, seconds: float, rtp0: int = 0) -> None:
    """Both speakers, ``seconds`` of tone from ``at_s`` on the meeting clock."""
    start = meeting.recorder.started_at + at_s
    count = round(seconds * 50)
    for i in range(count):
        for uid, hz in ((ALICE, 330.0), (BOB, 550.0)):
            opus = tone(hz, count)[i]
            meeting.sink.write(AudioFrame(uid, uid, i, rtp0 + i * 960, start + i * 0.02, opus))


async def die(meeting: RecordedMeeting, tear: Path) -> None:
    """What SIGKILL leaves: every whole page on disk (the wall-clock flush has run), no
    end-of-stream page, half a page torn off the end of ``tear``, the meeting
    ``recording``; then the clock of the next process lies ``DOWN_S`` later."""
    meeting.recorder.tick(meeting.recorder.started_at + 3600)
    assert meeting.recorder.flush_index(10)
    meeting._ticker.cancel()
    with tear.open("ab") as f:
        f.write(b"OggS\x00\x00" + b"\x01" * 40)  # a page cut off mid-write
    meeting.queue.close_meeting(meeting.meeting_id)
    meeting.index.close()
    # The next process starts DOWN_S later: shift the meeting's wall times back.
    db = sqlite3.connect(meeting.settings.data_dir / "notetaker.sqlite3")
    with db:
        db.execute(
            "UPDATE meetings SET started_at = started_at - ?, alive_at = alive_at - ?",
            (DOWN_S, DOWN_S),
        )
    db.close()


def first_meeting(settings: Settings, queue: object) -> RecordedMeeting:
    return RecordedMeeting(
        settings,
        guild_id=1,
        voice_channel_id=2,
        started_by=Member(ALICE, "Alice"),
        queue=queue,  # type: ignore[arg-type]
        display_name=NAMES.get,
        text_channel_id=3,
    )


async def _killed_after_alice(settings: Settings, tear: int) -> int:
    """A first process: 3 s of Alice and Bob, Alice's words transcribed (Bob's were in
    flight), then killed with ``tear``'s track torn. Returns the meeting id."""
    first_queue = make_queue(settings, Says("first", frozenset({ALICE})))
    meeting = first_meeting(settings, first_queue)
    speak(meeting, 0.0, 3.0)
    meeting.cutter.close()  # the utterances end (as a pause would end them)
    await meeting.queue.drain(meeting.meeting_id)
    await die(meeting, meeting.recorder.track_path(tear))
    first_queue.close()
    return meeting.meeting_id


async def _quiet(_: str) -> None:
    pass


def words(index: MeetingIndex, meeting_id: int, user_id: int) -> list[tuple[int, str]]:
    return [(round(s.start), s.text) for s in index.segments(meeting_id) if s.user_id == user_id]


async def test_a_resumed_meeting_continues_its_tracks_and_transcribes_what_was_left(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    # The first process transcribed Alice's words, not yet Bob's (they were in flight).
    mid = await _killed_after_alice(settings, BOB)

    queue = make_queue(settings, Says("second"))
    try:
        resumed = RecordedMeeting(
            settings,
            guild_id=1,
            voice_channel_id=2,
            started_by=Member(ALICE, "Alice"),
            queue=queue,
            display_name=NAMES.get,
            resume=mid,
        )
        assert resumed.meeting_id == mid
        await resumed.continue_after_restart()
        speak(resumed, DOWN_S + 5, 2.0, rtp0=123_456)  # a new process: new RTP bases
        result = await resumed.finish(_quiet)
    finally:
        queue.close()

    index = MeetingIndex.open(settings.data_dir)
    try:
        full = index.get_meeting(mid)
        assert full.status == "done"
        (restart,) = [e for e in full.events if e.kind == "restart"]
        assert restart.detail == "bot restarted"
        assert restart.at_ms == 3000  # where the audio on disk ended
        # The new process took over DOWN_S (plus this test's own run time) after the start.
        assert abs(restart.at_ms + restart.count - 1000 * DOWN_S) < 1500
        assert not [e for e in full.events if e.kind == "join" and e.at_ms and e.at_ms > 3000]
        # Alice's first words were not transcribed twice; Bob's, lost in flight, were
        # transcribed by the new process; both speak again after the restart.
        assert words(index, mid, ALICE) == [(0, "first"), (25, "second")]
        assert words(index, mid, BOB) == [(0, "second"), (25, "second")]
        # One stream per speaker, the torn page gone, audio after the outage in place.
        for uid in (ALICE, BOB):
            packets = list(TrackReader(index.layout.track_path(mid, uid)).packets())
            speech = [p for p in packets if p.opus != b"\xf8\xff\xfe"]
            assert speech[0].start == 0
            late = [p for p in speech if p.start >= 48_000 * 10]
            assert late and abs(late[0].start - 48_000 * (DOWN_S + 5)) <= 960
            assert packets[-1].end == late[-1].end
    finally:
        index.close()
    for name in NAMES.values():
        assert f"[audio missing 00:03-00:20, {name}: bot restarted]" in result.markdown


async def test_an_interrupted_meeting_that_does_not_go_on_gets_notes_cut_short(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    mid = await _killed_after_alice(settings, ALICE)

    index = MeetingIndex.open(settings.data_dir)
    row = index.get_meeting(mid)
    index.close()
    interrupted = Interrupted(
        meeting_id=mid,
        guild_id=1,
        voice_channel_id=2,
        text_channel_id=row.text_channel_id,
        started_by=ALICE,
        status=row.status,
        started_at=row.started_at,
        alive_at=row.alive_at or row.started_at,
    )
    assert interrupted.text_channel_id == 3 and interrupted.status == "recording"
    queue = make_queue(settings, Says("second"))
    try:
        result = await finish_interrupted(
            settings, queue, interrupted, "nobody is in the voice channel any more", _quiet
        )
    finally:
        queue.close()
    assert result.markdown.index("The recording was cut short at [00:03]") < result.markdown.index(
        "## Participants"
    )
    assert "nobody is in the voice channel any more" in result.markdown
    index = MeetingIndex.open(settings.data_dir)
    try:
        full = index.get_meeting(mid)
        assert full.status == "done"
        assert full.stopped_at is not None and abs(full.stopped_at - (row.started_at + 3)) < 0.01
        assert {t.user_id: t.ended_ms for t in full.tracks} == {ALICE: 3000, BOB: 3000}
        assert words(index, mid, ALICE) == [(0, "first")]
        assert words(index, mid, BOB) == [(0, "second")]
        # The torn page is gone: the file is whole pages only.
        assert list(TrackReader(index.layout.track_path(mid, ALICE)).packets())[-1].end == 144_000
    finally:
        index.close()
