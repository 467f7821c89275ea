"""Supervisor: the reconnect state machine over a FakeLink, on a FakeClock (no real sleeps)."""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

import pytest

from notetaker.clock import FakeClock, SystemClock
from notetaker.errors import VoiceError, VoiceStopped, VoiceTimeout
from notetaker.fakes import FakeLink, run_until
from notetaker.policy import ReconnectPolicy
from notetaker.session import (
    Closed,
    Reconnected,
    Resumed,
    ServerUpdate,
    SpeakerChanged,
    StateChanged,
    Stopped,
    VoiceEvent,
    VoiceState,
)
from notetaker.sink import CaptureSink
from notetaker.supervisor import Supervisor

S = VoiceState
E = TypeVar("E", bound=VoiceEvent)
POLICY = ReconnectPolicy(
    base_delay=1.0,
    max_delay=8.0,
    max_attempts=4,
    reset_wait=1.5,
    move_grace=5.0,
    resume_limit=2,
    stable_after=0.0,  # healthy connections here; the flapping rule has its own test
)
CHANNEL = 42
WORLD = ("server_close", "server_update", "set_sink")  # calls that are not the supervisor's


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def link(clock: FakeClock) -> FakeLink:
    return FakeLink(clock=clock)


def make(
    link: FakeLink, clock: FakeClock, *, jitter: float = 0.0, policy: ReconnectPolicy = POLICY
) -> Supervisor:
    return Supervisor(link, policy, guild_id=7, clock=clock, rng=lambda: jitter)


def supervisor_calls(link: FakeLink, since: int) -> list[tuple[str, tuple[object, ...]]]:
    return [(c.name, c.args) for c in link.since(since) if c.name not in WORLD]


def of(events: list[VoiceEvent], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


async def connected(link: FakeLink, clock: FakeClock, *, jitter: float = 0.0) -> Supervisor:
    sup = make(link, clock, jitter=jitter)
    await sup.connect(CHANNEL)
    assert sup.state is S.CONNECTED
    return sup


# -- connecting -------------------------------------------------------------------------


async def test_connect_joins_then_identifies_and_logs_each_transition(
    link: FakeLink, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    sup = make(link, clock)
    sub = sup.events()
    with caplog.at_level(logging.INFO, logger="notetaker.supervisor"):
        await sup.connect(CHANNEL)
    assert supervisor_calls(link, 0) == [("request_voice_state", (42,)), ("open", (1, False))]
    changes = [(e.old, e.new) for e in sub.drain() if isinstance(e, StateChanged)]
    assert changes == [(S.IDLE, S.JOINING), (S.JOINING, S.CONNECTING), (S.CONNECTING, S.CONNECTED)]
    assert "voice 7: idle -> joining (attempt 1)" in caplog.messages
    assert "voice 7: connecting -> connected (attempt 1)" in caplog.messages
    assert link.violations == []


async def test_connect_twice_is_refused(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    with pytest.raises(VoiceError, match="already connected"):
        await sup.connect(CHANNEL)


async def test_join_timeout_retries_with_a_session_reset(link: FakeLink, clock: FakeClock) -> None:
    link.fail_joins(None)
    sup = make(link, clock)
    connecting = sup.start(CHANNEL)
    await run_until(sup, clock, S.CONNECTED)
    await connecting
    assert supervisor_calls(link, 0) == [
        ("request_voice_state", (42,)),
        ("force_disconnect", ()),
        ("request_voice_state", (42,)),
        ("open", (2, False)),
    ]
    assert link.violations == []


# -- the session reset ------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.0, 1.0])
async def test_4006_runs_the_session_reset_in_order(
    link: FakeLink, clock: FakeClock, jitter: float
) -> None:
    sup = await connected(link, clock, jitter=jitter)
    sub = sup.events()
    mark = len(link.calls)
    closed_at = clock.now()
    await link.server_close(4006)
    await run_until(sup, clock, S.CONNECTED)

    assert supervisor_calls(link, mark) == [
        ("force_disconnect", ()),
        ("request_voice_state", (42,)),
        ("open", (2, False)),
    ]
    by_name = {c.name: c for c in link.since(mark)}
    # backoff (jitter * base for the first failure) before the reset, reset_wait inside it
    assert by_name["force_disconnect"].at - closed_at == jitter * POLICY.base_delay
    assert by_name["request_voice_state"].at - by_name["force_disconnect"].at == 1.5
    assert clock.slept == ([1.0] if jitter else []) + [1.5]
    events = sub.drain()
    assert [e.attempt for e in of(events, Reconnected)] == [2]
    assert [e.new for e in of(events, StateChanged)] == [S.RECONNECTING, S.CONNECTED]
    assert sup.stats()["reconnects"] == 1
    assert link.violations == []


async def test_4015_resumes_without_a_new_voice_state(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    sub = sup.events()
    mark = len(link.calls)
    await link.server_close(4015)
    await sup.wait_idle()
    assert supervisor_calls(link, mark) == [("open", (2, True))]
    events = sub.drain()
    assert [e.new for e in of(events, StateChanged)] == [S.RESUMING, S.CONNECTED]
    assert [e.attempt for e in of(events, Resumed)] == [2]
    assert sup.stats()["resumes"] == 1
    assert link.violations == []


async def test_resumes_escalate_to_a_new_session_after_the_limit(
    link: FakeLink, clock: FakeClock
) -> None:
    sup = await connected(link, clock)
    for _ in range(POLICY.resume_limit):
        await link.server_close(4015)
        await run_until(sup, clock, S.CONNECTED)
    assert [c.args[1] for c in link.calls if c.name == "open"] == [False, True, True]
    mark = len(link.calls)
    await link.server_close(4015)
    await run_until(sup, clock, S.CONNECTED)
    assert [name for name, _ in supervisor_calls(link, mark)] == [
        "force_disconnect",
        "request_voice_state",
        "open",
    ]
    assert link.violations == []


async def test_failed_resume_counts_and_the_count_resets_once_connected(
    link: FakeLink, clock: FakeClock
) -> None:
    sup = await connected(link, clock, jitter=1.0)
    link.fail_opens(1006)
    await link.server_close(4015)
    await run_until(sup, clock, S.CONNECTED)
    opens = [c for c in link.calls if c.name == "open"]
    assert [(c.args, c.failed) for c in opens] == [
        ((1, False), False),
        ((2, True), True),
        ((3, True), False),
    ]
    # first retry waits up to base, the second up to base * 2 (jitter 1.0: exactly)
    assert opens[2].at - opens[1].at == 2.0
    assert sup.stats()["consecutive_failures"] == 0
    assert link.violations == []


# -- moves and failover -----------------------------------------------------------------


async def test_4014_without_a_move_stops_after_the_grace(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    sub = sup.events()
    mark = len(link.calls)
    await link.server_close(4014)
    await sup.wait_idle()
    assert sup.state is S.WAITING_FOR_MOVE
    assert clock.next_deadline() == clock.now() + POLICY.move_grace
    clock.advance(POLICY.move_grace - 0.5)
    await sup.wait_idle()
    assert sup.state is S.WAITING_FOR_MOVE
    clock.advance(0.5)
    await sup.wait_for(S.STOPPED)
    stopped = of(sub.drain(), Stopped)
    assert len(stopped) == 1 and "not moved" in stopped[0].reason
    assert stopped[0].code == 4014
    assert supervisor_calls(link, mark) == [("close", ())]
    assert sup.stop_reason is not None and "4014" in sup.stop_reason


async def test_4014_with_a_move_within_grace_reidentifies(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    sub = sup.events()
    mark = len(link.calls)
    await link.server_close(4014)
    await sup.wait_idle()
    clock.advance(POLICY.move_grace - 1)
    await sup.wait_idle()
    await link.server_update("moved-2.discord.media:2053")
    await sup.wait_for(S.CONNECTED)
    assert supervisor_calls(link, mark) == [("close", ()), ("open", (2, False))]
    assert [e.attempt for e in of(sub.drain(), Reconnected)] == [2]
    assert clock.sleepers == 0
    assert link.violations == []


async def test_server_update_while_connected_is_a_failover(
    link: FakeLink, clock: FakeClock
) -> None:
    sup = await connected(link, clock)
    mark = len(link.calls)
    await link.server_update("c-ams20.discord.media:2087")
    await sup.wait_idle()
    assert sup.state is S.CONNECTED
    assert supervisor_calls(link, mark) == [("close", ()), ("open", (2, False))]
    assert link.violations == []


async def test_server_going_away_then_coming_back(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    mark = len(link.calls)
    await link.server_update(None)
    await sup.wait_idle()
    assert sup.state is S.RECONNECTING
    clock.advance(1.0)
    await link.server_update("new.discord.media:443")
    await sup.wait_for(S.CONNECTED)
    assert supervisor_calls(link, mark) == [("close", ()), ("close", ()), ("open", (2, False))]
    assert link.violations == []


async def test_server_going_away_for_good_rejoins(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    mark = len(link.calls)
    await link.server_update(None)
    await run_until(sup, clock, S.CONNECTED)
    assert [name for name, _ in supervisor_calls(link, mark)] == [
        "close",
        "force_disconnect",
        "request_voice_state",
        "open",
    ]
    assert link.violations == []


async def test_server_update_during_resume_backoff_reidentifies_instead(
    link: FakeLink, clock: FakeClock
) -> None:
    sup = await connected(link, clock, jitter=1.0)
    mark = len(link.calls)
    await link.server_close(4015)
    await sup.wait_idle()
    assert sup.state is S.RESUMING and clock.sleepers == 1
    await link.server_update("failover.discord.media:2087")
    await sup.wait_for(S.CONNECTED)
    assert supervisor_calls(link, mark) == [("close", ()), ("open", (2, False))]
    assert link.violations == []


# -- stopping ---------------------------------------------------------------------------


async def test_4017_on_connect_stops_with_the_fix(link: FakeLink, clock: FakeClock) -> None:
    link.fail_opens(4017)
    sup = make(link, clock)
    sub = sup.events()
    with pytest.raises(VoiceStopped) as info:
        await sup.connect(CHANNEL)
    assert info.value.code == 4017
    assert "DAVE" in info.value.reason and "transport=engine" in info.value.reason
    assert sup.state is S.STOPPED
    assert [e.reason for e in of(sub.drain(), Stopped)] == [info.value.reason]
    assert [name for name, _ in supervisor_calls(link, 0)] == [
        "request_voice_state",
        "open",
        "close",
    ]


@pytest.mark.parametrize("code", [4021, 4022, 4004, 4016])
async def test_final_codes_stop_at_once(link: FakeLink, clock: FakeClock, code: int) -> None:
    sup = await connected(link, clock)
    mark = len(link.calls)
    await link.server_close(code)
    await sup.wait_for(S.STOPPED)
    await sup.wait_idle()
    assert supervisor_calls(link, mark) == [("close", ())]
    assert clock.sleepers == 0


async def test_repeated_4006_exhausts_the_budget(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock, jitter=0.5)
    sub = sup.events()
    link.fail_opens(*[4006] * 10)
    mark = len(link.calls)
    await link.server_close(4006)
    await run_until(sup, clock, S.STOPPED)
    failed = [c for c in link.since(mark) if c.name == "open"]
    assert len(failed) == POLICY.max_attempts and all(c.failed for c in failed)
    assert link.pending_failures == 10 - POLICY.max_attempts
    reason = of(sub.drain(), Stopped)[0].reason
    assert f"{POLICY.max_attempts} failed attempts" in reason and "4006" in reason
    assert link.violations == []


async def test_a_server_that_drops_every_connection_at_once_exhausts_the_budget(
    link: FakeLink, clock: FakeClock
) -> None:
    """Each reconnect succeeds and is dropped at once: without stable_after the count would
    reset at every connect and the supervisor would retry forever."""
    policy = ReconnectPolicy(base_delay=1.0, max_delay=8.0, max_attempts=3, stable_after=10.0)
    sup = Supervisor(link, policy, guild_id=7, clock=clock, rng=lambda: 0.5)
    await sup.connect(CHANNEL)
    sub = sup.events()
    for _ in range(policy.max_attempts + 2):
        if sup.state is S.STOPPED:
            break
        await link.server_close(4006)
        await run_until(sup, clock, {S.CONNECTED, S.STOPPED})
    assert sup.state is S.STOPPED
    assert "3 failed attempts" in of(sub.drain(), Stopped)[0].reason
    assert link.violations == []


async def test_repeated_4006_on_first_connect_fails_connect(
    link: FakeLink, clock: FakeClock
) -> None:
    link.fail_opens(*[4006] * 10)
    sup = make(link, clock, jitter=1.0)
    connecting = sup.start(CHANNEL)
    await run_until(sup, clock, S.STOPPED)
    with pytest.raises(VoiceStopped, match="4 failed attempts"):
        await connecting
    delays = [
        b.at - a.at
        for a, b in zip(link.calls, link.calls[1:], strict=False)
        if b.name == "force_disconnect"
    ]
    # full backoff (jitter 1.0): the failed first attempt already counts, so 2, 4, 8 s
    assert delays == [2.0, 4.0, 8.0]
    assert link.violations == []


async def test_normal_close_is_done_without_reconnect(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    mark = len(link.calls)
    await link.server_close(1000)
    await sup.wait_for(S.DISCONNECTED)
    await sup.wait_idle()
    assert supervisor_calls(link, mark) == [("close", ())]


async def test_an_unexpected_link_error_stops_with_a_reason(clock: FakeClock) -> None:
    class Broken(FakeLink):
        async def open(self, attempt: int, *, resume: bool) -> None:
            raise RuntimeError("boom")

    sup = make(Broken(clock=clock), clock)
    with pytest.raises(VoiceStopped, match=r"unexpectedly.*boom"):
        await sup.connect(CHANNEL)
    assert sup.state is S.STOPPED


# -- stale events -----------------------------------------------------------------------


async def test_events_of_an_abandoned_attempt_are_ignored(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    await link.server_close(4015)
    await sup.wait_idle()
    assert sup.attempt == 2
    sub = sup.events()
    mark = len(link.calls)
    await link.emit(Closed(1, 4006))
    await link.emit(ServerUpdate(1, "old.discord.media:80"))
    await link.emit(SpeakerChanged(1, user_id=5, ssrc=9))
    await sup.wait_idle()
    assert sup.state is S.CONNECTED
    assert supervisor_calls(link, mark) == []
    assert sub.drain() == []
    assert sup.stats()["stale_events"] == 3


async def test_a_close_that_became_stale_while_queued_is_ignored(
    link: FakeLink, clock: FakeClock
) -> None:
    sup = await connected(link, clock)
    mark = len(link.calls)
    # Both arrive together for attempt 1; the failover handles the first and makes the
    # close belong to an abandoned attempt.
    link.emit_nowait(ServerUpdate(1, "b.discord.media:2087"))
    link.emit_nowait(Closed(1, 4006))
    await link.drained()
    await sup.wait_idle()
    assert sup.state is S.CONNECTED
    assert supervisor_calls(link, mark) == [("close", ()), ("open", (2, False))]
    assert sup.stats()["stale_events"] == 1


async def test_speaker_events_of_the_current_attempt_reach_subscribers(
    link: FakeLink, clock: FakeClock
) -> None:
    sup = await connected(link, clock)
    sub = sup.events()
    await link.emit(SpeakerChanged(1, user_id=5, ssrc=9))
    assert await sub.get() == SpeakerChanged(1, user_id=5, ssrc=9)


# -- disconnecting ----------------------------------------------------------------------


async def test_disconnect_leaves_and_later_closes_change_nothing(
    link: FakeLink, clock: FakeClock
) -> None:
    sup = await connected(link, clock)
    mark = len(link.calls)
    await sup.disconnect()
    assert sup.state is S.DISCONNECTED
    assert supervisor_calls(link, mark) == [("close", ()), ("request_voice_state", (None,))]
    mark = len(link.calls)
    link.emit_nowait(Closed(1, 4015))
    await sup.wait_idle()
    assert sup.state is S.DISCONNECTED and supervisor_calls(link, mark) == []


async def test_force_disconnect_drops_the_client(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    mark = len(link.calls)
    await sup.disconnect(force=True)
    assert supervisor_calls(link, mark) == [("force_disconnect", ())]
    assert sup.state is S.DISCONNECTED


async def test_disconnect_during_backoff_cancels_the_reconnect(
    link: FakeLink, clock: FakeClock
) -> None:
    sup = await connected(link, clock, jitter=1.0)
    await link.server_close(4006)
    await sup.wait_idle()
    assert sup.state is S.RECONNECTING and clock.sleepers == 1
    await sup.disconnect()
    assert clock.sleepers == 0
    mark = len(link.calls)
    clock.advance(100.0)
    await sup.wait_idle()
    assert supervisor_calls(link, mark) == []
    assert sup.stats()["state"] == "disconnected"


async def test_disconnect_while_connecting_fails_connect(link: FakeLink, clock: FakeClock) -> None:
    gate = link.hold_opens()
    sup = make(link, clock)
    task = asyncio.create_task(sup.connect(CHANNEL))
    await sup.wait_for(S.CONNECTING)
    await sup.disconnect()
    gate.set()
    with pytest.raises(VoiceStopped):
        await task
    assert sup.state is S.DISCONNECTED


async def test_cancelling_connect_leaves_the_channel(link: FakeLink, clock: FakeClock) -> None:
    link.hold_opens()
    sup = make(link, clock)
    task = asyncio.create_task(sup.connect(CHANNEL))
    await sup.wait_for(S.CONNECTING)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sup.state is S.DISCONNECTED
    assert supervisor_calls(link, 0) == [
        ("request_voice_state", (42,)),
        ("close", ()),
        ("request_voice_state", (None,)),
    ]


async def test_link_errors_while_leaving_are_logged_not_raised(clock: FakeClock) -> None:
    class Sticky(FakeLink):
        async def close(self) -> None:
            raise VoiceError("socket already gone")

    link = Sticky(clock=clock)
    sup = await connected(link, clock)
    await sup.disconnect()
    assert sup.state is S.DISCONNECTED


async def test_reconnect_after_stop(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    await link.server_close(4021)
    await sup.wait_for(S.STOPPED)
    await sup.connect(CHANNEL + 1)
    assert sup.state is S.CONNECTED and sup.channel_id == CHANNEL + 1
    assert link.calls[-1].name == "open" and link.calls[-1].args == (sup.attempt, False)
    assert link.violations == []


# -- sinks, subscriptions, stats --------------------------------------------------------


async def test_sink_is_reapplied_after_a_reconnect(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    sink = CaptureSink()
    sup.set_sink(sink)
    await link.server_close(4006)
    await run_until(sup, clock, S.CONNECTED)
    sink_calls = [c for c in link.calls if c.name == "set_sink"]
    assert len(sink_calls) == 2 and all(c.args == (sink,) for c in sink_calls)
    assert link.calls[-1].name == "set_sink" and link.sink is sink


async def test_each_subscription_sees_events_from_its_start(
    link: FakeLink, clock: FakeClock
) -> None:
    sup = make(link, clock)
    early = sup.events()
    await sup.connect(CHANNEL)
    late = sup.events()
    await link.server_close(4015)
    await sup.wait_idle()
    early_events = early.drain()
    late_events = late.drain()
    assert len(of(early_events, StateChanged)) == 5
    assert late_events == early_events[-len(late_events) :]
    assert [type(e) for e in late_events] == [Closed, StateChanged, StateChanged, Resumed]


async def test_stats_merge_link_and_reconnect_counts(link: FakeLink, clock: FakeClock) -> None:
    sup = await connected(link, clock)
    await link.server_close(4015)
    await sup.wait_idle()
    stats = sup.stats()
    assert stats["opens"] == 2  # from the link
    assert stats["resumes"] == 1 and stats["reconnects"] == 0
    assert stats["state"] == "connected" and stats["last_close_code"] == 4015


async def test_wait_for_times_out_with_voice_timeout(link: FakeLink, clock: FakeClock) -> None:
    sup = make(link, clock)
    with pytest.raises(VoiceTimeout, match="still idle"):
        await sup.wait_for(S.CONNECTED, timeout=0.01)


# -- the fake clock ---------------------------------------------------------------------


async def test_fake_clock_wakes_concurrent_sleepers_in_deadline_order() -> None:
    clock = FakeClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [
        asyncio.create_task(sleeper(name, s))
        for name, s in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0)]
    ]
    cancelled = asyncio.create_task(sleeper("x", 1.5))
    await clock.wait_for_sleepers(5)
    cancelled.cancel()
    await asyncio.wait({cancelled})
    assert clock.sleepers == 4 and clock.next_deadline() == 101.0
    clock.advance(2.0)
    await asyncio.wait(tasks[1:3] + tasks[3:])
    assert woke == [("a", 102.0), ("a2", 102.0), ("b", 102.0)]
    assert clock.sleepers == 1 and not tasks[0].done()
    assert clock.advance_to_next() == 1.0
    await tasks[0]
    assert woke[-1] == ("c", 103.0)
    assert clock.slept == [3.0, 1.0, 2.0, 1.0, 1.5]


async def test_fake_clock_edge_cases() -> None:
    clock = FakeClock()
    await clock.sleep(0)  # returns without anyone advancing
    assert clock.sleepers == 0 and clock.next_deadline() is None
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(RuntimeError):
        clock.advance_to_next()
    with pytest.raises(TimeoutError):
        await clock.wait_for_sleepers(1, timeout=0.01)


async def test_system_clock_is_monotonic() -> None:
    clock = SystemClock()
    before = clock.now()
    await clock.sleep(0)
    assert clock.now() >= before
