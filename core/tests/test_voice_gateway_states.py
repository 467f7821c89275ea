"""The voice WebSocket's state machine: the table, the one setter, and its log lines."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import logging
import re
import socket
from collections import deque
from typing import Any

import pytest

from notetaker.errors import VoiceClosed
from notetaker.voice import gateway as gateway_module
from notetaker.voice.adapter import Endpoint
from notetaker.voice.dave_hook import DaveHandler
from notetaker.voice.gateway import TRANSITIONS, GatewayState, VoiceGateway
from notetaker.voice.session_state import VoiceCredentials, VoiceSessionState
from notetaker.voice.sink_switch import SinkSwitch

LOGGER = "notetaker.voice.gateway"
TRANSITION_LINE = re.compile(r"voice gateway guild=1 attempt=1: (\w+) -> (\w+)")
KEY = {"mode": "aead_xchacha20_poly1305_rtpsize", "secret_key": [7] * 32}

ALLOWED = [(old, new) for old, targets in TRANSITIONS.items() for new in targets]
ILLEGAL = [
    (old, new)
    for old in GatewayState
    for new in GatewayState
    if new is not old and new not in TRANSITIONS[old]
]


def _paths_from(start: GatewayState) -> dict[GatewayState, list[GatewayState]]:
    """Shortest legal path (the states after ``start``) to every state reachable from it."""
    paths: dict[GatewayState, list[GatewayState]] = {start: []}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for nxt in sorted(TRANSITIONS[state], key=lambda s: s.value):
            if nxt not in paths:
                paths[nxt] = [*paths[state], nxt]
                queue.append(nxt)
    return paths


def _gateway(
    *, resume: bool = False, dave: DaveHandler | None = None, port: int = 9, **kw: Any
) -> VoiceGateway:
    creds = VoiceCredentials(1, 2, 3, "session", "states-voice-token", Endpoint("127.0.0.1", port))
    session = VoiceSessionState(creds, SinkSwitch(), dave=dave or DaveHandler())
    return VoiceGateway(session, attempt=1, resume=resume, emit=lambda e: None, **kw)


def _walk_to(gateway: VoiceGateway, target: GatewayState) -> None:
    for step in _paths_from(gateway.state)[target]:
        gateway._set_state(step)


def _transitions(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """The state changes the gateway logged, in order."""
    out = []
    for record in caplog.records:
        match = TRANSITION_LINE.search(record.getMessage())
        if record.name == LOGGER and match:
            assert record.levelno == logging.INFO
            out.append((match[1], match[2]))
    return out


# -- the table ----------------------------------------------------------------------------


def test_the_table_has_a_row_for_every_state_and_names_only_states() -> None:
    assert set(TRANSITIONS) == set(GatewayState)
    for targets in TRANSITIONS.values():
        assert targets <= set(GatewayState)


def test_every_state_is_reachable_from_idle() -> None:
    assert set(_paths_from(GatewayState.IDLE)) == set(GatewayState)


def test_every_state_can_close_and_closed_is_final() -> None:
    for state in GatewayState:
        if state is not GatewayState.CLOSED:
            assert GatewayState.CLOSED in TRANSITIONS[state], state
    assert TRANSITIONS[GatewayState.CLOSED] == frozenset()


# -- the setter ---------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), ALLOWED, ids=lambda s: s.value)
def test_every_allowed_transition_goes_through_the_setter_and_is_logged(
    old: GatewayState, new: GatewayState, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = _gateway()
    _walk_to(gateway, old)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        caplog.clear()
        gateway._set_state(new, "because")
    assert gateway.state is new
    assert _transitions(caplog) == [(old.value, new.value)]
    assert caplog.messages[-1].endswith(f"{old.value} -> {new.value} (because)")


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=lambda s: s.value)
def test_an_illegal_transition_is_refused_and_not_logged(
    old: GatewayState, new: GatewayState, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = _gateway()
    _walk_to(gateway, old)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        caplog.clear()
        with pytest.raises(RuntimeError, match="illegal transition"):
            gateway._set_state(new)
    assert gateway.state is old
    assert _transitions(caplog) == []


def test_setting_the_same_state_is_not_a_transition(caplog: pytest.LogCaptureFixture) -> None:
    gateway = _gateway()
    _walk_to(gateway, GatewayState.CONNECTING)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        caplog.clear()
        gateway._set_state(GatewayState.CONNECTING)
    assert gateway.state is GatewayState.CONNECTING
    assert _transitions(caplog) == []


def test_only_the_setter_assigns_the_state() -> None:
    """A direct ``self._state = ...`` would skip both the table and the log line."""
    tree = ast.parse(inspect.getsource(gateway_module))
    assigners = {
        func.name
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute) and target.attr == "_state"
    }
    assert assigners == {"__init__", "_set_state"}


# -- the real code paths log every step ---------------------------------------------------


class FakeUdp:
    """A UDP socket whose IP discovery answers at once."""

    def __init__(self) -> None:
        self.closed = False

    async def discover(self, ssrc: int, limit: float) -> tuple[str, int]:
        return "203.0.113.7", 50000

    def start_keepalive(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


async def _fake_udp(host: str, port: int, feed: Any) -> Any:
    return FakeUdp()


async def _text(gateway: VoiceGateway, op: int, d: Any) -> None:
    await gateway.handle_text(json.dumps({"op": op, "d": d}))


async def _until(gateway: VoiceGateway, state: GatewayState) -> None:
    for _ in range(100):
        if gateway.state is state:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"still {gateway.state}, wanted {state}")


def _record_sends(gateway: VoiceGateway) -> list[int]:
    """The ops the gateway sends, in order (there is no socket: they are only recorded)."""
    sent: list[int] = []

    async def send_json(op: int, d: Any) -> None:
        sent.append(op)

    gateway.send_json = send_json  # type: ignore[method-assign]
    return sent


HELLO = {"heartbeat_interval": 13750}
IDENTIFY_PATH = [
    ("idle", "connecting"),
    ("connecting", "identifying"),
    ("identifying", "discovering"),
    ("discovering", "selecting"),
    ("selecting", "ready"),
    ("ready", "closed"),
]


@pytest.mark.parametrize("hello_at", ["open", "after ready", "after session description"])
async def test_identify_handshake_logs_every_transition_whenever_hello_comes(
    hello_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Identify goes out at open; Hello (before Ready as documented, or late, as some
    servers send it: field-behaviours.md L2) only starts heartbeats, in any state."""
    gateway = _gateway(open_udp=_fake_udp)
    sent = _record_sends(gateway)
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        gateway._set_state(GatewayState.CONNECTING)  # what connect() does before the socket
        await gateway._on_open()  # what connect() does once the socket is open
        assert gateway.state is GatewayState.IDENTIFYING and sent == [0]
        if hello_at == "open":
            await _text(gateway, 8, HELLO)
        ready = {"ssrc": 5, "ip": "127.0.0.1", "port": 9, "modes": [KEY["mode"]]}
        await _text(gateway, 2, ready)
        if hello_at == "after ready":
            await _text(gateway, 8, HELLO)
        await _until(gateway, GatewayState.SELECTING)
        await _text(gateway, 4, KEY)
        if hello_at == "after session description":
            await _text(gateway, 8, HELLO)
        assert gateway.state is GatewayState.READY
        assert sent[:1] == [0] and 1 in sent  # Identify first, Select Protocol later
        assert gateway._heartbeat_interval == gateway_module.MAX_HEARTBEAT_INTERVAL
        assert gateway._heartbeat is not None  # Hello started the heartbeat
        assert gateway.counters.handler_errors == 0
        assert gateway.counters.unexpected == 0
    finally:
        await gateway.close()
        await gateway.session.close()
    assert _transitions(caplog) == IDENTIFY_PATH


async def test_a_second_hello_is_counted_and_changes_nothing() -> None:
    gateway = _gateway()
    _record_sends(gateway)
    try:
        gateway._set_state(GatewayState.CONNECTING)
        await gateway._on_open()
        await _text(gateway, 8, HELLO)
        await _text(gateway, 8, {"heartbeat_interval": 1000})
        assert gateway.state is GatewayState.IDENTIFYING
        assert gateway.counters.unexpected == 1
        assert gateway._heartbeat_interval == gateway_module.MAX_HEARTBEAT_INTERVAL
    finally:
        await gateway.close()
        await gateway.session.close()


@pytest.mark.parametrize("hello_first", [True, False], ids=["hello first", "hello late"])
async def test_resume_handshake_logs_every_transition(
    hello_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = _gateway(resume=True)
    sent = _record_sends(gateway)
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        gateway._set_state(GatewayState.CONNECTING)
        await gateway._on_open()
        assert gateway.state is GatewayState.RESUMING and sent == [7]
        if hello_first:
            await _text(gateway, 8, HELLO)
        await _text(gateway, 9, None)
        if not hello_first:
            await _text(gateway, 8, HELLO)
        assert gateway.state is GatewayState.READY
        assert gateway.counters.unexpected == 0 and gateway._heartbeat is not None
    finally:
        await gateway.close()
        await gateway.session.close()
    assert _transitions(caplog) == [
        ("idle", "connecting"),
        ("connecting", "resuming"),
        ("resuming", "ready"),
        ("ready", "closed"),
    ]


async def test_a_refused_connect_logs_connecting_then_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = _gateway(port=port)
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(VoiceClosed):
        await gateway.connect()
    await gateway.session.close()
    assert gateway.state is GatewayState.CLOSED
    assert _transitions(caplog) == [("idle", "connecting"), ("connecting", "closed")]


class SlowDave(DaveHandler):
    """Holds op 4 inside the DAVE hook until released, so the socket can close meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def on_session_description(self, protocol_version: int) -> None:
        self.entered.set()
        await self.release.wait()


async def test_a_close_during_session_description_stays_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dave = SlowDave()
    gateway = _gateway(dave=dave)
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        _walk_to(gateway, GatewayState.SELECTING)
        op4 = asyncio.create_task(_text(gateway, 4, KEY))
        await dave.entered.wait()
        await gateway.close()
        dave.release.set()
        await op4
        assert gateway.state is GatewayState.CLOSED
        assert gateway.counters.handler_errors == 0  # no illegal CLOSED -> READY attempted
    finally:
        await gateway.session.close()
    assert _transitions(caplog)[-1] == ("selecting", "closed")
