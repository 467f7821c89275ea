"""Another process holds the session index locked for 5 s while two speakers talk: no
packet is lost and no voice heartbeat is late.

Core's receive engine runs against the simulator (real TLS WebSocket, real UDP, real
Opus) and delivers to a real :class:`Recorder` writing to a real index; a second Python
process takes ``BEGIN EXCLUSIVE`` on that index before the first packet and holds it for
5 s. The simulator runs on the same event loop as the engine, so a receive path that
waited for the lock would also starve the voice heartbeats: its watchdog would close the
connection with 4009 and the engine would have to resume or reconnect. So "no heartbeat
late" is asserted as what Discord would see: no 4009, no resume, no reconnect, one voice
session; and, directly, as no SQL statement ever running on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest

from notetaker.policy import ReconnectPolicy
from notetaker.recorder import DataLayout, MeetingIndex, Recorder
from notetaker.recorder.ogg_read import TrackReader
from notetaker.session import Reconnected, Resumed, Stopped
from notetaker.sink import OPUS_SILENCE, FanOut

pytest.importorskip("discordsim")
pytest.importorskip("av", reason="needs discordsim[media]")

from discordsim.scenarios import SCENARIOS
from discordsim.voice.participants import ParticipantSpec, write_tone
from notetaker_harness.engine_rig import engine_rig, watched_sink

pytestmark = pytest.mark.slow

LOCK_S = 5.0
GUARD_S = 30.0  # guards against a hang, never timing assertions
POLICY = ReconnectPolicy(base_delay=0.05, max_delay=0.2, reset_wait=0.05, move_grace=0.3)
# Heartbeats every 0.75 s; the simulator closes with 4009 after 2.25 s without one. A
# receive path that waited for the lock would stall the loop for about 4 s.
SCENARIO = SCENARIOS["modern"].with_(heartbeat_interval_ms=750.0, heartbeat_timeout_intervals=3.0)

LOCK_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    print("LOCKED", flush=True)
    time.sleep(float(sys.argv[2]))
    db.execute("COMMIT")
    print("RELEASED", flush=True)
    """
)


async def test_a_locked_index_loses_no_packet_and_delays_no_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notetaker.recorder.index_writer")
    loop_thread = threading.current_thread()
    recording = threading.Event()
    sql_on_loop: list[str] = []
    connect = sqlite3.connect

    def tracing(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)  # type: ignore[arg-type]

        def trace(sql: str) -> None:
            if recording.is_set() and threading.current_thread() is loop_thread:
                sql_on_loop.append(sql)

        conn.set_trace_callback(trace)
        return conn

    monkeypatch.setattr(sqlite3, "connect", tracing)
    data = tmp_path / "data"
    index = MeetingIndex.open(data)
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=3, started_at=1.7e9)
    alice = ParticipantSpec("alice", write_tone(tmp_path / "a.wav", 440.0, 6.0), speak_after=0.3)
    bob = ParticipantSpec("bob", write_tone(tmp_path / "b.wav", 660.0, 6.0), speak_after=0.6)

    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOCK_HOLDER, str(index.path), str(LOCK_S),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    try:
        line = await asyncio.wait_for(holder.stdout.readline(), GUARD_S)
        assert line == b"LOCKED\n"
        recorder = Recorder(DataLayout(data), mid, index=index)
        watched = watched_sink(GUARD_S)
        heard_while_locked: Counter[int] = Counter()

        async def released() -> None:
            assert holder.stdout is not None
            line = await asyncio.wait_for(holder.stdout.readline(), GUARD_S)
            assert line == b"RELEASED\n"
            heard_while_locked.update(f.user_id for f in watched.frames)

        async with engine_rig(
            SCENARIO, (alice, bob), policy=POLICY, sink=FanOut(recorder, watched)
        ) as (sim, _voice, _main, link, sup):
            events = sup.events()
            recording.set()
            release = asyncio.create_task(released())
            await sup.connect(sim.world.voice_channel.id)
            rec = sim.record
            ids = {name: sim.world.user(name).id for name in ("alice", "bob")}
            sent = {}
            for uid in ids.values():
                done = await rec.wait_for("voice.participant_done", user_id=uid, timeout=GUARD_S)
                sent[uid] = done["sent"]
            try:
                await watched.until(lambda: len(watched.frames) >= sum(sent.values()), GUARD_S)
            except TimeoutError:
                closes = [e["code"] for e in rec.of("voice.close")]
                raise AssertionError(
                    f"packets lost: {len(watched.frames)} of {sum(sent.values())} arrived"
                    f" (voice closes: {closes})"
                ) from None
            await release
            ssrcs = {e["ssrc"] for e in rec.of("voice.participant_join")}
            closes = [e["code"] for e in rec.of("voice.close")]
            resumed = rec.of("voice.resumed")
            stats = link.stats()
            published = events.drain()
        await asyncio.to_thread(recorder.close)
        recording.clear()
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()

    # Both spoke while the index was locked, and the writer did find it locked.
    assert heard_while_locked[ids["alice"]] > 0 and heard_while_locked[ids["bob"]] > 0
    assert any("locked" in r.getMessage() for r in caplog.records)
    assert recorder.index_report.retries > 0

    # No packet lost: every one the simulator sent is in its speaker's track.
    assert len(ssrcs) == 2 and all(n > 100 for n in sent.values())
    assert watched.gaps == []
    track_stats = recorder.stats()
    layout = DataLayout(data)
    for uid, count in sent.items():
        assert track_stats[uid].packets == count
        assert track_stats[uid].lost == track_stats[uid].dropped == 0
        packets = TrackReader(layout.track_path(mid, uid)).packets()
        assert sum(p.opus != OPUS_SILENCE for p in packets) == count

    # No heartbeat late: the server never timed one out, nothing had to resume.
    assert 4009 not in closes
    assert resumed == []
    assert not [e for e in published if isinstance(e, Resumed | Reconnected | Stopped)]
    assert stats["voice_sessions"] == 1 and stats["resumes"] == 0

    # The receive path never ran SQL; the rows followed once the lock went.
    assert sql_on_loop == []
    meeting = index.get_meeting(mid)
    assert sorted(t.user_id for t in meeting.tracks) == sorted(sent)
    assert sorted(s.user_id for s in meeting.speakers) == sorted(sent)
    assert recorder.index_report.complete
    index.close()
