"""kill -9 mid-meeting on the live path: the transcript made so far is in the index, the
tracks play, and `notetaker transcribe` makes the notes of the meeting left recording.

A real process runs the recorder, the utterance cutter, the queue and faster-whisper with
the shipped tiny.en model on speech replayed in real time; it is killed with SIGKILL once
two utterances have been transcribed.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from notetaker.config import Settings
from notetaker.meeting import retranscribe
from notetaker.recorder.index import MeetingIndex
from notetaker.recorder.ogg_read import TrackReader

speech = pytest.importorskip("notetaker_transcribe.speech", reason="needs notetaker-transcribe")
pytest.importorskip("discordsim.voice.participants", reason="needs discordsim[media]")
pytest.importorskip("av", reason="needs discordsim[media]")

WAIT_S = 180.0  # a guard against a hung child, not a timing assertion
LINES = (
    "The release is ready for testing this week.",
    "We need to finish the report before the end of the month.",
    "I will order the servers on Monday morning.",
    "Please send the test results to the whole team.",
)

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    from discordsim.voice.participants import ParticipantSpec, prepare
    from notetaker.config import Settings
    from notetaker.live.cutter import UtteranceCutter
    from notetaker.live.language import SpeakerLanguages
    from notetaker.live.meeting_transcript import LiveTranscript, TrackPackets
    from notetaker.meeting import load_transcriber, make_queue
    from notetaker.recorder import DataLayout, MeetingIndex, Recorder
    from notetaker.sink import AudioFrame, FanOut

    data, audio = Path(sys.argv[1]), Path(sys.argv[2])
    settings = Settings(data_dir=data, model="tiny.en", transcriber="faster-whisper")
    index = MeetingIndex.open(data)
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=7, started_at=time.time())
    start = time.monotonic()
    rec = Recorder(DataLayout(data), mid, index=index, started_at=start)
    engine = load_transcriber(settings)
    engine.load()
    q = make_queue(settings, engine)

    def landed(utt, segments):
        for s in segments:
            print("SEGMENT", s.text, flush=True)

    transcript = LiveTranscript(index, mid, 1, languages=SpeakerLanguages("en"),
                                tracks=TrackPackets(rec.track_path, rec.flush_track),
                                listener=landed)
    q.open_meeting(mid, transcript)
    cut = UtteranceCutter(lambda u: q.submit(mid, u), started_at=start,
                          recorder_config=rec.config)
    sink = FanOut(rec, cut)
    slots = prepare(ParticipantSpec("bob", audio))
    print("MEETING", mid, flush=True)
    t0 = time.monotonic()
    for i, slot in enumerate(slots):
        delay = t0 + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if i % 5 == 0:
            cut.tick()
            rec.tick()
        if slot is not None:
            sink.write(AudioFrame(7, 7, i & 0xFFFF, (960 * i) & 0xFFFFFFFF, time.monotonic(), slot))
    print("NOT KILLED", flush=True)
    """
)


def _lines(proc: subprocess.Popen[str], out: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put(line.rstrip("\n"))
    out.put("EOF")


def test_a_killed_meeting_keeps_its_transcript_so_far(tmp_path: Path) -> None:
    audio = tmp_path / "bob.ogg"
    gaps = [speech.Utterance(3.0 * i + 0.5, text) for i, text in enumerate(LINES * 3)]
    speech.make_track(audio, gaps)
    data = tmp_path / "data"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), str(audio)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    out: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc, out), daemon=True).start()
    heard: list[str] = []
    meeting_id = None
    try:
        while len(heard) < 2:
            line = out.get(timeout=WAIT_S)
            assert line not in ("EOF", "NOT KILLED"), "the child ended before it was killed"
            if line.startswith("MEETING "):
                meeting_id = int(line.split()[1])
            elif line.startswith("SEGMENT "):
                heard.append(line.removeprefix("SEGMENT "))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=WAIT_S)
    assert proc.returncode == -signal.SIGKILL and meeting_id is not None

    index = MeetingIndex.open(data)
    try:
        meeting = index.get_meeting(meeting_id)
        assert meeting.status == "recording"  # it never got to stop
        stored = [s.text for s in index.segments(meeting_id)]
        assert stored[: len(heard)] == heard  # every segment reported had landed first
        assert speech.wer(" ".join(LINES[:2]), " ".join(heard)) < 0.2, heard
        (track,) = meeting.tracks
        assert TrackReader(track.path).refresh() > 0  # plays up to its last flush

        # After the crash, `notetaker transcribe` makes the notes of what was recorded.
        settings = Settings(data_dir=data, model="tiny.en", transcriber="faster-whisper")
        result = asyncio.run(retranscribe(settings, index, meeting_id))
        assert index.get_meeting(meeting_id).status == "done"
        assert "release" in result.markdown.lower()
    finally:
        index.close()
