"""The recorder with real Opus packets: placement, gaps, reconnects, read back by decoders.

Each speaker speaks a sine of their own frequency, encoded by libopus (through PyAV).
The decoded tracks are measured: where each tone starts and stops, and which frequency
it is, must match the meeting clock.
"""

from __future__ import annotations

import functools
import random
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notetaker.recorder import DataLayout, MeetingIndex, Recorder, RecorderConfig
from notetaker.recorder.track import Track
from notetaker.sink import OPUS_SILENCE, AudioFrame, Gap

RATE = 48_000
FRAME_S = 0.02
START = 1000.0  # the meeting start on the receiver's monotonic clock
TOLERANCE_S = 0.02  # one frame


@functools.cache
def tone(freq: float, seconds: float) -> tuple[bytes, ...]:
    """Real Opus packets (libopus via PyAV) of a stereo sine, 20 ms each."""
    cc = av.CodecContext.create("libopus", "w")
    cc.sample_rate = RATE
    cc.layout = "stereo"
    cc.format = "s16"
    cc.bit_rate = 48_000
    cc.time_base = Fraction(1, RATE)
    n = round(seconds / FRAME_S) * 960
    wave = (0.3 * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / RATE)).astype(np.int16)
    stereo = np.repeat(wave, 2).reshape(1, -1)
    packets: list[bytes] = []
    for start in range(0, n, 960):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo[:, 2 * start : 2 * (start + 960)]),
            format="s16",
            layout="stereo",
        )
        frame.sample_rate = RATE
        frame.pts = start
        packets.extend(bytes(p) for p in cc.encode(frame))
    packets.extend(bytes(p) for p in cc.encode(None))
    return tuple(packets[: n // 960])


def decode(path: Path) -> np.ndarray:
    """A track decoded by PyAV: the left channel as float32."""
    chunks = []
    try:
        container = av.open(str(path))
    except av.error.EOFError:  # headers only: no audio page was written yet
        return np.zeros(0, np.float32)
    with container:
        for frame in container.decode(audio=0):
            samples = frame.to_ndarray()
            if not frame.format.is_planar:
                samples = samples.reshape(-1, len(frame.layout.channels)).T
            if samples.dtype == np.int16:
                samples = samples / 32768.0
            chunks.append(samples[0])
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(out.stdout)


def rms(pcm: np.ndarray, start_s: float, end_s: float) -> float:
    seg = pcm[max(0, round(start_s * RATE)) : round(end_s * RATE)]
    return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if seg.size else 0.0


def onset(pcm: np.ndarray, around_s: float, search_s: float = 0.3, level: float = 0.004) -> float:
    """Start of the first 5 ms window after ``around_s - search_s`` louder than ``level``.

    Inserted silence decodes to exact zeros, so the first audible window is where the
    speaker's packets begin. (The level is low because a CELT decoder coming out of
    silence frames ramps its band energies up over a few frames.)
    """
    win = RATE // 200
    first = max(0, round((around_s - search_s) * RATE) // win)
    for k in range(first, pcm.size // win):
        if rms(pcm, k * win / RATE, (k + 1) * win / RATE) > level:
            return k * win / RATE
    raise AssertionError(f"no onset near {around_s}")


def dominant_hz(pcm: np.ndarray, start_s: float, end_s: float) -> float:
    seg = pcm[round(start_s * RATE) : round(end_s * RATE)]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    return float(np.fft.rfftfreq(seg.size, 1 / RATE)[int(np.argmax(spectrum))])


# -- the scripted meeting -----------------------------------------------------------------


@dataclass
class Spurt:
    start: float  # meeting seconds
    end: float
    ssrc: int
    rtp_at_zero: int  # the RTP timestamp this SSRC's clock would show at meeting time 0


@dataclass
class Speaker:
    user_id: int
    name: str
    freq: float
    spurts: list[Spurt]
    lost: range = range(0)  # packet indices (of the first spurt) that never arrive


SPEAKERS = [
    # From the start; RTP wraps at 2**32 within the first 1.4 s; 5 packets lost at 0.8 s;
    # a pause; after the reconnect a new SSRC and RTP base.
    Speaker(
        101,
        "Alice",
        440.0,
        [Spurt(0.0, 3.0, 1, 0xFFFF_0000), Spurt(5.0, 7.0, 1, 0xFFFF_0000),
         Spurt(9.5, 11.0, 11, 123_456_789)],
        lost=range(40, 45),
    ),
    # Joins late; after the reconnect the same SSRC with a new RTP base.
    Speaker(
        202, "Bob", 660.0, [Spurt(2.5, 6.0, 2, 0x7000_0000), Spurt(9.2, 10.0, 2, 0x1000_0000)]
    ),
    # Speaks after the reconnect, then comes back with a new RTP base and nobody tells the
    # recorder.
    Speaker(
        303,
        "Carol",
        880.0,
        [Spurt(1.0, 4.0, 3, 5_000_000), Spurt(9.6, 10.4, 3, 77_000),
         Spurt(12.0, 13.0, 3, 0x9000_0000)],
    ),
]  # fmt: skip
RECONNECT = (7.5, 9.0)
END = 13.5


def run_meeting(data_dir: Path, config: RecorderConfig | None = None) -> tuple[Recorder, int]:
    """Feed the scripted meeting to a recorder with a real index; returns it closed."""
    index = MeetingIndex.open(data_dir)
    meeting_id = index.create_meeting(
        guild_id=1, channel_id=2, started_by=101, started_at=1.7e9, channel_name="../../etc"
    )
    names = {s.user_id: s.name for s in SPEAKERS}
    recorder = Recorder(
        DataLayout(data_dir),
        meeting_id,
        started_at=START,
        config=config,
        index=index,
        display_name=names.get,
    )
    rng = random.Random(7)
    timeline: list[tuple[float, int, object]] = []
    for sp in SPEAKERS:
        seq = 0
        for n, spurt in enumerate(sp.spurts):
            packets = tone(sp.freq, spurt.end - spurt.start)
            for i, packet in enumerate(packets):
                t = spurt.start + i * FRAME_S
                seq += 1
                arrival = START + t + 0.002 + rng.uniform(0, 0.006)
                if n == 0 and i in sp.lost:
                    if i == sp.lost.start:
                        gap = Gap(sp.user_id, spurt.ssrc, seq, len(sp.lost), "loss")
                        timeline.append((arrival + FRAME_S * len(sp.lost), 0, gap))
                    continue
                rtp = (spurt.rtp_at_zero + round(t * RATE)) & 0xFFFF_FFFF
                frame = AudioFrame(sp.user_id, spurt.ssrc, seq & 0xFFFF, rtp, arrival, packet)
                timeline.append((arrival, 1, frame))
    timeline.append((START + RECONNECT[1], 0, "reconnect"))
    for _, _, item in sorted(timeline, key=lambda x: (x[0], x[1])):
        if isinstance(item, AudioFrame):
            recorder.write(item)
        elif isinstance(item, Gap):
            recorder.gap(item)
        else:
            recorder.mark_reconnect(START + RECONNECT[0], START + RECONNECT[1], "4015")
    recorder.close_at(START + END)
    return recorder, meeting_id


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recorder, int]:
    data_dir = tmp_path_factory.mktemp("data")
    recorder, meeting_id = run_meeting(data_dir)
    return data_dir, recorder, meeting_id


@functools.cache
def decoded(path: Path) -> np.ndarray:
    return decode(path)


def test_one_track_per_speaker_under_ids_only(meeting: tuple[Path, Recorder, int]) -> None:
    data_dir, recorder, mid = meeting
    files = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.opus"))
    assert files == [f"meetings/{mid}/{uid}.opus" for uid in (101, 202, 303)]
    assert recorder.errors == 0


@pytest.mark.parametrize("sp", SPEAKERS, ids=lambda s: s.name)
def test_track_duration_matches_last_packet(
    meeting: tuple[Path, Recorder, int], sp: Speaker
) -> None:
    data_dir, _, mid = meeting
    path = DataLayout(data_dir).track_path(mid, sp.user_id)
    end = sp.spurts[-1].end
    assert ffprobe_duration(path) == pytest.approx(end, abs=TOLERANCE_S)
    assert decoded(path).size / RATE == pytest.approx(end, abs=TOLERANCE_S)


@pytest.mark.parametrize("sp", SPEAKERS, ids=lambda s: s.name)
def test_tones_sit_at_their_meeting_time(meeting: tuple[Path, Recorder, int], sp: Speaker) -> None:
    data_dir, _, mid = meeting
    pcm = decoded(DataLayout(data_dir).track_path(mid, sp.user_id))
    previous_end = 0.0
    for spurt in sp.spurts:
        # Silence (inserted, not recorded) up to the spurt, then the speaker's own tone.
        if spurt.start - previous_end > 0.2:
            assert rms(pcm, previous_end + 0.05, spurt.start - 0.05) < 0.005
            assert onset(pcm, spurt.start) == pytest.approx(spurt.start, abs=TOLERANCE_S)
        mid_s = (spurt.start + spurt.end) / 2
        assert rms(pcm, mid_s - 0.2, mid_s + 0.2) > 0.1
        assert dominant_hz(pcm, mid_s - 0.2, mid_s + 0.2) == pytest.approx(sp.freq, abs=5)
        previous_end = spurt.end


def test_lost_packets_are_silence_and_keep_the_rest_in_place(
    meeting: tuple[Path, Recorder, int],
) -> None:
    data_dir, recorder, mid = meeting
    pcm = decoded(DataLayout(data_dir).track_path(mid, 101))
    assert rms(pcm, 0.81, 0.89) < 0.005  # packets 40..44: 0.80-0.90 s
    assert rms(pcm, 0.95, 1.2) > 0.1
    stats = recorder.stats()[101]
    assert stats.lost == 5
    assert stats.reanchors == 1  # the reconnect, not the RTP wrap


def test_timeline_in_the_index(meeting: tuple[Path, Recorder, int]) -> None:
    data_dir, _, mid = meeting
    index = MeetingIndex.open(data_dir)
    m = index.get_meeting(mid)
    assert [(s.user_id, s.display_name) for s in m.speakers] == [
        (101, "Alice"),
        (303, "Carol"),
        (202, "Bob"),
    ]
    joined = {s.user_id: s.joined_ms for s in m.speakers}
    assert joined == {101: 0, 303: 1000, 202: 2500}
    by_kind: dict[str, list[tuple[int | None, int | None, int, str]]] = {}
    for e in m.events:
        by_kind.setdefault(e.kind, []).append((e.user_id, e.at_ms, e.count, e.detail))
    assert by_kind["gap"] == [(101, 800, 5, "loss")]
    assert by_kind["reconnect"] == [(None, 7500, 1500, "4015")]
    assert sorted(by_kind["reanchor"]) == [
        (101, 9500, 2500, "reconnect"),
        (202, 9200, 3200, "reconnect"),
        (303, 9600, 5600, "reconnect"),
        (303, 12000, 1600, "rtp-behind"),
    ]
    assert by_kind["close"] == [(None, 13500, 0, "")]
    ends = {t.user_id: t.ended_ms for t in m.tracks}
    assert ends == {101: 11000, 202: 10000, 303: 13000}
    assert all(t.path.is_file() for t in m.tracks)


def test_tracks_mix_aligned(meeting: tuple[Path, Recorder, int], tmp_path: Path) -> None:
    """Mixed with no offsets, each tone is where its speaker spoke."""
    from notetaker.recorder import export_meeting

    data_dir, _, mid = meeting
    result = export_meeting(MeetingIndex.open(data_dir), mid, tmp_path, mix_suffix=".wav")
    assert sorted(result.tracks) == [101, 202, 303]
    assert result.mix is not None
    mix = decode(result.mix)
    assert mix.size / RATE == pytest.approx(13.0, abs=TOLERANCE_S)
    assert dominant_hz(mix, 0.3, 0.7) == pytest.approx(440, abs=5)  # Alice only
    assert dominant_hz(mix, 12.2, 12.8) == pytest.approx(880, abs=5)  # Carol only


# -- flushing ---------------------------------------------------------------------------------


def frames_for(user_id: int, seconds: float, at: float, ssrc: int = 9) -> list[AudioFrame]:
    packets = tone(500.0, seconds)
    return [
        AudioFrame(user_id, ssrc, i, 960 * i, START + at + i * FRAME_S, p)
        for i, p in enumerate(packets)
    ]


def test_tick_flushes_a_partial_page_of_a_quiet_speaker(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    recorder = Recorder(layout, 1, started_at=START, config=RecorderConfig(flush_interval_s=1.0))
    for frame in frames_for(5, 0.3, 0.0):
        recorder.write(frame)
    path = layout.track_path(1, 5)
    assert decode(path).size == 0  # 15 packets wait for their page
    recorder.tick(START + 0.5)
    assert decode(path).size == 0
    recorder.tick(START + 1.01)
    assert decode(path).size == 15 * 960
    assert recorder.stats()[5].flushed_ms == 300
    recorder.close()


def test_frames_of_others_flush_a_quiet_speaker(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    recorder = Recorder(layout, 1, started_at=START)
    for frame in frames_for(5, 0.3, 0.0):
        recorder.write(frame)
    for frame in frames_for(6, 2.0, 0.5, ssrc=10):
        recorder.write(frame)
    assert decode(layout.track_path(1, 5)).size == 15 * 960
    recorder.close()


def test_page_size_bounds_unflushed_audio(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    config = RecorderConfig(page_seconds=0.5, flush_interval_s=2.0)
    recorder = Recorder(layout, 1, started_at=START, config=config)
    for frame in frames_for(5, 3.0, 0.0):
        recorder.write(frame)
        stats = recorder.stats()[5]
        assert stats.written_ms - stats.flushed_ms < 500
    recorder.close()


# -- robustness ---------------------------------------------------------------------------------


def test_malformed_and_duplicate_frames_are_dropped(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    recorder = Recorder(layout, 1, started_at=START)
    frames = frames_for(5, 1.0, 0.0)
    for i, frame in enumerate(frames):
        recorder.write(frame)
        if i == 10:
            recorder.write(frame)  # duplicate
            recorder.write(AudioFrame(5, 9, 99, frame.rtp_timestamp + 960, frame.arrival, b""))
            huge = b"\xfc" + bytes(70_000)
            recorder.write(AudioFrame(5, 9, 99, frame.rtp_timestamp + 960, frame.arrival, huge))
    recorder.close()
    assert recorder.errors == 0
    assert recorder.stats()[5].dropped == 3
    assert decode(layout.track_path(1, 5)).size == 50 * 960


def test_a_long_absence_is_filled_with_silence(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    recorder = Recorder(layout, 1, started_at=START)
    packets = tone(500.0, 1.0)
    away = 600.0
    for t0 in (0.0, 1.0 + away):
        for i, p in enumerate(packets):
            t = t0 + i * FRAME_S
            recorder.write(AudioFrame(5, 9, i, round(t * RATE), START + t + 0.003, p))
    recorder.close()
    pcm = decode(layout.track_path(1, 5))
    assert pcm.size / RATE == pytest.approx(2.0 + away, abs=TOLERANCE_S)
    assert onset(pcm, 1.0 + away) == pytest.approx(1.0 + away, abs=TOLERANCE_S)
    assert recorder.stats()[5].silence_packets == round(away / FRAME_S)


def test_a_reconnect_gap_reanchors_one_speaker(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    recorder = Recorder(layout, 1, started_at=START)
    for frame in frames_for(5, 1.0, 0.0):
        recorder.write(frame)
    recorder.gap(Gap(5, 9, 50, 0, "reconnect"))
    # Same SSRC, RTP continues as if no time passed, but 0.5 s of wall time did.
    for frame in frames_for(5, 1.0, 1.5):
        recorder.write(
            AudioFrame(5, 9, frame.sequence + 50, frame.rtp_timestamp + 48_000, frame.arrival,
                       frame.opus)
        )  # fmt: skip
    recorder.close()
    pcm = decode(layout.track_path(1, 5))
    assert onset(pcm, 1.5) == pytest.approx(1.5, abs=TOLERANCE_S)
    assert rms(pcm, 1.05, 1.45) < 0.005


def test_a_sender_whose_rtp_clock_stops_while_silent(tmp_path: Path) -> None:
    """Bots advance RTP by 960 per packet sent, so a pause leaves no trace in RTP."""
    layout = DataLayout(tmp_path)
    recorder = Recorder(layout, 1, started_at=START)
    packets = tone(500.0, 1.0)
    for n, t0 in enumerate((0.0, 1.6, 5.0)):  # pauses of 0.6 s and 2.4 s
        for i, p in enumerate(packets):
            rtp = 960 * (50 * n + i)  # contiguous across the pauses
            recorder.write(AudioFrame(5, 9, 50 * n + i, rtp, START + t0 + i * FRAME_S + 0.003, p))
    recorder.close()
    pcm = decode(layout.track_path(1, 5))
    assert onset(pcm, 1.6) == pytest.approx(1.6, abs=TOLERANCE_S)
    assert onset(pcm, 5.0) == pytest.approx(5.0, abs=TOLERANCE_S)
    assert pcm.size / RATE == pytest.approx(6.0, abs=TOLERANCE_S)
    reasons = [e.detail for e in recorder.events if e.kind == "reanchor"]
    assert reasons == ["rtp-paused", "rtp-behind"]


def test_a_network_stall_is_absorbed_by_the_next_pause(tmp_path: Path) -> None:
    """Packets held up 0.5 s arrive in a burst; the speaker's next turn is in place."""
    layout = DataLayout(tmp_path)
    recorder = Recorder(layout, 1, started_at=START)
    first, second = tone(500.0, 3.0), tone(500.0, 1.0)
    for i, p in enumerate(first):
        t = i * FRAME_S
        arrival = max(t, 1.5) if 1.0 <= t <= 1.5 else t
        recorder.write(AudioFrame(5, 9, i, round(t * RATE), START + arrival + 0.003, p))
    for i, p in enumerate(second):
        t = 4.0 + i * FRAME_S
        recorder.write(AudioFrame(5, 9, 150 + i, round(t * RATE), START + t + 0.003, p))
    recorder.close()
    pcm = decode(layout.track_path(1, 5))
    assert onset(pcm, 4.0) == pytest.approx(4.0, abs=TOLERANCE_S)
    assert pcm.size / RATE == pytest.approx(5.0, abs=TOLERANCE_S)
    assert rms(pcm, 1.05, 1.45) < 0.005  # the stall became silence: nothing was dropped
    assert recorder.stats()[5].packets == 200
    assert [e.detail for e in recorder.events if e.kind == "reanchor"] == [
        "rtp-paused",
        "rtp-ahead",
    ]


def test_an_unwritable_track_is_contained(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    blocker = layout.track_path(1, 5)
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"someone else's file")
    recorder = Recorder(layout, 1, started_at=START)
    for frame in frames_for(5, 0.2, 0.0) + frames_for(6, 0.2, 0.0, ssrc=10):
        recorder.write(frame)  # must not raise
    recorder.close()
    assert blocker.read_bytes() == b"someone else's file"
    assert recorder.errors == 1
    assert [e.kind for e in recorder.events if e.user_id == 5] == ["error"]
    assert decode(layout.track_path(1, 6)).size == 10 * 960


def test_opt_out_removes_the_track(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    index = MeetingIndex.open(tmp_path)
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=3, started_at=0.0)
    recorder = Recorder(layout, mid, started_at=START, index=index)
    frames = frames_for(5, 1.0, 0.0)
    for frame in frames[:25]:
        recorder.write(frame)
    recorder.opt_out(5, START + 0.5)
    for frame in frames[25:]:
        recorder.write(frame)
    recorder.close()
    assert not layout.track_path(mid, 5).exists()
    m = index.get_meeting(mid)
    assert m.tracks == []
    assert [(e.kind, e.user_id, e.at_ms) for e in m.events if e.kind == "opt_out"] == [
        ("opt_out", 5, 500)
    ]


def test_frames_after_close_are_ignored(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    recorder = Recorder(layout, 1, started_at=START)
    frames = frames_for(5, 0.4, 0.0)
    recorder.write(frames[0])
    recorder.close()
    for frame in frames[1:] + frames_for(6, 0.1, 0.0, ssrc=10):
        recorder.write(frame)
    assert recorder.dropped_after_close == 5
    assert decode(layout.track_path(1, 5)).size == 960
    assert not layout.track_path(1, 6).exists()


def test_export_of_one_track_and_a_missing_one(tmp_path: Path) -> None:
    from notetaker.errors import RecordingError
    from notetaker.recorder import export_meeting

    data = tmp_path / "data"
    index = MeetingIndex.open(data)
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=5, started_at=0.0)
    recorder = Recorder(DataLayout(data), mid, started_at=START, index=index)
    for frame in frames_for(5, 1.0, 0.5) + frames_for(6, 0.2, 0.0, ssrc=10):
        recorder.write(frame)
    recorder.close()
    DataLayout(data).track_path(mid, 6).unlink()
    out = tmp_path / "out"
    result = export_meeting(index, mid, out)
    assert result.missing == [6]
    assert sorted(result.tracks) == [5]
    assert result.tracks[5].read_bytes() == DataLayout(data).track_path(mid, 5).read_bytes()
    assert result.mix == out / f"meeting-{mid}-mix.opus"
    mix = decode(result.mix)
    assert mix.size / RATE == pytest.approx(1.5, abs=TOLERANCE_S)
    assert onset(mix, 0.5) == pytest.approx(0.5, abs=TOLERANCE_S)
    assert export_meeting(index, mid, tmp_path / "nomix", mix=False).mix is None
    with pytest.raises(RecordingError, match="ffmpeg"):
        export_meeting(index, mid, tmp_path / "x", ffmpeg=str(tmp_path / "no-such-ffmpeg"))
    index.close()


# -- placement, as a property -------------------------------------------------------------------

segments = st.lists(
    st.tuples(
        st.integers(1, 100),  # packets spoken
        st.integers(0, 600),  # then frames of pause (0: none) ...
        st.sampled_from(["same", "lost", "new-base", "new-ssrc"]),  # ... of this kind
        # RTP base change. At least 15 s away, so that with a pause of up to 12 s the new
        # timestamps never land within max_late_s behind the last packet: a packet there
        # is indistinguishable from a late duplicate and rightly dropped.
        st.integers(15 * RATE, 2**32 - 15 * RATE),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    first_frame=st.integers(0, 500),
    base=st.integers(0, 2**32 - 1),
    jitter=st.lists(st.floats(0, 0.009), min_size=1, max_size=50),
    plan=segments,
)
def test_every_packet_lands_at_its_meeting_time(
    first_frame: int, base: int, jitter: list[float], plan: list[tuple[int, int, str, int]]
) -> None:
    """RTP wrap, pauses, losses, new RTP bases and SSRCs: each packet sits where it was
    spoken (to the 20 ms grid; arrival jitter stays under half a frame)."""
    with tempfile.TemporaryDirectory() as tmp:
        track = Track(Path(tmp) / "t.opus", user_id=1, meeting_start=START, config=RecorderConfig())
        frame, ssrc, n = first_frame, 1, 0
        packet = bytes([0xFC]) + b"x" * 40  # CELT 20 ms; its content does not matter here
        for spoken, pause, kind, shift in plan:
            for _ in range(spoken):
                rtp = (base + frame * 960) & 0xFFFF_FFFF
                arrival = START + frame * FRAME_S + jitter[n % len(jitter)]
                track.write(rtp, arrival, packet, ssrc)
                assert track.granule - 960 == frame * 960
                frame += 1
                n += 1
            frame += pause
            if kind == "new-base" and pause:
                base = (base + shift) & 0xFFFF_FFFF
            elif kind == "new-ssrc":
                ssrc += 1
                base = (base + shift) & 0xFFFF_FFFF
        assert track.dropped == 0
        track.close()


def test_silence_packets_fill_exactly(tmp_path: Path) -> None:
    track = Track(tmp_path / "t.opus", user_id=1, meeting_start=START, config=RecorderConfig())
    track.write(0, START + 1.003, OPUS_SILENCE, 1)
    track.write(960 * 10, START + 1.203, OPUS_SILENCE, 1)
    assert (track.packets, track.silence_packets, track.granule) == (2, 50 + 9, 61 * 960)
    track.close()
