"""The reconnect supervisor: the :class:`VoiceSession` the bot sees, for any transport.

:class:`Supervisor` drives a :class:`VoiceLink` through an explicit state machine
(:class:`VoiceState`) and asks :class:`ReconnectPolicy` what to do after every close.
One task (the driver) makes every decision and every link call, one at a time; a second
task (the pump) only moves the link's events into the driver's inbox and out to
subscribers. Every connection attempt has a number; events tagged with an older number
belong to a connection the driver already abandoned and are ignored.

Recovery paths (voice-protocol.md section 3):

* resume: RESUMING, wait the backoff, ``open(resume=True)``; UDP and session are kept.
* new session (the session reset): RECONNECTING, wait the backoff,
  ``force_disconnect()``, wait ``reset_wait``, ``request_voice_state(channel)``,
  ``open(resume=False)``.
* reidentify (failover or move: a fresh VOICE_SERVER_UPDATE is already here):
  RECONNECTING, ``close()``, ``open(resume=False)`` with no op 4.
* wait for move (4014): WAITING_FOR_MOVE up to ``move_grace`` for a server update, then
  reidentify with it, or stop.
* stop: STOPPED, a :class:`Stopped` event with the user-facing reason, ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import weakref
from collections import deque
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any

from notetaker.clock import Clock, SystemClock
from notetaker.errors import VoiceClosed, VoiceError, VoiceStopped, VoiceTimeout
from notetaker.policy import Action, Decision, ReconnectPolicy
from notetaker.session import (
    Closed,
    LinkInfo,
    Reconnected,
    Resumed,
    ServerUpdate,
    StateChanged,
    Stopped,
    VoiceEvent,
    VoiceLink,
    VoiceSession,
    VoiceState,
)
from notetaker.sink import AudioSink

_S = VoiceState

#: Every legal state change. The one setter refuses anything else (a bug, not an outage).
TRANSITIONS: Mapping[VoiceState, frozenset[VoiceState]] = MappingProxyType(
    {
        _S.IDLE: frozenset({_S.JOINING}),
        _S.JOINING: frozenset(
            {_S.CONNECTING, _S.RECONNECTING, _S.WAITING_FOR_MOVE, _S.STOPPED, _S.DISCONNECTED}
        ),
        _S.CONNECTING: frozenset(
            {_S.CONNECTED, _S.RECONNECTING, _S.WAITING_FOR_MOVE, _S.STOPPED, _S.DISCONNECTED}
        ),
        _S.CONNECTED: frozenset(
            {_S.RESUMING, _S.RECONNECTING, _S.WAITING_FOR_MOVE, _S.STOPPED, _S.DISCONNECTED}
        ),
        _S.RESUMING: frozenset(
            {_S.CONNECTED, _S.RECONNECTING, _S.WAITING_FOR_MOVE, _S.STOPPED, _S.DISCONNECTED}
        ),
        _S.RECONNECTING: frozenset(
            {_S.CONNECTED, _S.WAITING_FOR_MOVE, _S.STOPPED, _S.DISCONNECTED}
        ),
        _S.WAITING_FOR_MOVE: frozenset({_S.RECONNECTING, _S.STOPPED, _S.DISCONNECTED}),
        _S.DISCONNECTED: frozenset({_S.JOINING}),
        _S.STOPPED: frozenset({_S.JOINING, _S.DISCONNECTED}),
    }
)

#: States in which the driver runs (a connection exists or is being made).
ACTIVE_STATES = frozenset(
    {_S.JOINING, _S.CONNECTING, _S.CONNECTED, _S.RESUMING, _S.RECONNECTING, _S.WAITING_FOR_MOVE}
)

_LINK_ERRORS = (VoiceError, OSError)


class EventSubscription:
    """One subscriber's view of a session's events, from the moment it subscribed.

    An async iterator; it ends only after :meth:`close`. At most ``maxsize`` unread
    events are kept: a subscriber that stops reading loses the oldest ones (counted in
    ``dropped``) rather than growing without bound. Dropping the last reference to it
    unsubscribes it.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        self._queue: deque[VoiceEvent] = deque()
        self._maxsize = maxsize
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self.dropped = 0

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> VoiceEvent:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut
        return self._queue.popleft()

    async def get(self, timeout: float = 5.0) -> VoiceEvent:  # noqa: ASYNC109 - a guard for tests
        """The next event; :class:`VoiceTimeout` if none comes within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            raise VoiceTimeout(f"no voice event within {timeout} s") from None

    def drain(self) -> list[VoiceEvent]:
        """Every event received and not yet read, without waiting."""
        events = list(self._queue)
        self._queue.clear()
        return events

    def close(self) -> None:
        """Stop receiving; a pending or later iteration ends once the queue is read."""
        self._closed = True
        self._wake()

    def put(self, event: VoiceEvent) -> None:
        """Deliver ``event`` (called by the session)."""
        if self._closed:
            return
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class Supervisor(VoiceSession):
    """A :class:`VoiceSession` that runs :class:`ReconnectPolicy` over a :class:`VoiceLink`.

    ``clock`` (default :class:`SystemClock`) times every wait, ``rng`` (default
    :func:`random.random`) draws the backoff jitter; tests pass a
    :class:`notetaker.clock.FakeClock` and a fixed ``rng``.

    The link contract it relies on: ``open(n)`` tags the events of that connection with
    ``n``; a VOICE_SERVER_UPDATE from the main gateway is reported as a
    :class:`ServerUpdate` tagged with the number of the link's latest ``open``;
    ``events()`` may be called again after a stop or disconnect (one iterator at a time).
    """

    def __init__(
        self,
        link: VoiceLink,
        policy: ReconnectPolicy | None = None,
        *,
        guild_id: int,
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.guild_id = guild_id
        self.channel_id: int | None = None
        self._link = link
        self._policy = policy if policy is not None else ReconnectPolicy()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.random
        self._log = logger if logger is not None else logging.getLogger(__name__)

        self._state = VoiceState.IDLE
        self._attempt = 0
        self._failures = 0  # failed attempts in a row since last stably connected
        self._connected_at = 0.0
        self._unproven_failures = 0
        self._resumes_in_row = 0  # resumes since the last new session
        self._can_resume = False  # an established session exists
        self._fresh_server = False  # a ServerUpdate with an endpoint arrived, unused
        self._last_code: int | None = None
        self._stop_reason: str | None = None
        self._counts = {"reconnects": 0, "resumes": 0, "stops": 0, "stale_events": 0}
        self._sink: AudioSink | None = None

        self._subs: weakref.WeakSet[EventSubscription] = weakref.WeakSet()
        self._inbox: deque[VoiceEvent] = deque()
        self._inbox_ready = asyncio.Event()
        self._driver: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[None] | None = None
        self._state_waiters: list[tuple[frozenset[VoiceState], asyncio.Future[None]]] = []
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._waiting = False  # the driver is blocked in _next
        self._deadline: float | None = None  # ...until this clock time (None: no timer)

    # -- VoiceSession -------------------------------------------------------------------

    @property
    def info(self) -> LinkInfo:
        return self._link.info

    @property
    def state(self) -> VoiceState:
        return self._state

    @property
    def attempt(self) -> int:
        """The number of the current connection attempt (events of older ones are stale)."""
        return self._attempt

    @property
    def policy(self) -> ReconnectPolicy:
        return self._policy

    @property
    def stop_reason(self) -> str | None:
        """Why the policy last stopped this session (user-facing), if it did."""
        return self._stop_reason

    def start(self, channel_id: int) -> asyncio.Future[None]:
        """Begin connecting to ``channel_id`` in the background.

        Returns a future that resolves once connected, or fails with
        :class:`VoiceStopped`. Must be called from a running event loop.
        """
        if self._state in ACTIVE_STATES:
            raise VoiceError(
                f"voice {self.guild_id}: already {self._state.value} "
                f"(channel {self.channel_id}); disconnect first"
            )
        loop = asyncio.get_running_loop()
        self.channel_id = channel_id
        self._failures = 0
        self._resumes_in_row = 0
        self._can_resume = False
        self._fresh_server = False
        self._stop_reason = None
        self._inbox.clear()
        fut: asyncio.Future[None] = loop.create_future()
        # The failure is also reported as a Stopped event; do not warn if nobody awaits it.
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._connected = fut
        self._attempt += 1
        self._set_state(VoiceState.JOINING)
        self._pump = loop.create_task(self._run_pump(), name=f"voice-pump-{self.guild_id}")
        driver = loop.create_task(self._drive(channel_id), name=f"voice-{self.guild_id}")
        driver.add_done_callback(lambda _: self._notify_idle())
        self._driver = driver
        return fut

    async def connect(self, channel_id: int) -> None:
        """Join ``channel_id`` and return once receiving; :class:`VoiceStopped` if the
        policy gives up. Cancelling it leaves the channel."""
        fut = self.start(channel_id)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            if not fut.done():
                await self.disconnect()
            raise

    async def disconnect(self, *, force: bool = False) -> None:
        """Leave; no reconnect happens afterwards, whatever the link reports.

        ``force`` drops any voice client the library holds (``force_disconnect``);
        otherwise close the connection and send op 4 with no channel. Link errors while
        leaving are logged, not raised: the session ends DISCONNECTED either way.
        """
        if self._state is VoiceState.IDLE:
            if force:
                await self._link.force_disconnect()
            return
        driver, self._driver = self._driver, None
        if driver is not None and not driver.done():
            driver.cancel()
            await asyncio.wait({driver})
        self._cancel_pump()
        was = self._state
        try:
            if force:
                await self._link.force_disconnect()
            else:
                await self._link.close()
                if was is not VoiceState.DISCONNECTED:
                    await self._link.request_voice_state(None)
        except _LINK_ERRORS as exc:
            self._log.warning("voice %s: error while leaving: %s", self.guild_id, exc)
        if self._state is not VoiceState.DISCONNECTED:
            self._set_state(VoiceState.DISCONNECTED)
        self._fail_connect(
            VoiceStopped("The voice connection was closed before it was established.")
        )

    def events(self) -> EventSubscription:
        sub = EventSubscription()
        self._subs.add(sub)
        return sub

    def set_sink(self, sink: AudioSink | None) -> None:
        self._sink = sink
        self._link.set_sink(sink)

    def stats(self) -> dict[str, Any]:
        out = dict(self._link.stats())
        out.update(self._counts)
        out.update(
            state=self._state.value,
            attempt=self._attempt,
            consecutive_failures=self._failures,
            last_close_code=self._last_code,
        )
        return out

    # -- waiting helpers (tests, /notesstatus) ------------------------------------------

    async def wait_for(
        self,
        state: VoiceState | Collection[VoiceState],
        timeout: float = 5.0,  # noqa: ASYNC109 - a guard for tests, in real seconds
    ) -> VoiceState:
        """Return once the session is in ``state`` (or one of several); the state reached.

        Raises :class:`VoiceTimeout` after ``timeout`` real seconds.
        """
        states = frozenset({state}) if isinstance(state, VoiceState) else frozenset(state)
        if self._state in states:
            return self._state
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (states, fut)
        self._state_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            wanted = ", ".join(sorted(s.value for s in states))
            raise VoiceTimeout(
                f"voice {self.guild_id}: still {self._state.value} after {timeout} s "
                f"(waiting for {wanted})"
            ) from None
        finally:
            if entry in self._state_waiters:
                self._state_waiters.remove(entry)
        return self._state

    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a guard for tests
        """Return once the supervisor has handled everything it received and waits for a
        new event or a timer that is not yet due (or is not running at all).

        Tests step a :class:`FakeClock` between these points. Raises
        :class:`VoiceTimeout` after ``timeout`` real seconds (e.g. a link call that
        never returns).
        """
        try:
            async with asyncio.timeout(timeout):
                while not self._is_idle():
                    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    self._idle_waiters.append(fut)
                    await fut
        except TimeoutError:
            raise VoiceTimeout(
                f"voice {self.guild_id}: still busy in {self._state.value} after {timeout} s"
            ) from None

    def _is_idle(self) -> bool:
        if self._driver is None or self._driver.done():
            return True
        return (
            self._waiting
            and not self._inbox
            and (self._deadline is None or self._clock.now() < self._deadline)
        )

    def _notify_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- the one state setter -----------------------------------------------------------

    def _set_state(self, new: VoiceState) -> None:
        old = self._state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise RuntimeError(f"voice {self.guild_id}: illegal transition {old} -> {new}")
        self._state = new
        self._log.info(
            "voice %s: %s -> %s (attempt %d)", self.guild_id, old.value, new.value, self._attempt
        )
        self._publish(StateChanged(self._attempt, old, new))
        for states, fut in list(self._state_waiters):
            if new in states and not fut.done():
                fut.set_result(None)

    def _publish(self, event: VoiceEvent) -> None:
        for sub in list(self._subs):
            sub.put(event)

    # -- the pump: link events -> inbox and subscribers ---------------------------------

    async def _run_pump(self) -> None:
        stream = self._link.events()
        try:
            async for event in stream:
                if event.attempt != self._attempt:
                    self._stale(event)
                    continue
                if isinstance(event, Closed | ServerUpdate):
                    self._inbox.append(event)
                    self._inbox_ready.set()
                self._publish(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log.exception("voice %s: the link's event stream failed", self.guild_id)
        else:
            self._log.warning("voice %s: the link's event stream ended", self.guild_id)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _cancel_pump(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            pump.cancel()

    def _stale(self, event: VoiceEvent) -> None:
        self._counts["stale_events"] += 1
        self._log.debug(
            "voice %s: ignoring %s of attempt %d (current %d)",
            self.guild_id,
            type(event).__name__,
            event.attempt,
            self._attempt,
        )

    # -- the driver ---------------------------------------------------------------------

    async def _drive(self, channel_id: int) -> None:
        try:
            try:
                await self._link.request_voice_state(channel_id)
                self._set_state(VoiceState.CONNECTING)
                await self._link.open(self._attempt, resume=False)
            except _LINK_ERRORS as exc:
                await self._recover(self._failed(exc))
            else:
                self._on_connected(None)
            while self._state is VoiceState.CONNECTED:
                event = await self._next(None)
                if event is not None:
                    await self._on_event(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.exception("voice %s: supervisor failed", self.guild_id)
            await self._stop(
                f"The voice connection failed unexpectedly ({type(exc).__name__}: {exc}). "
                "Recording stopped.",
                self._last_code,
            )

    async def _on_event(self, event: VoiceEvent) -> None:
        """Handle an event of the current attempt while CONNECTED."""
        if isinstance(event, Closed):
            self._last_code = event.code
            if self._clock.now() - self._connected_at < self._policy.stable_after:
                # Dropped right after connecting: the failures before it still count, and
                # so does this one, so a flapping server exhausts the budget.
                self._failures = self._unproven_failures + 1
            self._log.info(
                "voice %s: closed with %s (attempt %d)", self.guild_id, event.code, event.attempt
            )
            await self._recover(event.code)
        elif isinstance(event, ServerUpdate) and event.endpoint is not None:
            self._log.info("voice %s: voice server changed (failover)", self.guild_id)
            await self._recover(
                None, first=Decision(Action.REIDENTIFY, 0.0, "The voice server changed.")
            )
        elif isinstance(event, ServerUpdate):
            self._log.info("voice %s: voice server went away; waiting for another", self.guild_id)
            self._set_state(VoiceState.RECONNECTING)
            self._can_resume = False
            await self._close_quietly()
            if await self._pause(self._policy.move_grace):
                first = Decision(Action.REIDENTIFY, 0.0, "A new voice server was assigned.")
                await self._recover(None, first=first)
            else:
                await self._recover(None)

    def _failed(self, exc: BaseException) -> int | None:
        """Count a failed attempt; the close code it ended with (None: no close code)."""
        self._failures += 1
        code = exc.code if isinstance(exc, VoiceClosed) else None
        self._last_code = code
        self._log.warning(
            "voice %s: attempt %d failed (%d in a row): %s",
            self.guild_id,
            self._attempt,
            self._failures,
            exc,
        )
        return code

    async def _recover(self, code: int | None, *, first: Decision | None = None) -> None:
        """Run the policy until connected again, stopped, or done."""
        decision = first
        while True:
            if decision is None:
                self._absorb_inbox()
                decision = self._policy.decide(
                    code,
                    attempt=self._attempt,
                    consecutive_failures=self._failures,
                    rng=self._rng,
                    consecutive_resumes=self._resumes_in_row,
                    can_resume=self._can_resume,
                    server_update=self._fresh_server,
                )
            self._log.info(
                "voice %s: close code %s -> %s in %.2f s (attempt %d): %s",
                self.guild_id,
                code,
                decision.action.value,
                decision.delay,
                self._attempt,
                decision.reason,
            )
            action = decision.action
            if action is Action.STOP:
                await self._stop(decision.reason, code)
                return
            if action is Action.DONE:
                await self._finish(decision.reason)
                return
            try:
                if action is Action.WAIT_FOR_MOVE:
                    self._set_state(VoiceState.WAITING_FOR_MOVE)
                    if not await self._pause(decision.delay):
                        await self._stop(decision.reason, code)
                        return
                    kind = await self._reidentify(0.0)
                elif action is Action.RESUME:
                    kind = await self._resume(decision.delay)
                elif action is Action.NEW_SESSION:
                    kind = await self._new_session(decision.delay)
                else:
                    kind = await self._reidentify(decision.delay)
            except _LINK_ERRORS as exc:
                code = self._failed(exc)
                decision = None
                continue
            self._on_connected(kind)
            return

    async def _resume(self, delay: float) -> type[Resumed | Reconnected]:
        self._set_state(VoiceState.RESUMING)
        if await self._pause(delay):
            # A new server means a new token: the resume would fail.
            return await self._reidentify(0.0)
        self._attempt += 1
        self._resumes_in_row += 1
        await self._link.open(self._attempt, resume=True)
        return Resumed

    async def _new_session(self, delay: float) -> type[Resumed | Reconnected]:
        self._set_state(VoiceState.RECONNECTING)
        if await self._pause(delay):
            return await self._reidentify(0.0)
        channel_id = self.channel_id
        if channel_id is None:  # pragma: no cover - start() always sets it
            raise VoiceError("no channel to rejoin")
        # New number first: the server updates our own op 4 provokes are then stale.
        self._begin_attempt()
        await self._link.force_disconnect()
        await self._pause(self._policy.reset_wait)
        await self._link.request_voice_state(channel_id)
        await self._link.open(self._attempt, resume=False)
        return Reconnected

    async def _reidentify(self, delay: float) -> type[Resumed | Reconnected]:
        self._set_state(VoiceState.RECONNECTING)
        if delay > 0:
            await self._pause(delay)
        self._begin_attempt()
        await self._link.close()
        await self._link.open(self._attempt, resume=False)
        return Reconnected

    def _begin_attempt(self) -> None:
        """A new voice session: new attempt number, nothing left to resume."""
        self._attempt += 1
        self._can_resume = False
        self._fresh_server = False
        self._resumes_in_row = 0

    def _on_connected(self, kind: type[Resumed | Reconnected] | None) -> None:
        # The count shows 0 while connected; if the connection drops before
        # ReconnectPolicy.stable_after, the earlier failures come back (see _on_event).
        self._unproven_failures = self._failures
        self._failures = 0
        self._connected_at = self._clock.now()
        self._can_resume = True
        self._set_state(VoiceState.CONNECTED)
        if self._sink is not None:
            self._link.set_sink(self._sink)
        if kind is Resumed:
            self._counts["resumes"] += 1
            self._publish(Resumed(self._attempt))
        elif kind is Reconnected:
            self._counts["reconnects"] += 1
            self._publish(Reconnected(self._attempt))
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)

    async def _close_quietly(self) -> None:
        try:
            await self._link.close()
        except _LINK_ERRORS as exc:
            self._log.warning("voice %s: error while closing: %s", self.guild_id, exc)

    async def _stop(self, reason: str, code: int | None) -> None:
        await self._close_quietly()
        # From here on nothing awaits, so nobody can interleave with the bookkeeping.
        self._stop_reason = reason
        self._counts["stops"] += 1
        self._log.warning("voice %s: stopped: %s", self.guild_id, reason)
        self._set_state(VoiceState.STOPPED)
        self._publish(Stopped(self._attempt, reason, code))
        self._cancel_pump()
        self._fail_connect(VoiceStopped(reason, code))

    async def _finish(self, reason: str) -> None:
        await self._close_quietly()
        self._set_state(VoiceState.DISCONNECTED)
        self._cancel_pump()
        self._fail_connect(VoiceStopped(reason, 1000))

    def _fail_connect(self, exc: VoiceStopped) -> None:
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(exc)

    # -- waiting for events and time ----------------------------------------------------

    def _absorb_inbox(self) -> None:
        """Take note of events that queued up while not connected."""
        while self._inbox:
            event = self._inbox.popleft()
            if event.attempt != self._attempt:
                self._stale(event)
            else:
                self._note(event)

    def _note(self, event: VoiceEvent) -> bool:
        """Record what ``event`` means while not connected; whether a fresh server is here."""
        if isinstance(event, ServerUpdate):
            self._fresh_server = event.endpoint is not None
        else:
            self._log.debug(
                "voice %s: %s while %s: nothing to do",
                self.guild_id,
                type(event).__name__,
                self._state.value,
            )
        return self._fresh_server

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` of clock time, watching the inbox. True as soon as a fresh
        server update of the current attempt is (or already was) here."""
        if self._fresh_server:
            return True
        deadline = self._clock.now() + max(0.0, seconds)
        while True:
            event = await self._next(deadline)
            if event is None:
                return False
            if self._note(event):
                return True

    async def _next(self, deadline: float | None) -> VoiceEvent | None:
        """The next inbox event of the current attempt; None once the clock reaches
        ``deadline`` (None: no time limit)."""
        while True:
            while self._inbox:
                event = self._inbox.popleft()
                if event.attempt == self._attempt:
                    return event
                self._stale(event)
            if deadline is not None and self._clock.now() >= deadline:
                return None
            self._inbox_ready.clear()
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._inbox_ready.wait())]
            if deadline is not None:
                waiters.append(
                    asyncio.ensure_future(self._clock.sleep(deadline - self._clock.now()))
                )
            try:
                # One turn of the loop lets the sleeper start (and register with a fake
                # clock) before anyone is told that we are idle.
                await asyncio.sleep(0)
                self._waiting, self._deadline = True, deadline
                self._notify_idle()
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._waiting = False
                for waiter in waiters:
                    waiter.cancel()
