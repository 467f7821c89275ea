"""Public test doubles for the voice seam: :class:`FakeLink` and :func:`run_until`.

:class:`FakeLink` is an in-memory :class:`VoiceLink` with no network. It records every
call in order (with the fake clock's time), plays the server side on the test's command
(close a connection with a code, deliver a VOICE_SERVER_UPDATE, fail the next opens or
joins) and keeps track of what a real voice server would object to -- a second live
connection, a resume with no session, an Identify without a fresh token -- as
``violations``, so tests can assert the supervisor never does those things::

    clock = FakeClock()
    link = FakeLink(clock=clock)
    session = Supervisor(link, ReconnectPolicy(), guild_id=1, clock=clock, rng=lambda: 0.0)
    await session.connect(42)
    await link.server_close(4015)
    await session.wait_for(VoiceState.CONNECTED)
    assert link.names()[-1] == "open" and link.calls[-1].args == (2, True)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from notetaker.clock import Clock, FakeClock
from notetaker.errors import VoiceClosed, VoiceTimeout
from notetaker.recovery import Interrupted
from notetaker.session import Closed, LinkInfo, ServerUpdate, VoiceEvent, VoiceLink, VoiceState
from notetaker.sink import AudioFrame, AudioSink, CaptureSink
from notetaker.supervisor import Supervisor

DEFAULT_ENDPOINT = "fake-1.discord.media:2087"


@dataclass(frozen=True, slots=True)
class Call:
    """One call the link received: its name, arguments, clock time, and what it raised."""

    name: str
    args: tuple[Any, ...] = ()
    at: float = 0.0
    raised: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.raised is not None


class _EventStream:
    """The link's event iterator. It marks an event consumed when the next one is asked
    for, which is what :meth:`FakeLink.emit` waits on."""

    def __init__(self, queue: asyncio.Queue[VoiceEvent]) -> None:
        self._queue = queue
        self._owes_done = False

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> VoiceEvent:
        if self._owes_done:
            self._owes_done = False
            self._queue.task_done()
        event = await self._queue.get()
        self._owes_done = True
        return event


class FakeLink(VoiceLink):
    """A scriptable, recording :class:`VoiceLink` (see the module docstring).

    State it models: ``live`` (attempt number of the open connection, or None),
    ``channel_id`` (our voice state), ``endpoint`` (current voice server), whether the
    last token is unused, and whether a session exists that could be resumed.
    """

    def __init__(self, *, clock: Clock | None = None, info: LinkInfo | None = None) -> None:
        self._clock: Clock = clock if clock is not None else FakeClock()
        self._info = info or LinkInfo(
            transport="engine", library="fake", library_version="0", can_receive=True, dave=True
        )
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.live: int | None = None
        self.last_attempt = 0
        self.channel_id: int | None = None
        self.endpoint: str | None = None
        self.sink: AudioSink | None = None
        self._token_fresh = False
        self._session = False
        self._open_failures: deque[BaseException] = deque()
        self._join_failures: deque[BaseException] = deque()
        self._gate: asyncio.Event | None = None
        self._queue: asyncio.Queue[VoiceEvent] = asyncio.Queue()

    # -- scripting ----------------------------------------------------------------------

    def fail_opens(self, *failures: int | BaseException) -> None:
        """Make the next ``open`` calls raise, in order; an int is a close code."""
        for failure in failures:
            self._open_failures.append(
                VoiceClosed(failure) if isinstance(failure, int) else failure
            )

    def fail_joins(self, *failures: BaseException | None) -> None:
        """Make the next ``request_voice_state(channel)`` calls raise (None: VoiceTimeout)."""
        for failure in failures:
            self._join_failures.append(
                failure if failure is not None else VoiceTimeout("no voice state update")
            )

    @property
    def pending_failures(self) -> int:
        """Scripted open and join failures not used yet."""
        return len(self._open_failures) + len(self._join_failures)

    def hold_opens(self) -> asyncio.Event:
        """From now on ``open`` waits until the returned event is set."""
        self._gate = asyncio.Event()
        return self._gate

    def names(self, *, exclude: Collection[str] = ("set_sink",)) -> list[str]:
        """The names of the calls so far, in order."""
        return [c.name for c in self.calls if c.name not in exclude]

    def since(self, index: int) -> list[Call]:
        """Calls made after the first ``index`` calls."""
        return self.calls[index:]

    # -- the server side ----------------------------------------------------------------

    async def emit(self, event: VoiceEvent, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Deliver ``event`` and return once the consumer has handled it (asked for the
        next one). Raises :class:`TimeoutError` if nobody consumes within ``timeout``
        real seconds."""
        self._queue.put_nowait(event)
        async with asyncio.timeout(timeout):
            await self._queue.join()

    def emit_nowait(self, event: VoiceEvent) -> None:
        """Queue ``event`` without waiting for a consumer."""
        self._queue.put_nowait(event)

    async def drained(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once every queued event has been handled by the consumer."""
        async with asyncio.timeout(timeout):
            await self._queue.join()

    async def server_close(
        self, code: int | None, *, attempt: int | None = None, reason: str = ""
    ) -> Closed:
        """The voice server closes the live connection with ``code`` (None: transport drop)."""
        if attempt is not None:
            tag = attempt
        else:
            tag = self.live if self.live is not None else self.last_attempt
        if attempt is None or attempt == self.live:
            self.live = None
        self.calls.append(Call("server_close", (tag, code), self._clock.now()))
        event = Closed(tag, code, reason)
        await self.emit(event)
        return event

    async def server_update(
        self, endpoint: str | None = DEFAULT_ENDPOINT, *, attempt: int | None = None
    ) -> ServerUpdate:
        """The main gateway delivers VOICE_SERVER_UPDATE: a new token and ``endpoint``."""
        tag = attempt if attempt is not None else self.last_attempt
        self.endpoint = endpoint
        self._token_fresh = endpoint is not None
        self.calls.append(Call("server_update", (tag, endpoint), self._clock.now()))
        event = ServerUpdate(tag, endpoint)
        await self.emit(event)
        return event

    # -- VoiceLink ----------------------------------------------------------------------

    @property
    def info(self) -> LinkInfo:
        return self._info

    async def request_voice_state(self, channel_id: int | None) -> None:
        if channel_id is not None and self._join_failures:
            exc = self._join_failures.popleft()
            self._record("request_voice_state", (channel_id,), exc)
            raise exc
        self._record("request_voice_state", (channel_id,))
        self.channel_id = channel_id
        if channel_id is None:
            self.endpoint, self._token_fresh, self._session = None, False, False
        else:
            self.endpoint, self._token_fresh = DEFAULT_ENDPOINT, True

    async def open(self, attempt: int, *, resume: bool) -> None:
        if self._gate is not None:
            await self._gate.wait()
        problems: list[str] = []
        if self.live is not None:
            problems.append(f"open({attempt}) while attempt {self.live} is live")
        if attempt <= self.last_attempt:
            problems.append(f"open({attempt}) after open({self.last_attempt})")
        if resume and not self._session:
            problems.append(f"resume({attempt}) with no session to resume")
        if not resume and not self._token_fresh:
            problems.append(f"identify({attempt}) without a fresh voice token")
        if not resume and (self.endpoint is None or self.channel_id is None):
            problems.append(f"identify({attempt}) without a voice server or channel")
        self.violations.extend(problems)
        self.last_attempt = max(self.last_attempt, attempt)
        if not resume:
            self._token_fresh = False
            self._session = False
        if self._open_failures:
            exc = self._open_failures.popleft()
            if isinstance(exc, VoiceClosed):
                exc = VoiceClosed(exc.code, exc.reason, attempt)
            self._record("open", (attempt, resume), exc)
            raise exc
        self._record("open", (attempt, resume))
        self.live = attempt
        self._session = True

    async def close(self) -> None:
        self._record("close")
        self.live = None

    async def force_disconnect(self) -> None:
        self._record("force_disconnect")
        self.live = None
        self.channel_id = None
        self.endpoint, self._token_fresh, self._session = None, False, False

    def events(self) -> _EventStream:
        return _EventStream(self._queue)

    def set_sink(self, sink: AudioSink | None) -> None:
        self._record("set_sink", (sink,))
        self.sink = sink

    def stats(self) -> dict[str, Any]:
        opens = [c for c in self.calls if c.name == "open"]
        return {"opens": len(opens), "failed_opens": sum(c.failed for c in opens)}

    def _record(
        self, name: str, args: tuple[Any, ...] = (), raised: BaseException | None = None
    ) -> None:
        self.calls.append(Call(name, args, self._clock.now(), raised))


async def run_until(
    session: Supervisor,
    clock: FakeClock,
    states: VoiceState | Collection[VoiceState],
    *,
    max_steps: int = 100,
) -> VoiceState:
    """Advance ``clock`` timer by timer until ``session`` (a Supervisor) is in ``states``.

    Between steps it waits for the session to be idle (``session.wait_idle()``), so no
    real time passes and nothing is polled. Raises :class:`AssertionError` if the
    session is idle with no timer pending and not in ``states``, or after ``max_steps``.
    """
    wanted = frozenset({states}) if isinstance(states, VoiceState) else frozenset(states)
    for _ in range(max_steps):
        await session.wait_idle()
        if session.state in wanted:
            return session.state
        if clock.next_deadline() is None:
            raise AssertionError(f"stuck in {session.state} with no timer pending")
        clock.advance_to_next()
    raise AssertionError(f"not in {sorted(s.value for s in wanted)} after {max_steps} timers")


class _SignallingSink(CaptureSink):
    """A capture sink that wakes waiters in its event loop on every write."""

    def __init__(self) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def write(self, frame: AudioFrame) -> None:
        super().write(frame)
        self._loop.call_soon_threadsafe(self._changed.set)

    async def until(self, done: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()


class CaptureMeeting:
    """A public stand-in for :class:`notetaker.meeting.RecordedMeeting`: keeps frames in a
    :class:`~notetaker.sink.CaptureSink` and "finishes" without transcribing, so backend
    tests can check capture without a model. The real meeting has its own tests."""

    def __init__(
        self,
        meeting_id: int,
        started_by: Any,
        opted_out: Collection[str],
        language: str | None = None,
    ) -> None:
        import time

        self.meeting_id = meeting_id
        self.started_by = started_by
        self.started_at = time.time()
        self.capture = _SignallingSink()
        self.sink: AudioSink = self.capture
        self.opted_out = list(opted_out)
        self.discarded: list[int] = []
        self.reconnects: list[tuple[float, float]] = []
        self.finished = False
        self.language = language  #: as /startnotes asked (None: auto)
        self.captions: Any = None  #: what the bot passed to :meth:`listen_captions`
        self.failures: Any = None  #: what the bot passed to :meth:`listen_failures`
        self.resumed = False  #: made by :meth:`CaptureMeetings.resume`
        #: :meth:`finish` raises this (a broken disk, a bug) instead of returning notes
        self.fail_finish: BaseException | None = None
        #: :meth:`finish` waits for this first (a transcription that takes its time)
        self.hold_finish: asyncio.Event | None = None

    def speakers(self) -> dict[int, str]:
        return {uid: str(uid) for uid in self.capture.by_user()}

    def discard_user(self, user_id: int) -> None:
        self.discarded.append(user_id)
        with self.capture._lock:
            self.capture.frames = [f for f in self.capture.frames if f.user_id != user_id]

    def mark_reconnect(self, start: float, end: float) -> None:
        self.reconnects.append((start, end))

    def listen_captions(self, callback: Any) -> None:
        self.captions = callback

    def listen_failures(self, callback: Any) -> None:
        self.failures = callback

    def backlog(self) -> Any:
        from notetaker.live.queue import Backlog

        return Backlog(0, 0.0)

    async def wait_for_speakers(self, user_ids: Collection[int], timeout: float = 20.0) -> None:  # noqa: ASYNC109
        """Return once every one of ``user_ids`` has frames in the capture."""
        await self.capture.until(lambda: set(user_ids) <= set(self.capture.by_user()), timeout)

    async def finish(self, progress: Any) -> Any:
        from notetaker.bot import NotesResult

        self.capture.close()
        if self.hold_finish is not None:
            await self.hold_finish.wait()
        if self.fail_finish is not None:
            raise self.fail_finish
        self.finished = True
        counts = {uid: len(frames) for uid, frames in self.capture.by_user().items()}
        text = f"captured meeting {self.meeting_id}: " + ", ".join(
            f"<@{uid}> {n} frames" for uid, n in sorted(counts.items())
        )
        return NotesResult(markdown=text, summary=text, files=())


@dataclass
class CaptureMeetings:
    """A meeting factory for the bot that makes :class:`CaptureMeeting` objects."""

    made: list[CaptureMeeting] | None = None
    #: given to every meeting made (see :class:`CaptureMeeting`)
    fail_finish: BaseException | None = None
    hold_finish: asyncio.Event | None = None
    #: what :meth:`interrupted` answers (meetings a previous process left unfinished)
    left_over: list[Interrupted] = field(default_factory=list)
    #: (meeting id, why) of each :meth:`finish_interrupted` call
    finished_interrupted: list[tuple[int, str]] = field(default_factory=list)

    def interrupted(self) -> list[Interrupted]:
        return list(self.left_over)

    def search(self, guild_id: int, query: str, limit: int) -> list[Any]:
        """Nothing: capture meetings are not transcribed (the real search is
        :meth:`notetaker.meeting.MeetingRecorderFactory.search`)."""
        return []

    async def resume(self, meeting: Interrupted, *, opted_out: Collection[str]) -> CaptureMeeting:
        from notetaker.commands import Member

        if self.made is None:
            self.made = []
        resumed = CaptureMeeting(
            meeting.meeting_id, Member(meeting.started_by, str(meeting.started_by)), opted_out
        )
        resumed.resumed = True
        self.made.append(resumed)
        return resumed

    async def finish_interrupted(self, meeting: Interrupted, why: str, progress: Any) -> Any:
        from notetaker.bot import NotesResult

        self.finished_interrupted.append((meeting.meeting_id, why))
        text = f"notes of interrupted meeting {meeting.meeting_id}: {why}"
        return NotesResult(markdown=text, summary=text, files=())

    def __call__(
        self,
        *,
        guild_id: int,
        voice_channel_id: int,
        text_channel_id: int,
        started_by: Any,
        opted_out: Collection[str],
        language: str | None = None,
    ) -> CaptureMeeting:
        if self.made is None:
            self.made = []
        meeting = CaptureMeeting(len(self.made) + 1, started_by, opted_out, language)
        meeting.fail_finish, meeting.hold_finish = self.fail_finish, self.hold_finish
        self.made.append(meeting)
        return meeting
