"""Time, injectable: the supervisor waits on a :class:`Clock` so tests never really sleep.

:class:`SystemClock` is the real one. :class:`FakeClock` is public, for tests: time moves
only when the test calls :meth:`FakeClock.advance`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    """Monotonic time in seconds and a way to wait for it to pass."""

    def now(self) -> float:
        """Seconds on a monotonic clock (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend for ``seconds`` of this clock's time (<= 0: just yield)."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(eq=False)
class _Sleeper:
    deadline: float
    order: int
    future: asyncio.Future[None]


@dataclass
class FakeClock:
    """A clock that only moves when told to, for deterministic tests.

    ``sleep`` suspends until :meth:`advance` moves time to or past the sleeper's
    deadline. Any number of tasks may sleep at once; ``advance`` wakes exactly those
    whose deadline has passed, earliest first (ties in the order they went to sleep).
    A cancelled sleeper is forgotten. :meth:`wait_for_sleepers` lets a test wait until
    code under test is asleep, instead of polling::

        clock = FakeClock()
        task = asyncio.create_task(thing_that_sleeps(clock))
        await clock.wait_for_sleepers(1)
        clock.advance(clock.next_deadline() - clock.now())

    ``slept`` records every requested duration, in order.
    """

    start: float = 0.0
    slept: list[float] = field(default_factory=list)
    _now: float = field(init=False)
    _sleepers: list[_Sleeper] = field(default_factory=list, init=False, repr=False)
    _watchers: list[asyncio.Future[None]] = field(default_factory=list, init=False, repr=False)
    _order: itertools.count[int] = field(default_factory=itertools.count, init=False, repr=False)

    def __post_init__(self) -> None:
        self._now = self.start

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleeper = _Sleeper(self._now + seconds, next(self._order), fut)
        self._sleepers.append(sleeper)
        self._notify()
        try:
            await fut
        finally:
            if sleeper in self._sleepers:
                self._sleepers.remove(sleeper)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline passed."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        due = sorted(
            (s for s in self._sleepers if s.deadline <= self._now),
            key=lambda s: (s.deadline, s.order),
        )
        for sleeper in due:
            self._sleepers.remove(sleeper)
            if not sleeper.future.done():
                sleeper.future.set_result(None)

    def advance_to_next(self) -> float:
        """Advance to the earliest pending deadline; returns how far time moved."""
        deadline = self.next_deadline()
        if deadline is None:
            raise RuntimeError("nobody is sleeping on this clock")
        step = max(0.0, deadline - self._now)
        self.advance(step)
        return step

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock now."""
        return sum(1 for s in self._sleepers if not s.future.done())

    def next_deadline(self) -> float | None:
        """The earliest deadline of a sleeping task, or None if nobody sleeps."""
        pending = [s.deadline for s in self._sleepers if not s.future.done()]
        return min(pending) if pending else None

    async def wait_for_sleepers(self, count: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once at least ``count`` tasks sleep on this clock.

        ``timeout`` is in real seconds and only guards against a hung test: it raises
        :class:`TimeoutError`.
        """
        async with asyncio.timeout(timeout):
            while self.sleepers < count:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._watchers.append(fut)
                await fut

    def _notify(self) -> None:
        watchers, self._watchers = self._watchers, []
        for fut in watchers:
            if not fut.done():
                fut.set_result(None)
