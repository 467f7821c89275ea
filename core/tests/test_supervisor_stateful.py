"""Supervisor under random sequences of closes, failures, moves, stale events, disconnects.

A Hypothesis state machine drives a Supervisor over a FakeLink on a FakeClock. Each rule
runs its coroutine on an event loop owned by the test case and then waits until the
supervisor is idle, so every check sees a settled state and no real time passes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from notetaker.clock import FakeClock
from notetaker.errors import VoiceStopped, VoiceTimeout
from notetaker.fakes import FakeLink
from notetaker.policy import ReconnectPolicy
from notetaker.session import Closed, ServerUpdate, StateChanged, Stopped, VoiceEvent, VoiceState
from notetaker.supervisor import ACTIVE_STATES, TRANSITIONS, Supervisor

S = VoiceState
T = TypeVar("T")

POLICY = ReconnectPolicy(
    base_delay=1.0,
    max_delay=4.0,
    max_attempts=3,
    reset_wait=1.0,
    move_grace=5.0,
    resume_limit=2,
    stable_after=0.0,  # healthy connections here; the flapping rule has its own test
)
# Close codes the server may send, and the ones that must end the session at once.
CODES = [None, 1000, 1001, 1006, 4001, 4004, 4006, 4009, 4011, 4012, 4013, 4014, 4015]
CODES += [4016, 4017, 4020, 4021, 4022, 4444]
FINAL = {4004, 4012, 4016, 4017, 4021, 4022}
ENDPOINTS = st.sampled_from(["b.discord.media:2087", "c.discord.media:443", None])
TERMINAL = frozenset({S.IDLE, S.STOPPED, S.DISCONNECTED})


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.link = FakeLink(clock=self.clock)
        self.sup: Supervisor | None = None
        self.connecting: asyncio.Future[None] | None = None
        self.segment = 0  # index in link.calls where the current connect began
        self.quiet_from: int | None = None  # no open or join may follow this index
        self.seen: list[VoiceEvent] = []

    # -- plumbing -----------------------------------------------------------------------

    @property
    def s(self) -> Supervisor:
        assert self.sup is not None
        return self.sup

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def settle(self) -> None:
        await self.s.wait_idle()
        self.seen.extend(self.sub.drain())
        event(f"reached {self.s.state.value}")  # shown by --hypothesis-show-statistics

    def teardown(self) -> None:
        try:
            if self.sup is not None and self.sup.state is not S.IDLE:
                self.run(self.sup.disconnect())
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.run(asyncio.wait(pending))
        finally:
            self.loop.close()

    @initialize(seed=st.integers(0, 2**32 - 1))
    def create(self, seed: int) -> None:
        self.sup = Supervisor(
            self.link, POLICY, guild_id=1, clock=self.clock, rng=random.Random(seed).random
        )
        self.sub = self.sup.events()
        self.connect(10)  # most interesting sequences start from a live connection

    # -- rules --------------------------------------------------------------------------

    @precondition(lambda self: self.sup is not None and self.sup.state in TERMINAL)
    @rule(channel=st.sampled_from([10, 11]))
    def connect(self, channel: int) -> None:
        async def go() -> None:
            self.segment = len(self.link.calls)
            self.quiet_from = None
            self.connecting = self.s.start(channel)
            await self.settle()

        self.run(go())

    @precondition(lambda self: self.sup is not None and self.sup.state is S.CONNECTED)
    @rule(code=st.sampled_from(CODES))
    def server_closes(self, code: int | None) -> None:
        assert self.link.live == self.s.attempt

        async def go() -> None:
            await self.link.server_close(code)
            await self.settle()

        self.run(go())
        if code in FINAL:
            assert self.s.state is S.STOPPED
            assert self.last_stop().code == code
        elif code == 1000:
            assert self.s.state is S.DISCONNECTED
        elif code == 4014:
            assert self.s.state is S.WAITING_FOR_MOVE

    @rule(codes=st.lists(st.sampled_from([c for c in CODES if c is not None]), max_size=4))
    def script_open_failures(self, codes: list[int]) -> None:
        self.link.fail_opens(*codes)

    @rule(count=st.integers(1, 2))
    def script_join_timeouts(self, count: int) -> None:
        self.link.fail_joins(*[None] * count)

    @precondition(lambda self: self.sup is not None and self.sup.state in ACTIVE_STATES)
    @rule(endpoint=ENDPOINTS)
    def server_update(self, endpoint: str | None) -> None:
        before = self.s.state
        mark = len(self.link.calls)
        scripted = self.link.pending_failures

        async def go() -> None:
            await self.link.server_update(endpoint)
            await self.settle()

        self.run(go())
        if before is S.WAITING_FOR_MOVE and endpoint is not None and not scripted:
            # the move: identify with the new server, no op 4
            assert self.s.state is S.CONNECTED
            names = [c.name for c in self.link.since(mark)]
            assert "request_voice_state" not in names and "open" in names

    @precondition(lambda self: self.sup is not None and self.sup.attempt >= 2)
    @precondition(lambda self: self.sup is not None and self.sup.state in ACTIVE_STATES)
    @rule(back=st.integers(1, 3), code=st.sampled_from(CODES), endpoint=ENDPOINTS)
    def stale_events(self, back: int, code: int | None, endpoint: str | None) -> None:
        attempt = max(0, self.s.attempt - back)
        state, mark, stale = self.s.state, len(self.link.calls), self.s.stats()["stale_events"]

        async def go() -> None:
            await self.link.emit(Closed(attempt, code))
            await self.link.emit(ServerUpdate(attempt, endpoint))
            await self.settle()

        self.run(go())
        assert self.s.state is state
        assert self.link.since(mark) == []
        assert self.s.stats()["stale_events"] == stale + 2

    @precondition(lambda self: self.clock.next_deadline() is not None)
    @rule()
    def time_passes(self) -> None:
        before = self.s.state
        self.clock.advance_to_next()
        self.run(self.settle())
        if before is S.WAITING_FOR_MOVE:
            # the grace ran out without a move
            assert self.s.state is S.STOPPED
            assert self.last_stop().code == 4014

    @precondition(lambda self: self.sup is not None and self.sup.state in TERMINAL)
    @rule(code=st.sampled_from(CODES))
    def late_close(self, code: int | None) -> None:
        mark = len(self.link.calls)
        self.link.emit_nowait(Closed(self.s.attempt, code))
        self.run(self.settle())
        assert self.link.since(mark) == []

    @precondition(lambda self: self.sup is not None and self.sup.state is not S.IDLE)
    @rule(force=st.booleans())
    def disconnect(self, force: bool) -> None:
        self.run(self.s.disconnect(force=force))
        self.run(self.settle())
        assert self.s.state is S.DISCONNECTED
        assert self.clock.sleepers == 0

    # -- invariants ---------------------------------------------------------------------

    def last_stop(self) -> Stopped:
        stops = [e for e in self.seen if isinstance(e, Stopped)]
        assert stops, "no Stopped event"
        return stops[-1]

    @invariant()
    def the_link_saw_nothing_a_server_would_refuse(self) -> None:
        # includes: never two live connections, never an open on an old attempt number
        assert self.link.violations == []

    @invariant()
    def transitions_are_legal_and_no_internal_error(self) -> None:
        for seen in self.seen:
            if isinstance(seen, StateChanged):
                assert seen.new in TRANSITIONS[seen.old]
            if isinstance(seen, Stopped):
                assert "unexpectedly" not in seen.reason

    @invariant()
    def attempts_stay_within_the_budget(self) -> None:
        in_a_row = 0
        for call in self.link.since(self.segment):
            joining = call.name == "request_voice_state" and call.args != (None,)
            if call.name == "open" or joining:
                if call.failed:
                    in_a_row += 1
                    assert in_a_row <= POLICY.max_attempts
                elif call.name == "open":
                    in_a_row = 0

    @invariant()
    def nothing_reconnects_once_stopped_or_disconnected(self) -> None:
        if self.sup is None:
            return
        if self.s.state in (S.STOPPED, S.DISCONNECTED):
            if self.quiet_from is None:
                self.quiet_from = len(self.link.calls)
            for call in self.link.since(self.quiet_from):
                assert call.name != "open"
                assert not (call.name == "request_voice_state" and call.args != (None,))
            assert self.clock.sleepers == 0

    @invariant()
    def connect_outcome_matches_the_state(self) -> None:
        fut = self.connecting
        if fut is None or self.sup is None:
            return
        if self.s.state is S.CONNECTED:
            assert fut.done() and fut.exception() is None
        elif self.s.state in (S.STOPPED, S.DISCONNECTED) and fut.done() and fut.exception():
            assert isinstance(fut.exception(), VoiceStopped)

    @invariant()
    def never_busy_between_steps(self) -> None:
        if self.sup is not None:
            try:
                self.run(self.s.wait_idle(timeout=0))
            except VoiceTimeout:  # pragma: no cover - the message says what was busy
                raise AssertionError(f"supervisor busy in {self.s.state}") from None


SupervisorMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervisorStateMachine = SupervisorMachine.TestCase
