"""The in-process transcription queue with a deliberately slow engine: meetings take turns,
a backlog waits on disk rather than in memory, nothing is dropped, order per speaker is
kept, failures are reported and the worker goes on.

The engine here is a stand-in behind the Transcriber seam (the real engines have their
own tests in transcribe/tests); the queue, the cutter, the recorder, the tracks on disk
and libopus are real.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from notetaker.errors import TranscriptionError
from notetaker.live.cutter import Packet, Utterance, UtteranceCutter
from notetaker.live.decode import decode_utterance
from notetaker.live.local_queue import PAD_S, LocalTranscriptionQueue
from notetaker.live.meeting_transcript import TrackPackets
from notetaker.live.queue import Backlog, MeetingTranscript
from notetaker.recorder.paths import DataLayout
from notetaker.recorder.recorder import Recorder
from notetaker.sink import AudioFrame, FanOut
from notetaker.transcript import Segment, Transcriber, UtteranceAudio, UtteranceResult
from notetaker.voice.opus import Encoder

START = 500.0
PAD = bytes(2 * round(PAD_S * 16_000))  #: the silence the worker puts around an utterance


class SlowEngine(Transcriber):
    """Waits for ``gate`` on every call, then "hears" a digest of the audio it was given."""

    name = "slow"

    def __init__(self, batch_size: int = 1) -> None:
        self.batch_size = batch_size
        self.gate = threading.Semaphore(0)
        self.calls: list[list[tuple[int, float]]] = []
        self.fail_next = False
        self.busy = threading.Event()  #: set once the worker is inside a call

    def transcribe_utterances(self, batch: Sequence[UtteranceAudio]) -> list[UtteranceResult]:
        self.busy.set()
        self.gate.acquire()
        self.calls.append([(a.user_id, a.start_s) for a in batch])
        if self.fail_next:
            self.fail_next = False
            raise TranscriptionError("the engine fell over")
        return [
            UtteranceResult(
                (Segment(a.user_id, a.start_s, a.start_s + a.duration_s, _digest(a.pcm)),),
                a.language or "en",
                0.9,
            )
            for a in batch
        ]

    def release(self, n: int = 1000) -> None:
        for _ in range(n):
            self.gate.release()


def _digest(pcm: bytes) -> str:
    return hashlib.sha256(pcm).hexdigest()[:16]


class Collect(MeetingTranscript):
    def __init__(self, tracks: TrackPackets | None = None) -> None:
        self.results: list[tuple[Utterance, UtteranceResult]] = []
        self.failures: list[tuple[Utterance, str]] = []
        self.tracks = tracks
        self.done = threading.Event()

    def language_for(self, user_id: int) -> str | None:
        return "de" if user_id == 2 else None

    def packets(self, utterance: Utterance) -> Sequence[Packet]:
        assert self.tracks is not None
        return self.tracks.packets(utterance.user_id, utterance.start, utterance.end)

    def on_result(self, utterance: Utterance, result: UtteranceResult) -> None:
        self.results.append((utterance, result))

    def on_failure(self, utterance: Utterance, error: Exception) -> None:
        self.failures.append((utterance, str(error)))


def _utterance(user_id: int, seq: int, *, size: int = 100, frames: int = 10) -> Utterance:
    start = seq * 48_000
    packets = tuple((start + i * 960, bytes([0xFC]) + bytes(size - 1)) for i in range(frames))
    return Utterance(
        user_id, seq, start, start + frames * 960, packets, frames * 960, "pause", size * frames
    )


async def test_meetings_take_turns() -> None:
    engine = SlowEngine()
    queue = LocalTranscriptionQueue(engine)
    a, b = Collect(), Collect()
    queue.open_meeting(1, a)
    queue.open_meeting(2, b)
    for seq in range(1, 7):
        queue.submit(1, _utterance(10, seq))
    for seq in range(1, 4):
        queue.submit(2, _utterance(20, seq))
    engine.release()
    await queue.drain(1)
    await queue.drain(2)
    order = [call[0][0] for call in engine.calls]
    # Meeting 1's long backlog does not hold meeting 2 back: they alternate.
    assert order == [10, 20, 10, 20, 10, 20, 10, 10, 10]
    assert [u.seq for u, _ in a.results] == [1, 2, 3, 4, 5, 6]
    assert [u.seq for u, _ in b.results] == [1, 2, 3]
    queue.close()


async def test_a_batching_engine_gets_batches_from_every_meeting() -> None:
    engine = SlowEngine(batch_size=4)
    queue = LocalTranscriptionQueue(engine)
    queue.open_meeting(1, Collect())
    queue.open_meeting(2, Collect())
    for seq in range(1, 4):
        queue.submit(1, _utterance(10, seq))
        queue.submit(2, _utterance(20, seq))
    engine.release()
    await queue.drain(1)
    await queue.drain(2)
    assert sum(len(c) for c in engine.calls) == 6
    assert max(len(c) for c in engine.calls) > 1
    queue.close()


def _tone_frames(user_id: int, ssrc: int, spurts: list[tuple[int, int]]) -> list[AudioFrame]:
    """Real Opus: (start frame, length) spurts of a tone whose pitch differs per spurt."""
    enc = Encoder()
    frames = []
    for n, (first, length) in enumerate(spurts):
        hz = 200 + 40 * n
        for i in range(first, first + length):
            pcm = b"".join(
                struct.pack("<hh", v, v)
                for v in (
                    int(8000 * math.sin(2 * math.pi * hz * (i * 960 + k) / 48_000))
                    for k in range(960)
                )
            )
            frames.append(
                AudioFrame(
                    user_id,
                    ssrc,
                    i & 0xFFFF,
                    (i * 960) & 0xFFFF_FFFF,
                    START + i * 0.02 + 0.002,
                    enc.encode(pcm),
                )
            )
    return frames


async def test_a_backlog_waits_on_disk_not_in_memory_and_nothing_is_dropped(
    tmp_path: Path,
) -> None:
    engine = SlowEngine()
    queue = LocalTranscriptionQueue(engine, memory_bytes=4_000)
    recorder = Recorder(DataLayout(tmp_path), 1, started_at=START, clock=lambda: START)
    meeting = Collect(TrackPackets(recorder.track_path, recorder.flush_track))
    queue.open_meeting(1, meeting)
    submitted: list[Utterance] = []
    ram: list[int] = []

    def submit(u: Utterance) -> None:
        submitted.append(u)
        queue.submit(1, u)
        ram.append(queue.ram_bytes)

    cutter = UtteranceCutter(submit, started_at=START, recorder_config=recorder.config)
    sink = FanOut(recorder, cutter)
    # Two speakers, 12 utterances each of 0.4 s, 1 s apart; the engine is held.
    for uid in (1, 2):
        for f in _tone_frames(uid, uid, [(50 * k, 20) for k in range(12)]):
            sink.write(f)
    cutter.close()
    assert len(submitted) == 24
    assert max(ram) <= 4_000 and queue.peak_ram_bytes <= 4_000
    backlog = queue.backlog(1)
    assert (backlog.utterances, round(backlog.speech_s, 2)) == (24, 9.6)
    assert backlog.spilled >= 24 - 4_000 // min(u.opus_bytes for u in submitted)
    # The engine only now starts: the spilled ones are read back from the track (its
    # last pages still pending in the recorder: the read asks for a flush).
    engine.release()
    await queue.drain(1)
    recorder.close()
    assert len(meeting.results) == 24 and not meeting.failures
    for uid in (1, 2):
        mine = [u.start for u, _ in meeting.results if u.user_id == uid]
        assert mine == sorted(mine) and len(mine) == 12
    spilled = [u for u, _ in meeting.results if u.spilled]
    assert len(spilled) == backlog.spilled and all(u.packets == () for u in spilled)
    # The audio a spilled utterance was transcribed from is the audio that was cut.
    heard = {(u.user_id, u.seq): r.segments[0].text for u, r in meeting.results}
    for cut in submitted:
        pcm, bad = decode_utterance(cut.packets, cut.start)
        assert bad == 0 and len(pcm) == 2 * 16_000 * 0.4
        assert heard[(cut.user_id, cut.seq)] == _digest(PAD + pcm + PAD)
    assert queue.ram_bytes == 0
    queue.close()


async def test_a_failing_batch_is_reported_and_the_worker_goes_on() -> None:
    engine = SlowEngine()
    engine.fail_next = True
    queue = LocalTranscriptionQueue(engine)
    meeting = Collect()
    queue.open_meeting(1, meeting)
    queue.submit(1, _utterance(1, 1))
    queue.submit(1, _utterance(1, 2))
    engine.release()
    await queue.drain(1)
    assert [(u.seq, why) for u, why in meeting.failures] == [(1, "the engine fell over")]
    assert [u.seq for u, _ in meeting.results] == [2]
    queue.close()


async def test_an_engine_that_cannot_load_fails_each_utterance_with_its_reason() -> None:
    def broken() -> Transcriber:
        raise TranscriptionError("transcriber 'nope' is not installed")

    queue = LocalTranscriptionQueue(broken)
    meeting = Collect()
    queue.open_meeting(1, meeting)
    queue.submit(1, _utterance(1, 1))
    await queue.drain(1)
    assert [why for _, why in meeting.failures] == ["transcriber 'nope' is not installed"]
    queue.close()


async def test_an_opt_out_drops_only_that_speakers_queued_utterances() -> None:
    engine = SlowEngine()
    queue = LocalTranscriptionQueue(engine)
    meeting = Collect()
    queue.open_meeting(1, meeting)
    # The worker holds user 1's first utterance before the rest arrive, so what is queued
    # when the opt-out comes is known (an utterance already in the engine is the
    # meeting transcript's to drop, not the queue's).
    queue.submit(1, _utterance(1, 0))
    await asyncio.to_thread(engine.busy.wait)
    for seq in range(1, 5):
        queue.submit(1, _utterance(1 + seq % 2, seq))
    assert queue.cancel_user(1, 2) == 2
    assert queue.backlog(1).utterances == 3  # user 1's two queued and the one in the engine
    engine.release()
    await queue.drain(1)
    assert {u.user_id for u, _ in meeting.results} == {1}
    queue.close()


async def test_a_drain_reports_the_speech_left_while_it_waits() -> None:
    engine = SlowEngine()
    queue = LocalTranscriptionQueue(engine)
    meeting = Collect()
    queue.open_meeting(1, meeting)
    for seq in range(1, 4):
        queue.submit(1, _utterance(1, seq, frames=50))
    heard: list[Backlog] = []

    async def progress(backlog: Backlog) -> None:
        heard.append(backlog)
        engine.release(1)  # one utterance done per report

    await queue.drain(1, progress, every_s=0.05)
    left = [round(b.speech_s, 1) for b in heard]
    # Seconds of speech, falling as utterances finish (how many reports fall between two
    # utterances depends on the machine's speed; what they say does not).
    assert left[0] == 3.0
    assert left == sorted(left, reverse=True) and set(left) <= {3.0, 2.0, 1.0}
    assert len(meeting.results) == 3
    queue.close()


async def test_submitting_to_a_meeting_not_opened_is_an_error() -> None:
    queue = LocalTranscriptionQueue(SlowEngine())
    with pytest.raises(TranscriptionError, match="not open"):
        queue.submit(9, _utterance(1, 1))
    queue.close()


def test_the_language_asked_of_the_meeting_reaches_the_engine() -> None:
    engine = SlowEngine()
    queue = LocalTranscriptionQueue(engine)
    meeting = Collect()
    queue.open_meeting(1, meeting)
    queue.submit(1, _utterance(2, 1))
    queue.submit(1, _utterance(1, 2))
    engine.release()
    asyncio.run(queue.drain(1))
    assert [r.language for _, r in meeting.results] == ["de", "en"]
    # The engine hears each utterance with a little silence around it, on the meeting clock.
    assert [call[0][1] for call in engine.calls] == [1.0 - PAD_S, 2.0 - PAD_S]
    queue.close()
