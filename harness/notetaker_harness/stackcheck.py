"""The stack check: one fixed scenario suite, run against whatever notetaker backend and
Discord library are installed, on either transport.

Used by the version matrix (``matrix/cell.py``, one environment per library version) and
by ``notetaker doctor`` (a live check in seconds). It lives in the harness distribution,
neither in core (which must not depend on the simulator) nor in the simulator (which
knows nothing of notetaker); core's doctor imports this module lazily.

Each scenario gets a fresh :class:`~discordsim.app.Simulator` and
:class:`~discordsim.voice.server.VoiceServer` (a row of :mod:`discordsim.scenarios`), a
freshly built backend logged in to it, and one voice session opened through the backend
(``backend.open_session(guild_id)``), exactly as ``/startnotes`` opens it. What comes out
is evidence, not a pass/fail: the outcome (connected / closed with code N / error), the
voice close-code trace from the simulator's record, whether the two speakers' audio
arrived, and a one-line cause read off that evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from notetaker_harness.audio_check import SpeakerAudio, judge

log = logging.getLogger(__name__)

TRANSPORTS = ("native", "engine")
#: Reconnect policy for the suite: the production table, with short waits and a small
#: budget so that a stack that can never connect gives up in seconds, not minutes.
POLICY = {
    "base_delay": 0.05,
    "max_delay": 0.2,
    "reset_wait": 0.05,
    "move_grace": 0.5,
    "max_attempts": 3,
}
CONNECT_LIMIT = 30.0
#: Runs of a check whose simulator could not bind port 443, and the wait between them.
PORT_443_TRIES = 3
PORT_443_WAIT = 10.0
RECOVER_LIMIT = 15.0
#: The receive check's scripted speakers and the tone each plays: different enough that
#: one speaker's audio under another's name is caught.
TONES = {"bob": 330.0, "carol": 550.0}


@dataclass(frozen=True)
class Check:
    """One scenario of the suite."""

    name: str
    #: the row of discordsim.scenarios the simulator runs
    scenario: str
    #: what it asks of the stack, in a few words (the report's column header tooltip)
    question: str
    #: seconds of speech per scripted speaker (0: no speakers)
    speech_s: float = 0.0
    #: record entry kind that marks the mid-call event, after which the session must recover
    midcall: str | None = None
    #: Port 443 serves the real voice gateway, so a library that strips the endpoint's port
    #: still gets to show what this check is about. Only ``port-strip-4006`` turns it off:
    #: each check isolates one behaviour, as each scenario row does.
    forgive_port_strip: bool = True


SUITE: tuple[Check, ...] = (
    Check("connect", "modern", "joins a voice channel on Discord without DAVE enforcement"),
    Check(
        "receive",
        "modern",
        "stays connected through 10 s of two speakers; audio arrives",
        speech_s=10.0,
    ),
    Check(
        "port-strip-4006",
        "port-strip-4006",
        "keeps the endpoint's non-443 port",
        forgive_port_strip=False,
    ),
    Check(
        "stale-session-4006",
        "stale-session-4006",
        "recovers from a stale session (resume refused with 4006) with a new session",
        midcall="voice.invalidate",
    ),
    Check("dave-required-4017", "dave-required-4017", "joins when Discord requires DAVE (today)"),
    Check(
        "crash-4015",
        "crash-4015",
        "resumes after the voice server crashes (4015)",
        midcall="voice.crash",
    ),
    Check(
        "failover",
        "failover",
        "follows a new VOICE_SERVER_UPDATE to a new endpoint",
        midcall="voice.failover",
    ),
    Check(
        "padding",
        "padding",
        "records through RTP padding and padding-only packets (as real clients send them)",
        speech_s=3.0,
    ),
    Check(
        "op5-late",
        "op5-late",
        "records a speaker whose first packets come before the op 5 that names them",
        speech_s=3.0,
    ),
    Check(
        "hello-late",
        "hello-late",
        "joins when the voice gateway's Hello comes only after Identify",
    ),
    Check(
        "discovery-variant",
        "discovery-variant",
        "joins when the IP discovery reply carries SSRC 0",
    ),
    Check(
        "null-endpoint",
        "null-endpoint",
        "waits out a VOICE_SERVER_UPDATE whose endpoint is null, joins with the next",
    ),
)
SUITE_BY_NAME = {c.name: c for c in SUITE}
#: the check that stands for "today's Discord" (modern, DAVE required since 2026-03-02)
TODAY = "dave-required-4017"


@dataclass
class Result:
    """What one check found. ``outcome`` is ``connected``, ``closed`` (see ``code``) or
    ``error``; ``trace`` the voice connections the simulator saw, in order."""

    check: str
    scenario: str
    transport: str
    library: str
    version: str
    outcome: str
    code: int | None = None
    cause: str = ""
    trace: list[dict[str, Any]] = field(default_factory=list)
    #: frames received per speaker name (receive check, engine transport); None: not measured
    audio: dict[str, int] | None = None
    #: per speaker: frames sent and received, the tone sent and the one decoded
    speech: dict[str, SpeakerAudio] | None = None
    events: list[str] = field(default_factory=list)
    #: why the run proves nothing about the stack (the simulator could not set it up)
    inconclusive: str | None = None
    #: what the session's link says it can do (LinkInfo.describe()), "" if never opened
    link: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Connected at the end, and for the receive check on a receiving transport, every
        speaker's audio arrived: at least 90 % of the frames sent, decoding to the tone
        that was sent (:mod:`notetaker_harness.audio_check`)."""
        if self.outcome != "connected" or self.inconclusive:
            return False
        if self.audio is None:
            return True
        return bool(self.speech) and all(a.ok for a in (self.speech or {}).values())

    @property
    def label(self) -> str:
        """A short verdict for a grid cell: ``connected``, ``recorded``, ``closed 4017``..."""
        if self.inconclusive:
            return "inconclusive"
        if self.outcome == "closed":
            return f"closed {self.code}" if self.code is not None else "closed"
        if self.outcome == "connected" and self.audio is not None:
            if self.speech is None or not self.speech:
                return "no audio"
            verdicts = [a.verdict for a in self.speech.values()]
            bad = [v for v in verdicts if v != "recorded"]
            return bad[0] if bad else "recorded"
        return self.outcome

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["label"] = self.label
        return out


# -- evidence -> cause -----------------------------------------------------------------


_TRACE_KINDS = (
    "voice.connect",
    "voice.identify",
    "voice.select",
    "voice.resumed",
    "voice.crash",
    "voice.invalidate",
    "voice.failover",
    "voice.close",
    "voice.state",
)


def trace_of(
    record: Any, since: int, bot_id: int, teardown: int | None = None
) -> list[dict[str, Any]]:
    """The voice-side entries of the bot's connections (and the server's mid-call events),
    from record index ``since``, with times relative to the first. Entries from record
    index ``teardown`` on (the check leaving the channel) are marked ``teardown``. Secrets
    never enter the record, so none can reach the trace."""
    entries = [e for e in record.entries[since:] if e.kind in _TRACE_KINDS]
    bot_conns = {
        e["conn"] for e in entries if e.kind == "voice.identify" and e["user_id"] == bot_id
    }
    # Participants never open WebSockets, so every voice.connect is the bot's; identify
    # pins the rest. A connection closed before Identify is still the bot's.
    conns = bot_conns | {e["conn"] for e in entries if e.kind == "voice.connect"}
    t0 = entries[0].at if entries else 0.0
    out = []
    left = False  # the bot's latest voice state is "no channel"
    for e in entries:
        if e.kind == "voice.state":
            if e.get("user_id") != bot_id:
                continue
            left = e.get("channel_id") is None
        conn = e.get("conn")
        if conn is not None and conn not in conns:
            continue
        keep = {k: v for k, v in e.data.items() if k not in ("path", "token", "session_id")}
        item = {"t": round(e.at - t0, 3), "kind": e.kind.removeprefix("voice."), **keep}
        if teardown is not None and e.seq >= teardown:
            item["teardown"] = True
        elif e.kind == "voice.close" and left and e.get("code") == 4014:
            # the server's answer to the bot leaving (the link's cleanup), not a refusal
            item["after_leave"] = True
        out.append(item)
    return out


def close_codes(trace: Sequence[dict[str, Any]], by: str | None = None) -> list[int | None]:
    """Every close code in a trace before the check's own teardown, in order (only those
    sent by ``by``, "server" or "client", if given)."""
    return [
        e.get("code")
        for e in trace
        if e["kind"] == "close"
        and not (e.get("teardown") or e.get("after_leave"))
        and by in (None, e.get("by"))
    ]


def cause_of(check: Check, trace: Sequence[dict[str, Any]], outcome: str, detail: str) -> str:
    """One line saying why, read off the trace (the first refusal explains the rest)."""
    by_conn: dict[Any, dict[str, Any]] = {}
    for e in trace:
        by_conn.setdefault(e.get("conn"), {})[e["kind"]] = e
    refusals = [
        e
        for e in trace
        if e["kind"] == "close"
        and e.get("by") == "server"
        and not (e.get("teardown") or e.get("after_leave"))
    ]
    for close in refusals:
        code = close.get("code")
        conn = by_conn.get(close.get("conn"), {})
        connect = conn.get("connect", {})
        identify = conn.get("identify", {})
        select = conn.get("select", {})
        if code == 4017:
            return (
                f"offers no DAVE (max_dave_protocol_version {identify.get('dave_max', 0)}) -> 4017"
            )
        if code == 4016:
            return f"selects discontinued mode {select.get('mode', '?')} -> 4016"
        if code == 4006 and (connect.get("listener") == "port-443" or connect.get("port") == 443):
            return "strips the endpoint port -> reached :443 -> 4006"
        if code == 4006 and (connect.get("v") is None or connect.get("v", 8) < 4):
            return f"voice gateway v{connect.get('v')} (no ?v=4+) -> 4006"
    codes = [c for c in close_codes(trace, "server") if c is not None]
    identifies = sum(1 for e in trace if e["kind"] == "identify")
    resumed = any(e["kind"] == "resumed" for e in trace)
    if outcome == "connected":
        if check.midcall == "voice.crash":
            how = "resumed (op 7)" if resumed else f"identified again ({identifies} Identify)"
            return f"4015 -> {how}"
        if check.midcall == "voice.invalidate":
            if 4006 in codes:
                return f"stale resume refused with 4006 -> new session ({identifies} Identify)"
            return f"session invalidated -> reconnected ({identifies} Identify)"
        if check.midcall == "voice.failover":
            return f"new endpoint -> identified there ({identifies} Identify)"
        first = next((by_conn[c] for c in by_conn if "identify" in by_conn[c]), {})
        ident = first.get("identify", {})
        sel = first.get("select", {})
        via = (
            " (via :443: it strips the port)" if first.get("connect", {}).get("port") == 443 else ""
        )
        return (
            f"v{ident.get('version', '?')}, {sel.get('mode', '?')}, "
            f"DAVE {ident.get('dave_version', 0)}{via}"
        )
    if codes:
        return f"closed with {codes[-1]}" + (f": {detail}" if detail else "")
    if ":443" in detail and ("Cannot connect" in detail or "refused" in detail):
        return "strips the endpoint port -> :443, where nothing listens (connection refused)"
    selected = any(e["kind"] == "select" for e in trace)
    if identifies and not selected and "IndexError" in detail:
        return (
            "no encryption mode in common with Discord's rtpsize modes -> the library fails "
            "choosing one (IndexError) before Select Protocol"
        )
    if identifies and not selected:
        return f"gives up after Ready, before Select Protocol: {detail}"
    return detail or outcome


# -- running ---------------------------------------------------------------------------


_CA: Any = None


def _trusted_ca() -> Any:
    """One test CA for the process, trusted by the library's aiohttp (the native voice
    client builds its own TLS context; the engine gets ``client_context()`` directly)."""
    global _CA
    if _CA is None:
        from discordsim.tls import TestCA

        _CA = TestCA()
        _CA.trust_in_this_process()
    return _CA


@contextlib.asynccontextmanager
async def _stack(
    backend_name: str, transport: str, check: Check, speakers: list[Any], data_dir: Path
) -> AsyncIterator[tuple[Any, Any, Any]]:
    """A simulator (main + voice) running ``check``'s scenario with the backend logged in."""
    from discordsim.app import Simulator
    from discordsim.scenarios import get
    from discordsim.testing import helper_module
    from discordsim.voice.server import VoiceServer
    from discordsim.world import VoiceStateRec, World
    from notetaker import plugins
    from notetaker.config import Settings
    from notetaker.fakes import CaptureMeetings

    world = World.default()
    alice = world.user("alice")
    world.voice_states[alice.id] = VoiceStateRec(alice.id, world.voice_channel.id, "alice-sess")
    for spec in speakers:
        world.add_user(spec.name)
    spec = plugins.load().backend(backend_name)
    helper = helper_module(spec.libraries[0])
    settings = Settings(
        backend=backend_name,
        transport=transport,
        data_dir=data_dir,
        policy=dict(POLICY),
        # The simulator's one guild arrives right after READY; the library's default 2 s
        # wait for more would be paid once per check.
        guild_ready_timeout_s=0.05,
    )
    scenario = get(check.scenario)
    if check.forgive_port_strip:
        scenario = scenario.with_(listen_443=True, strip_port_close=None)
    ca = _trusted_ca()
    async with (
        Simulator(world, lifetime=300) as sim,
        VoiceServer(sim.world, scenario, record=sim.record, tls=ca, max_lifetime_s=300) as voice,
    ):
        for participant in speakers:
            voice.add_participant(participant)
        backend = spec.factory(settings, meetings=CaptureMeetings(), voice_ssl=ca.client_context())
        async with helper.logged_in(sim, backend.client):
            try:
                yield sim, voice, backend
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(backend.close(), 10)


async def _settle(session: Any, sub: Any, limit: float, seen: list[Any]) -> None:
    """Wait until the session has recovered (Resumed/Reconnected) or given up."""
    from notetaker.session import Reconnected, Resumed, Stopped, VoiceState

    async with asyncio.timeout(limit):
        while True:
            event = await sub.get(limit)
            seen.append(event)
            if isinstance(event, Resumed | Reconnected | Stopped):
                return
            if session.state in (VoiceState.STOPPED, VoiceState.DISCONNECTED):
                return


async def run_check(
    check: Check, backend_name: str, transport: str, library: str, version: str
) -> Result:
    """Run one check on a fresh simulator; never raises for what the stack does."""
    started = time.monotonic()
    failures = _FailureLog()
    logger = logging.getLogger("notetaker")
    level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)  # the evidence is logged at WARNING
    logger.addHandler(failures)
    try:
        for attempt in range(PORT_443_TRIES):
            failures.lines.clear()
            result = await _run_check(check, backend_name, transport, library, version, failures)
            if not result.inconclusive or attempt == PORT_443_TRIES - 1:
                break
            # Another process on this machine holds port 443 (a second simulator); a
            # verdict without the 443 listener would be wrong, so wait and run again.
            await asyncio.sleep(PORT_443_WAIT)
    finally:
        logger.removeHandler(failures)
        logger.setLevel(level)
    result.seconds = round(time.monotonic() - started, 2)
    return result


class _FailureLog(logging.Handler):
    """Keeps the supervisor's "attempt N failed: ..." lines: when a library fails before
    any close code exists (a refused TCP connect, an exception), they are the evidence."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if " failed (" in msg and "): " in msg:
            self.lines.append(msg.split("): ", 1)[1])


async def _run_check(
    check: Check,
    backend_name: str,
    transport: str,
    library: str,
    version: str,
    failures: _FailureLog,
) -> Result:
    from notetaker.errors import VoiceError, VoiceStopped
    from notetaker.session import VoiceState
    from notetaker.sink import CaptureSink

    stalled = False
    result = Result(check.name, check.scenario, transport, library, version, outcome="error")
    detail = ""
    with tempfile.TemporaryDirectory(prefix="stackcheck-") as tmp:
        speakers = []
        if check.speech_s:
            from discordsim.voice.participants import ParticipantSpec
            from discordsim.voice.participants import write_tone as _tone

            speakers = [
                ParticipantSpec(
                    name, _tone(Path(tmp) / f"{name}.wav", hz, check.speech_s), 0, start
                )
                for (name, hz), start in zip(TONES.items(), (0.3, 0.6), strict=True)
            ]
        try:
            async with _stack(backend_name, transport, check, speakers, Path(tmp) / "data") as (
                sim,
                _voice,
                backend,
            ):
                since = len(sim.record)
                bot_id = sim.world.bot.id
                session = backend.open_session(sim.world.guild_id)
                result.link = session.info.describe()
                sub = session.events()
                seen: list[Any] = []
                try:
                    try:
                        await asyncio.wait_for(
                            session.connect(sim.world.voice_channel.id), CONNECT_LIMIT
                        )
                        sink = CaptureSink()
                        if check.speech_s:
                            try:
                                session.set_sink(sink)
                                result.audio = {}
                            except VoiceError as exc:
                                detail = str(exc)
                            sent = {}
                            for spec in speakers:
                                user = sim.world.user(spec.name)
                                done = await sim.record.wait_for(
                                    "voice.participant_done",
                                    timeout=check.speech_s + 10,
                                    after=since,
                                    user_id=user.id,
                                )
                                sent[spec.name] = int(done["sent"])
                            if result.audio is not None:
                                frames = sink.by_user()
                                got = {
                                    s.name: [
                                        f.opus for f in frames.get(sim.world.user(s.name).id, [])
                                    ]
                                    for s in speakers
                                }
                                result.audio = {name: len(f) for name, f in got.items()}
                                result.speech = {
                                    name: judge(sent[name], got[name], TONES[name]) for name in got
                                }
                        if check.midcall is not None:
                            await sim.record.wait_for(
                                check.midcall, timeout=RECOVER_LIMIT, after=since
                            )
                            try:
                                await _settle(session, sub, RECOVER_LIMIT, seen)
                            except TimeoutError:
                                # No word from the session: the library either handled the
                                # event by itself or sits on a dead connection; the trace
                                # tells which (below).
                                stalled = True
                        if session.state is VoiceState.CONNECTED:
                            result.outcome = "connected"
                        else:
                            stats = session.stats()
                            result.outcome = "closed"
                            result.code = stats.get("last_close_code")
                            detail = getattr(session, "stop_reason", None) or session.state.value
                    except VoiceStopped as exc:
                        result.outcome = "closed"
                        result.code = exc.code
                        detail = exc.reason
                    except (TimeoutError, VoiceError) as exc:
                        result.outcome = "error"
                        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    seen.extend(sub.drain())
                    result.events = [
                        type(e).__name__ + _event_tail(e)
                        for e in seen
                        if type(e).__name__ != "StateChanged"
                    ]
                finally:
                    teardown = len(sim.record)
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(session.disconnect(force=True), 10)
                result.trace = trace_of(sim.record, since, bot_id, teardown)
                busy = sim.record.first("voice.listen_443", bound=False)
                reached = any(e["kind"] == "connect" for e in result.trace)
                # Without our 443 listener, a port-stripping library reaches whatever else
                # listens there (another simulator on this machine): no verdict then.
                if busy is not None and not reached:
                    result.inconclusive = (
                        f"the simulator could not listen on port 443: {busy['reason']}"
                    )
                if stalled:
                    detail = _judge_stall(check, result)
        except Exception as exc:  # the stack itself failed (login, attach): that is the finding
            log.exception("stack check %s failed", check.name)
            result.outcome = "error"
            detail = f"{type(exc).__name__}: {exc}"
    server_codes = [c for c in close_codes(result.trace, "server") if c is not None]
    if result.outcome == "closed" and result.code is None:
        if server_codes:
            result.code = server_codes[-1]
        else:  # no close code anywhere: the library failed on its own
            result.outcome = "error"
    if result.outcome != "connected" and failures.lines and not server_codes and not stalled:
        detail = failures.lines[-1]
    result.cause = detail if stalled else cause_of(check, result.trace, result.outcome, detail)
    if result.inconclusive:
        result.cause = f"INCONCLUSIVE ({result.inconclusive}); {result.cause}"
    if check.speech_s and result.outcome == "connected":
        if result.audio is None:
            result.cause += "; no audio to notetaker (native voice client has no receive seam)"
        elif result.speech is not None:
            result.cause += "; " + ", ".join(
                f"{k} {a.describe()}" for k, a in result.speech.items()
            )
    return result


def _judge_stall(check: Check, result: Result) -> str:
    """After a mid-call event the session reported nothing for ``RECOVER_LIMIT`` seconds:
    connected if the library re-established voice by itself (a Resume, or a Select
    Protocol on a new connection, after the event), else an error naming the stall."""
    kind = (check.midcall or "").removeprefix("voice.")
    after = False
    back = ""
    for e in result.trace:
        if e.get("teardown"):
            break
        if e["kind"] == kind:
            after = True
        elif after and e["kind"] == "resumed":
            back = "resumed (op 7)"
        elif after and e["kind"] == "select":
            back = "a new Identify and Select Protocol"
    if back and result.outcome == "connected":
        return f"the library recovered by itself ({back}); notetaker saw no drop"
    result.outcome = "error"
    if any(e.startswith("Closed") for e in result.events):
        return (
            f"no recovery within {RECOVER_LIMIT:.0f} s after {kind}: the library reported "
            "the drop, but reconnecting through it did not complete"
        )
    return (
        f"no recovery within {RECOVER_LIMIT:.0f} s after {kind}: the library neither came "
        "back nor reported the drop"
    )


def _event_tail(event: Any) -> str:
    code = getattr(event, "code", None)
    return f"({code})" if code is not None else ""


def installed_stack(backend: str | None = None) -> tuple[str, str, str]:
    """(backend plugin name, library distribution, version): ``backend``'s, or that of the
    one backend whose library is installed."""
    from importlib import metadata

    from discordsim.testing import installed_library
    from notetaker import libraries, plugins

    found = plugins.load()
    if backend is None:
        library = installed_library()
        known = libraries.BY_DISTRIBUTION.get(library or "")
        if known is None or known.backend not in found.backends.names():
            raise RuntimeError("no notetaker backend with its Discord library is installed")
        backend = known.backend
    spec = found.backends.get(backend)
    if spec is None:
        raise RuntimeError(f"backend {backend!r} is not installed")
    library = spec.libraries[0]
    return backend, library, metadata.version(library)


async def run_suite(
    transports: Sequence[str] = TRANSPORTS,
    checks: Sequence[str] | None = None,
    *,
    backend: str | None = None,
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run the suite (or the named checks) on the installed stack (``backend``, default the
    one installed), one check at a time: the library pointers are process-wide, so two
    simulated clients must not overlap."""
    backend, library, version = installed_stack(backend)
    chosen = [SUITE_BY_NAME[n] for n in checks] if checks else list(SUITE)
    results = []
    for transport in transports:
        for check in chosen:
            r = await run_check(check, backend, transport, library, version)
            results.append(r)
            if progress is not None:
                progress(r)
    return results
