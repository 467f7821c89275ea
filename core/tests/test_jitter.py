"""The per-speaker jitter buffer: ordering, loss, duplicates, wraparound, timing."""

from __future__ import annotations

import random

import pytest

from notetaker.voice.jitter import JitterBuffer, PushResult, seq_after, seq_diff

Event = tuple[object, ...]


class Recorder:
    def __init__(self, **options: float) -> None:
        self.events: list[Event] = []
        self.buffer: JitterBuffer[str] = JitterBuffer(self.deliver, self.lose, **options)  # type: ignore[arg-type]

    def deliver(self, seq: int, item: str) -> None:
        assert item == f"p{seq}"
        self.events.append(("frame", seq))

    def lose(self, first: int, count: int, reason: str) -> None:
        self.events.append(("gap", first, count, reason))

    def push(self, seq: int, at: float = 0.0) -> PushResult:
        return self.buffer.push(seq, f"p{seq}", at)

    def frames(self) -> list[int]:
        return [int(e[1]) for e in self.events if e[0] == "frame"]  # type: ignore[call-overload]

    def gaps(self) -> list[Event]:
        return [e[1:] for e in self.events if e[0] == "gap"]


def test_seq_arithmetic_wraps() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(10, 5) == 5
    assert seq_diff(32767, 0) == 32767
    assert seq_diff(32768, 0) == -32768
    assert seq_after(2, 65530)
    assert not seq_after(65530, 2)


def test_in_order_is_delivered_immediately_after_prefill() -> None:
    r = Recorder(prefill=3)
    r.push(10)
    r.push(11)
    assert r.frames() == []
    r.push(12)
    assert r.frames() == [10, 11, 12]
    r.push(13)
    assert r.frames() == [10, 11, 12, 13]
    assert r.buffer.held == 0
    assert r.gaps() == []


def test_swapped_first_packets_start_at_the_earliest() -> None:
    r = Recorder(prefill=3)
    for seq in (101, 100, 102, 103):
        r.push(seq)
    assert r.frames() == [100, 101, 102, 103]


def test_reorder_within_window() -> None:
    r = Recorder(prefill=1, max_held=8)
    for seq in (0, 1, 3, 4, 2, 5, 7, 6):
        assert r.push(seq) is PushResult.ACCEPTED
    assert r.frames() == list(range(8))
    assert r.gaps() == []
    assert r.buffer.delivered == 8


def test_hole_given_up_when_window_fills() -> None:
    r = Recorder(prefill=1, max_held=4, max_wait=10.0)
    r.push(0)
    for seq in (2, 3, 4):
        r.push(seq)
    assert r.frames() == [0]
    r.push(5)  # 5 is 4 ahead of the hole at 1: the window (4) is full
    assert r.frames() == [0, 2, 3, 4, 5]
    assert r.gaps() == [(1, 1, "loss")]
    assert r.buffer.lost == 1


def test_hole_given_up_after_max_wait_on_push() -> None:
    r = Recorder(prefill=1, max_held=16, max_wait=0.1)
    r.push(0, at=0.0)
    r.push(2, at=0.02)
    r.push(3, at=0.04)
    assert r.frames() == [0]
    r.push(4, at=0.13)  # the hole has waited over 0.1 s since 2 arrived
    assert r.frames() == [0, 2, 3, 4]
    assert r.gaps() == [(1, 1, "loss")]


def test_hole_given_up_on_tick() -> None:
    r = Recorder(prefill=1, max_wait=0.1)
    r.push(0, at=0.0)
    r.push(3, at=0.02)
    r.buffer.tick(0.05)
    assert r.frames() == [0]
    r.buffer.tick(0.13)
    assert r.frames() == [0, 3]
    assert r.gaps() == [(1, 2, "loss")]


def test_late_packet_after_giving_up_is_dropped_and_counted() -> None:
    r = Recorder(prefill=1, max_held=2)
    for seq in (0, 2, 3):
        r.push(seq)
    assert r.gaps() == [(1, 1, "loss")]
    assert r.push(1) is PushResult.LATE
    assert r.buffer.late == 1
    assert r.frames() == [0, 2, 3]


def test_duplicates_released_or_held_are_dropped() -> None:
    r = Recorder(prefill=1)
    r.push(0)
    r.push(1)
    assert r.push(1) is PushResult.DUPLICATE  # already released
    r.push(3)
    assert r.push(3) is PushResult.DUPLICATE  # held behind the hole at 2
    r.push(2)
    assert r.frames() == [0, 1, 2, 3]
    assert r.buffer.duplicates == 2


def test_duplicate_before_start() -> None:
    r = Recorder(prefill=3)
    r.push(5)
    assert r.push(5) is PushResult.DUPLICATE


def test_wraparound_65535_to_0() -> None:
    r = Recorder(prefill=1, max_held=8)
    for seq in (65533, 65534, 0, 65535, 1, 3, 2):
        assert r.push(seq) is PushResult.ACCEPTED
    assert r.frames() == [65533, 65534, 65535, 0, 1, 2, 3]
    assert r.push(65535) is PushResult.DUPLICATE


def test_gap_across_wraparound() -> None:
    r = Recorder(prefill=1, max_held=8, max_wait=0.1)
    r.push(65533, at=0.0)
    r.push(1, at=0.0)
    r.push(2, at=0.02)
    assert r.gaps() == []
    r.push(3, at=0.15)
    assert r.gaps() == [(65534, 3, "loss")]
    assert r.frames() == [65533, 1, 2, 3]
    assert r.push(65535) is PushResult.LATE
    assert r.push(65533) is PushResult.DUPLICATE


def test_window_overflow_slides_one_slot_at_a_time() -> None:
    r = Recorder(prefill=1, max_held=3, max_wait=10.0)
    r.push(65533)
    for seq in (1, 2, 3):
        r.push(seq)
    assert r.gaps() == [(65534, 1, "loss"), (65535, 1, "loss"), (0, 1, "loss")]
    assert r.frames() == [65533, 1, 2, 3]


def test_long_loss_is_one_gap() -> None:
    r = Recorder(prefill=1, max_held=16)
    r.push(100)
    r.push(1100)
    assert r.gaps() == [(101, 984, "loss")]  # up to the window start below 1100
    r.buffer.flush()
    assert r.gaps() == [(101, 984, "loss"), (1085, 15, "loss")]
    assert r.frames() == [100, 1100]


def test_failed_packet_reported_with_its_reason() -> None:
    r = Recorder(prefill=1)
    r.push(0)
    r.buffer.push_failed(1, 0.0, "decrypt")
    r.push(2)
    assert r.frames() == [0, 2]
    assert r.gaps() == [(1, 1, "decrypt")]
    assert r.buffer.push_failed(1, 0.0, "decrypt") is PushResult.DUPLICATE


def test_flush_releases_in_order_with_gaps_and_restarts() -> None:
    r = Recorder(prefill=1, max_wait=10.0)
    r.push(0)
    r.push(2)
    r.push(5)
    r.buffer.flush()
    assert r.frames() == [0, 2, 5]
    assert r.gaps() == [(1, 1, "loss"), (3, 2, "loss")]
    assert r.buffer.next_sequence is None
    assert r.buffer.held == 0
    r.push(700)  # a new stream after flush starts anywhere
    assert r.frames()[-1] == 700


def test_flush_before_start_delivers_what_is_held() -> None:
    r = Recorder(prefill=3)
    r.push(9)
    r.buffer.flush()
    assert r.frames() == [9]


def test_sender_restart_resyncs_without_a_huge_gap() -> None:
    r = Recorder(prefill=1, resync_after=1000)
    r.push(30000)
    r.push(30001)
    r.push(10)  # far behind and never seen: the sender restarted its sequence
    r.push(11)
    assert r.frames() == [30000, 30001, 10, 11]
    assert r.gaps() == []
    assert r.buffer.resyncs == 1


def test_forward_jump_beyond_resync_threshold() -> None:
    r = Recorder(prefill=1, resync_after=1000)
    r.push(5)
    r.push(20000)
    assert r.frames() == [5, 20000]
    assert r.gaps() == []
    assert r.buffer.resyncs == 1


def test_time_to_start_when_prefill_never_comes() -> None:
    r = Recorder(prefill=3, max_wait=0.1)
    r.push(40, at=1.0)
    r.buffer.tick(1.05)
    assert r.frames() == []
    r.buffer.tick(1.1)
    assert r.frames() == [40]


@pytest.mark.parametrize("seed", range(20))
def test_random_schedule_invariants(seed: int) -> None:
    """Every sequence number is delivered or reported lost exactly once, in order."""
    rng = random.Random(seed)
    start = rng.randrange(65536)
    n = 600
    arrivals: list[tuple[float, int]] = []
    for i in range(n):
        if rng.random() < 0.05:
            continue  # lost
        t = i * 0.02 + rng.uniform(0, 0.08)
        arrivals.append((t, (start + i) & 0xFFFF))
        if rng.random() < 0.03:
            arrivals.append((t + rng.uniform(0, 0.3), (start + i) & 0xFFFF))
    arrivals.sort()
    r = Recorder(prefill=2, max_held=8, max_wait=0.06)
    results = [r.push(seq, at) for at, seq in arrivals]
    r.buffer.flush()
    covered: list[int] = []
    for event in r.events:
        if event[0] == "frame":
            covered.append(int(event[1]))  # type: ignore[call-overload]
        else:
            first, count = int(event[1]), int(event[2])  # type: ignore[call-overload]
            covered.extend((first + k) & 0xFFFF for k in range(count))
    first_seq = covered[0]
    assert covered == [(first_seq + k) & 0xFFFF for k in range(len(covered))]
    accepted = results.count(PushResult.ACCEPTED)
    assert accepted == len(r.frames())
    dropped = results.count(PushResult.DUPLICATE) + results.count(PushResult.LATE)
    assert accepted + dropped == len(arrivals)
    assert r.buffer.duplicates + r.buffer.late == dropped
