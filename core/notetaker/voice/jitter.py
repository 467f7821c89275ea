"""A per-speaker reorder (jitter) buffer keyed by 16-bit RTP sequence numbers.

It releases packets in sequence order as soon as they are contiguous, so in-order audio
is never delayed. A missing sequence number (a *hole*) holds back the packets behind it
until the hole is filled, a packet arrives ``max_held`` or more sequence numbers past
it (the window slides to fit that packet), or ``max_wait`` seconds of arrival time
pass; then the hole is reported once as lost and playout goes on. Packets for sequence
numbers already passed are dropped and counted as duplicates (released before) or late
(given up on before). Playout waits for ``prefill`` packets before its first release.

Deterministic: time is only what callers pass in (``arrival``/``now``); nothing here
reads a clock, so tests replay exact schedules.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")

SEQ_MOD: Final = 0x10000
_HALF: Final = 0x8000
_MASK: Final = 0xFFFF

_UNSEEN: Final = 0
_SEEN: Final = 1
_LOST: Final = 2


def seq_diff(a: int, b: int) -> int:
    """Signed distance from ``b`` to ``a`` modulo 2**16, in [-32768, 32767].

    ``seq_diff(0, 65535) == 1``: 0 comes right after 65535.
    """
    return ((a - b + _HALF) & _MASK) - _HALF


def seq_after(a: int, b: int) -> bool:
    """True if sequence number ``a`` comes after ``b`` (wraparound-aware)."""
    return seq_diff(a, b) > 0


class PushResult(IntEnum):
    """What :meth:`JitterBuffer.push` did with a packet."""

    ACCEPTED = 0
    DUPLICATE = 1
    LATE = 2


class _Failure:
    """Placeholder for a packet that arrived but could not be used (e.g. DAVE failed)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_MISSING: Final[Any] = object()


class JitterBuffer(Generic[T]):
    """Reorders one speaker's packets; see the module docstring for the policy.

    ``deliver(seq, item)`` receives packets in order; ``lose(first_seq, count, reason)``
    is called once per run of sequence numbers that will never be delivered
    (``reason`` is ``"loss"``, or the reason given to :meth:`push_failed`).

    ``prefill`` packets (or ``max_wait``) are awaited before the very first release so a
    stream whose first packets arrive swapped starts at the right one.
    ``resync_after`` is how far (in packets) a sequence number may jump before it is
    taken as the sender restarting its sequence rather than loss or a stale packet.
    """

    __slots__ = (
        "_deliver",
        "_held",
        "_hole_since",
        "_lose",
        "_next",
        "_pending",
        "_started",
        "_status",
        "delivered",
        "duplicates",
        "late",
        "lost",
        "max_held",
        "max_wait",
        "prefill",
        "resync_after",
        "resyncs",
    )

    def __init__(
        self,
        deliver: Callable[[int, T], None],
        lose: Callable[[int, int, str], None],
        *,
        max_held: int = 16,
        max_wait: float = 0.1,
        prefill: int = 3,
        resync_after: int = 3000,
    ) -> None:
        if max_held < 1:
            raise ValueError(f"max_held must be at least 1, not {max_held}")
        if not 1 <= prefill <= max_held:
            raise ValueError(f"prefill must be in 1..max_held ({max_held}), not {prefill}")
        if not max_held < resync_after < _HALF:
            raise ValueError(f"resync_after must be in max_held..32767, not {resync_after}")
        self._deliver = deliver
        self._lose = lose
        self.max_held = max_held
        self.max_wait = max_wait
        self.prefill = prefill
        self.resync_after = resync_after
        self._pending: dict[int, T | _Failure] = {}
        # What became of each sequence number released or given up on recently; the
        # entry half the sequence space away is cleared as playout advances, so this
        # never confuses a new lap of the sequence space with the previous one.
        self._status = bytearray(SEQ_MOD)
        self._next = -1
        self._started = False
        self._held = 0
        self._hole_since = -1.0
        self.delivered = 0
        self.lost = 0
        self.duplicates = 0
        self.late = 0
        self.resyncs = 0

    @property
    def held(self) -> int:
        """Packets waiting in the buffer (not counting failure placeholders)."""
        return self._held

    @property
    def next_sequence(self) -> int | None:
        """The sequence number playout is waiting for, or None before the stream starts."""
        return self._next if self._started else None

    def push(self, seq: int, item: T, arrival: float) -> PushResult:
        """Offer packet ``seq`` that arrived at ``arrival``; may deliver several packets."""
        return self._push(seq & _MASK, item, arrival)

    def push_failed(self, seq: int, arrival: float, reason: str) -> PushResult:
        """Record that packet ``seq`` arrived but is unusable; its slot is reported with
        ``reason`` instead of ``"loss"`` when playout reaches it."""
        return self._push(seq & _MASK, _Failure(reason), arrival)

    def tick(self, now: float) -> None:
        """Give up on a hole that has waited ``max_wait``; call this periodically."""
        if self._hole_since >= 0.0 and now - self._hole_since >= self.max_wait:
            if self._started:
                self._give_up_hole(now)
            else:
                self._start(now)

    def flush(self) -> None:
        """Release everything held, in order, reporting holes; then forget the stream."""
        if not self._started and self._pending:
            self._started = True
            self._release_ready()
        while self._pending:
            self._skip_to(self._nearest_pending())
            self._release_ready()
        self._next = -1
        self._started = False
        self._hole_since = -1.0
        self._status[:] = bytes(SEQ_MOD)

    # -- internals ------------------------------------------------------------------

    def _push(self, seq: int, item: T | _Failure, arrival: float) -> PushResult:
        pending = self._pending
        if not self._started:
            return self._push_before_start(seq, item, arrival)
        d = ((seq - self._next + _HALF) & _MASK) - _HALF
        if d == 0 and not pending:
            # The common case: the packet playout is waiting for, nothing held.
            self._next = (seq + 1) & _MASK
            status = self._status
            status[seq] = _SEEN
            status[seq ^ _HALF] = _UNSEEN
            if isinstance(item, _Failure):
                self.lost += 1
                self._lose(seq, 1, item.reason)
            else:
                self.delivered += 1
                self._deliver(seq, item)
            return PushResult.ACCEPTED
        if d < 0:
            state = self._status[seq]
            if state == _SEEN:
                self.duplicates += 1
                return PushResult.DUPLICATE
            if state == _LOST or -d <= self.resync_after:
                self.late += 1
                return PushResult.LATE
            self._resync()
            return self._push_before_start(seq, item, arrival)
        if d > self.resync_after:
            self._resync()
            return self._push_before_start(seq, item, arrival)
        if seq in pending:
            self.duplicates += 1
            return PushResult.DUPLICATE
        pending[seq] = item
        if not isinstance(item, _Failure):
            self._held += 1
        if d == 0:
            # Fills the hole playout waits on; a further hole is waited for from now.
            self._release_ready()
            self._hole_since = arrival if pending else -1.0
            return PushResult.ACCEPTED
        if self._hole_since < 0.0:
            self._hole_since = arrival
        if d >= self.max_held:
            self._skip_to((seq - self.max_held + 1) & _MASK)
            self._release_ready()
            self._hole_since = arrival if pending else -1.0
        elif arrival - self._hole_since >= self.max_wait:
            self._give_up_hole(arrival)
        return PushResult.ACCEPTED

    def _push_before_start(self, seq: int, item: T | _Failure, arrival: float) -> PushResult:
        pending = self._pending
        if seq in pending:
            self.duplicates += 1
            return PushResult.DUPLICATE
        if not pending:
            self._next = seq
            self._hole_since = arrival
        elif seq_diff(seq, self._next) < 0:
            self._next = seq
        pending[seq] = item
        if not isinstance(item, _Failure):
            self._held += 1
        span = max((k - self._next) & _MASK for k in pending)
        if (
            len(pending) >= self.prefill
            or span >= self.max_held
            or arrival - self._hole_since >= self.max_wait
        ):
            self._start(arrival)
        return PushResult.ACCEPTED

    def _start(self, now: float) -> None:
        self._started = True
        self._hole_since = -1.0
        # Entries further than the window ahead of the start cannot all be waited for.
        span = max(((k - self._next) & _MASK for k in self._pending), default=0)
        if span >= self.max_held:
            self._release_ready()
            self._skip_to((self._next + span - self.max_held + 1) & _MASK)
        self._release_ready()
        self._after_release(now)

    def _after_release(self, now: float) -> None:
        if not self._pending:
            self._hole_since = -1.0
        elif self._hole_since < 0.0:
            self._hole_since = now

    def _give_up_hole(self, now: float) -> None:
        if not self._pending:
            self._hole_since = -1.0
            return
        self._skip_to(self._nearest_pending())
        self._release_ready()
        self._hole_since = -1.0
        self._after_release(now)

    def _nearest_pending(self) -> int:
        nxt = self._next
        return min(self._pending, key=lambda k: (k - nxt) & _MASK)

    def _release_ready(self) -> None:
        pending = self._pending
        while pending:
            seq = self._next
            item = pending.pop(seq, _MISSING)
            if item is _MISSING:
                return
            self._next = (seq + 1) & _MASK
            self._emit(seq, item)

    def _emit(self, seq: int, item: T | _Failure) -> None:
        status = self._status
        status[seq] = _SEEN
        status[seq ^ _HALF] = _UNSEEN
        if isinstance(item, _Failure):
            self.lost += 1
            self._lose(seq, 1, item.reason)
            return
        self._held -= 1
        self.delivered += 1
        self._deliver(seq, item)

    def _skip_to(self, target: int) -> None:
        """Advance playout to ``target``: deliver what is held, report holes as lost."""
        pending = self._pending
        while self._next != target:
            nxt = self._next
            item = pending.pop(nxt, _MISSING)
            if item is not _MISSING:
                self._next = (nxt + 1) & _MASK
                self._emit(nxt, item)
                continue
            distance = (target - nxt) & _MASK
            for k in pending:
                ahead = (k - nxt) & _MASK
                if ahead < distance:
                    distance = ahead
            self._mark_lost(nxt, distance)
            self._next = (nxt + distance) & _MASK
            self.lost += distance
            self._lose(nxt, distance, "loss")

    def _mark_lost(self, first: int, count: int) -> None:
        status = self._status
        for start, n in _ranges(first, count):
            status[start : start + n] = b"\x02" * n
        for start, n in _ranges(first ^ _HALF, count):
            status[start : start + n] = bytes(n)

    def _resync(self) -> None:
        self.resyncs += 1
        self.flush()


def _ranges(first: int, count: int) -> list[tuple[int, int]]:
    """Split ``count`` sequence numbers from ``first`` into non-wrapping slices."""
    count = min(count, _HALF)
    head = min(count, SEQ_MOD - first)
    return [(first, head), (0, count - head)] if head < count else [(first, count)]
