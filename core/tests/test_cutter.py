"""Utterance cutting from packet timing: golden sequences and the track as the reference.

Speakers are scripted the way Discord clients send: 20 ms Opus packets while talking,
five silence frames when they go quiet, then nothing while the RTP clock runs on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notetaker.live.cutter import CutterConfig, Utterance, UtteranceCutter, cut_track
from notetaker.recorder.ogg_read import TrackReader
from notetaker.recorder.paths import DataLayout
from notetaker.recorder.recorder import Recorder
from notetaker.sink import OPUS_SILENCE, AudioFrame, FanOut, Gap

START = 1000.0
FRAME = 960
FRAME_S = 0.02
UID = 42


def speech(size: int = 60) -> bytes:
    """A CELT 20 ms packet (TOC 0xFC) of ``size`` bytes: bigger is louder."""
    return bytes([0xFC]) + bytes([size % 251]) * (size - 1)


@dataclass
class Client:
    """One speaker's client: sends what a Discord client sends, frame by frame."""

    user_id: int = UID
    ssrc: int = 7
    rtp: int = 123_456
    seq: int = 100
    frame: int = 0  #: 20 ms slots since the meeting start
    frames: list[AudioFrame] = field(default_factory=list)

    def send(self, opus: bytes, late_s: float = 0.0) -> AudioFrame:
        f = AudioFrame(
            self.user_id,
            self.ssrc,
            self.seq & 0xFFFF,
            (self.rtp + self.frame * FRAME) & 0xFFFF_FFFF,
            START + self.frame * FRAME_S + 0.003 + late_s,
            opus,
        )
        self.frames.append(f)
        self.seq += 1
        self.frame += 1
        return f

    def talk(self, frames: int, size: int = 60) -> None:
        for _ in range(frames):
            self.send(speech(size))

    def quiet(self, frames: int) -> None:
        """Five silence frames, then nothing for the rest of ``frames`` slots."""
        for i in range(frames):
            if i < 5:
                self.send(OPUS_SILENCE)
            else:
                self.frame += 1


def run(frames: list[AudioFrame], config: CutterConfig | None = None) -> list[Utterance]:
    out: list[Utterance] = []
    cutter = UtteranceCutter(out.append, started_at=START, config=config)
    for f in frames:
        cutter.write(f)
    cutter.close()
    return out


def span(u: Utterance) -> tuple[int, int]:
    """An utterance's start and end in 20 ms slots."""
    return u.start // FRAME, u.end // FRAME


def test_a_pause_of_pause_s_ends_the_utterance() -> None:
    c = Client()
    c.frame = 50  # speaks from 1 s into the meeting
    c.talk(100)
    c.quiet(30)  # 0.6 s: five silence frames and 0.5 s without packets
    c.talk(40)
    got = run(c.frames)
    assert [span(u) for u in got] == [(50, 150), (180, 220)]
    assert [u.reason for u in got] == ["pause", "close"]
    assert [len(u.packets) for u in got] == [100, 40]  # silence frames are not kept
    assert [u.speech_s for u in got] == [2.0, 0.8]
    assert [u.seq for u in got] == [1, 2]


def test_a_shorter_pause_stays_inside_the_utterance() -> None:
    c = Client()
    c.talk(50)
    c.quiet(25)  # 0.5 s < 0.6 s
    c.talk(50)
    got = run(c.frames)
    assert [span(u) for u in got] == [(0, 125)]
    assert got[0].speech_samples == 100 * FRAME


def test_silence_frames_alone_never_make_an_utterance() -> None:
    c = Client()
    for _ in range(200):  # a client that sends silence frames without ever stopping
        c.send(OPUS_SILENCE)
    c.talk(10)
    for _ in range(40):
        c.send(OPUS_SILENCE)
    c.talk(10)
    got = run(c.frames)
    assert [span(u) for u in got] == [(200, 210), (250, 260)]


def test_a_speaker_who_never_pauses_is_split_at_the_quietest_moment_and_nothing_is_lost() -> None:
    c = Client()
    for i in range(75 * 50):  # 75 s of open mic
        # Quieter (smaller packets) for 0.2 s at 22 s and at 47 s: the split points.
        c.send(speech(20 if (1100 <= i < 1110 or 2350 <= i < 2360) else 90))
    got = run(c.frames)
    assert [u.reason for u in got] == ["max-length", "max-length", "close"]
    assert [span(u) for u in got] == [(0, 1105), (1105, 2355), (2355, 3750)]
    assert all(u.duration_s <= 30.0 for u in got)
    assert sum(len(u.packets) for u in got) == 75 * 50


def test_a_long_utterance_is_split_at_its_longest_inner_pause_when_it_has_one() -> None:
    c = Client()
    c.talk(600)  # 12 s
    c.quiet(10)  # a 0.2 s breath: too short to cut at, the best place to split
    c.talk(1400)  # 28 s more
    got = run(c.frames)
    assert span(got[0]) == (0, 600)
    assert got[0].reason == "max-length"
    assert got[1].start // FRAME == 610


def test_the_tick_ends_an_utterance_once_no_speech_arrived_for_pause_s() -> None:
    out: list[Utterance] = []
    cutter = UtteranceCutter(out.append, started_at=START)
    c = Client()
    c.talk(50)
    c.quiet(5)
    for f in c.frames:
        cutter.write(f)
    last_speech = c.frames[49].arrival
    cutter.tick(last_speech + 0.59)
    assert out == []  # silence frames after the speech do not hold it open or end it
    cutter.tick(last_speech + 0.6)
    assert [span(u) for u in out] == [(0, 50)]
    assert out[0].reason == "pause"
    cutter.tick(last_speech + 5)
    assert len(out) == 1


def test_packets_reordered_or_late_around_a_cut_follow_the_track() -> None:
    c = Client()
    c.talk(50)
    c.quiet(40)
    c.talk(30)
    frames = list(c.frames)
    # The last packet of the first utterance arrives after the second one began, and
    # two packets inside the second utterance swap places.
    late = frames.pop(49)
    frames.insert(56, late)
    frames[60], frames[61] = frames[61], frames[60]
    got = run(frames)
    assert [span(u) for u in got] == [(0, 49), (90, 120)]
    # As in the recorder, a packet that comes after a later one is dropped: 2 here.
    cutter_packets = sum(len(u.packets) for u in got)
    assert cutter_packets == 50 + 30 - 2


def test_a_reconnect_ends_the_utterance_and_the_next_one_is_placed_by_arrival() -> None:
    out: list[Utterance] = []
    cutter = UtteranceCutter(out.append, started_at=START)
    c = Client()
    c.talk(50)
    for f in c.frames:
        cutter.write(f)
    cutter.mark_reconnect()
    assert [u.reason for u in out] == ["reconnect"]
    # After the reconnect: a new SSRC and RTP base, 3 s later.
    again = Client(ssrc=99, rtp=5, frame=200)
    again.talk(20)
    for f in again.frames:
        cutter.write(f)
    cutter.close()
    assert [span(u) for u in out] == [(0, 50), (200, 220)]


def test_a_reconnect_gap_of_one_speaker_ends_only_their_utterance() -> None:
    out: list[Utterance] = []
    cutter = UtteranceCutter(out.append, started_at=START)
    a, b = Client(user_id=1, ssrc=1), Client(user_id=2, ssrc=2)
    a.talk(20)
    b.talk(20)
    for f in a.frames + b.frames:
        cutter.write(f)
    cutter.gap(Gap(1, 1, 0, 0, "reconnect"))
    cutter.gap(Gap(2, 2, 0, 3, "loss"))
    assert [(u.user_id, u.reason) for u in out] == [(1, "reconnect")]


def test_an_opted_out_speaker_is_forgotten_mid_utterance() -> None:
    out: list[Utterance] = []
    cutter = UtteranceCutter(out.append, started_at=START)
    c = Client()
    c.talk(20)
    for f in c.frames:
        cutter.write(f)
    cutter.drop_user(UID)
    c.talk(20)
    for f in c.frames[20:]:
        cutter.write(f)
    cutter.close()
    assert out == []


def test_invalid_config_is_refused_with_the_setting_named() -> None:
    with pytest.raises(Exception, match="pause_s"):
        CutterConfig(pause_s=0.0)
    with pytest.raises(Exception, match="max_utterance_s"):
        CutterConfig(max_utterance_s=1.0)


def _record(tmp: Path, frames: list[AudioFrame]) -> tuple[list[Utterance], Path]:
    out: list[Utterance] = []
    recorder = Recorder(DataLayout(tmp), 1, started_at=START, clock=lambda: START)
    cutter = UtteranceCutter(
        out.append, started_at=START, recorder_config=recorder.config, clock=lambda: START
    )
    sink = FanOut(recorder, cutter)
    for f in frames:
        sink.write(f)
    sink.close()
    return out, recorder.track_path(UID)


talk_spurts = st.lists(
    st.tuples(
        st.integers(1, 120),  # frames of speech
        st.integers(0, 80),  # then frames of quiet
        st.integers(10, 120),  # packet size (loudness)
        st.sampled_from(["none", "late", "swap", "jitter"]),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=40, deadline=None)
@given(plan=talk_spurts, lead=st.integers(0, 200))
def test_utterances_are_exact_ranges_of_the_recorded_track(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[int, int, int, str]], lead: int
) -> None:
    """Whatever the timing, the utterances hold exactly the track's speech packets, in
    the track's places, and cutting the track again gives the same utterances."""
    c = Client(frame=lead)
    for frames, quiet, size, disorder in plan:
        first = len(c.frames)
        c.talk(frames, size)
        if disorder == "late" and frames > 2:
            f = c.frames.pop(first)
            c.frames.insert(first + 2, f)
        elif disorder == "swap" and frames > 3:
            c.frames[first + 1], c.frames[first + 2] = c.frames[first + 2], c.frames[first + 1]
        elif disorder == "jitter":
            c.frames[first:] = [
                AudioFrame(
                    f.user_id, f.ssrc, f.sequence, f.rtp_timestamp, f.arrival + 0.009, f.opus
                )
                for f in c.frames[first:]
            ]
        c.quiet(quiet)
    tmp = tmp_path_factory.mktemp("track")
    live, path = _record(tmp, c.frames)
    track = [(p.start, p.opus) for p in TrackReader(path).packets() if p.opus != OPUS_SILENCE]
    assert [p for u in live for p in u.packets] == track
    again = list(cut_track(UID, TrackReader(path).packets()))
    assert [(u.start, u.end, u.packets) for u in again] == [
        (u.start, u.end, u.packets) for u in live
    ]
    for u in live:
        assert u.end - u.start <= 30 * 48_000
        assert u.packets[0][0] == u.start and u.packets[-1][0] + FRAME == u.end
