"""kill -9 of a recording process: every track plays up to its last flush, export works."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from notetaker.recorder import DataLayout, MeetingIndex, export_meeting

RATE = 48_000
START = 500.0
LATE_JOINER_S = 2.0
KILL_AFTER_MS = 6000
WAIT_S = 120.0  # a guard against a hung child, not a timing assertion

CHILD = textwrap.dedent(
    """
    import sys
    from fractions import Fraction

    import av
    import numpy as np

    from notetaker.recorder import DataLayout, MeetingIndex, Recorder, RecorderConfig
    from notetaker.sink import AudioFrame

    START = float(sys.argv[2])
    LATE = float(sys.argv[3])

    def tone(freq):
        cc = av.CodecContext.create("libopus", "w")
        cc.sample_rate, cc.layout, cc.format, cc.bit_rate = 48000, "stereo", "s16", 48000
        cc.time_base = Fraction(1, 48000)
        n = 50 * 960
        wave = (0.3 * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / 48000)).astype(np.int16)
        stereo = np.repeat(wave, 2).reshape(1, -1)
        out = []
        for s in range(0, n, 960):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(stereo[:, 2 * s : 2 * (s + 960)]), format="s16",
                layout="stereo")
            frame.sample_rate, frame.pts = 48000, s
            out += [bytes(p) for p in cc.encode(frame)]
        return out[:50]

    data = sys.argv[1]
    index = MeetingIndex.open(data)
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=11, started_at=1.7e9)
    speakers = {11: (tone(300), 0.0), 22: (tone(500), 0.0), 33: (tone(700), LATE)}
    rec = Recorder(DataLayout(data), mid, started_at=START, index=index,
                   config=RecorderConfig(page_seconds=1.0, flush_interval_s=1.0))
    print("MEETING", mid, flush=True)
    seen = {}
    for step in range(50 * 3600):
        t = step * 0.02
        for uid, (packets, joins) in speakers.items():
            if t >= joins:
                i = round((t - joins) / 0.02)
                rec.write(AudioFrame(uid, uid, i & 0xFFFF, (uid * 1000 + 960 * i) & 0xFFFFFFFF,
                                     START + t + 0.003, packets[i % 50]))
        if step % 10 == 0:
            # The loop runs far faster than a meeting: a speaker who joined at 2 s of
            # meeting time did so a few milliseconds of wall time ago, and the writer
            # thread may not have committed the row yet. The kill is meant to come after
            # what was written, so the report waits for the writer (never the real
            # receive path, which does not wait).
            rec.index_writer.flush(timeout=30)
            for uid, st in rec.stats().items():
                if st.flushed_ms != seen.get(uid):
                    seen[uid] = st.flushed_ms
                    print("FLUSHED", uid, st.flushed_ms, flush=True)
    print("NOT KILLED", flush=True)
    """
)


def read_until_flushed(lines: queue.Queue[str]) -> tuple[int, dict[int, int]]:
    """Read the child's reports until every speaker has flushed KILL_AFTER_MS."""
    meeting_id = -1
    flushed: dict[int, int] = {}
    while not (len(flushed) == 3 and min(flushed.values()) >= KILL_AFTER_MS):
        try:
            line = lines.get(timeout=WAIT_S)
        except queue.Empty:
            raise AssertionError(f"the recording child went quiet; last: {flushed}") from None
        kind, *values = line.split()
        assert kind != "NOT", "the child finished before it was killed"
        if kind == "MEETING":
            meeting_id = int(values[0])
        elif kind == "FLUSHED":
            flushed[int(values[0])] = int(values[1])
    return meeting_id, flushed


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict[int, int]]:
    data = tmp_path_factory.mktemp("crash")
    script = data.parent / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(data), str(START), str(LATE_JOINER_S)],
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout = proc.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True)
    reader.start()
    try:
        meeting_id, flushed = read_until_flushed(lines)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        reader.join(timeout=WAIT_S)  # the pipe ends with the child
        stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return data, meeting_id, flushed


def test_every_track_decodes_up_to_its_last_flush(
    killed: tuple[Path, int, dict[int, int]],
) -> None:
    data, mid, flushed = killed
    layout = DataLayout(data)
    for uid, flushed_ms in flushed.items():
        pcm = decode(layout.track_path(mid, uid))
        # The child kept writing between its report and the kill: at least what it said.
        assert pcm.size * 1000 // RATE >= flushed_ms
        assert float(np.sqrt(np.mean(pcm[-RATE // 2 :] ** 2))) > 0.1  # audio to the end


def test_the_late_joiner_is_still_aligned(killed: tuple[Path, int, dict[int, int]]) -> None:
    data, mid, _ = killed
    pcm = decode(DataLayout(data).track_path(mid, 33))
    first_loud = int(np.argmax(np.abs(pcm) > 0.01)) / RATE
    assert first_loud == pytest.approx(LATE_JOINER_S, abs=0.02)
    assert float(np.abs(pcm[: int((LATE_JOINER_S - 0.01) * RATE)]).max()) == 0.0


def test_the_index_survives_and_the_meeting_can_be_processed(
    killed: tuple[Path, int, dict[int, int]], tmp_path: Path
) -> None:
    data, mid, flushed = killed
    index = MeetingIndex.open(data)
    meeting = index.get_meeting(mid)
    assert meeting.status == "recording"
    assert sorted(t.user_id for t in meeting.tracks) == [11, 22, 33]
    assert {s.user_id: s.joined_ms for s in meeting.speakers} == {11: 0, 22: 0, 33: 2000}
    result = export_meeting(index, mid, tmp_path, mix_suffix=".wav")
    assert result.mix is not None and sorted(result.tracks) == [11, 22, 33]
    with av.open(str(result.mix)) as container:
        mixed = sum(f.samples for f in container.decode(audio=0))
    assert mixed * 1000 // RATE >= max(flushed.values())
    index.set_status(mid, "transcribing", at=1.7e9 + 60, detail="recovered after a crash")
