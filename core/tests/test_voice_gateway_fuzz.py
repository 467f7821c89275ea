"""Arbitrary input to the voice gateway's message handlers: nothing escapes, in any state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notetaker.errors import VoiceError
from notetaker.session import VoiceEvent
from notetaker.voice.adapter import Endpoint, parse_endpoint
from notetaker.voice.dave_hook import DaveHandler
from notetaker.voice.gateway import TRANSITIONS, GatewayState, VoiceGateway
from notetaker.voice.session_state import VoiceCredentials, VoiceSessionState
from notetaker.voice.sink_switch import SinkSwitch
from notetaker.voice.udp import VoiceUdp

KEYS = [
    "heartbeat_interval",
    "ssrc",
    "ip",
    "port",
    "modes",
    "mode",
    "secret_key",
    "dave_protocol_version",
    "user_id",
    "user_ids",
    "audio_ssrc",
    "speaking",
    "t",
    "seq",
    "protocol_version",
    "transition_id",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["aead_aes256_gcm_rtpsize", "aead_xchacha20_poly1305_rtpsize", "7", "-1"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=20,
)
# Payloads shaped like the real ones (known keys, plausible values) reach deeper code.
shaped = st.dictionaries(
    st.sampled_from(KEYS),
    json_values
    | st.integers(0, 2**32)
    | st.lists(st.integers(0, 255), min_size=32, max_size=32)
    | st.lists(st.sampled_from(["1", "2", "x", 3]), max_size=4),
    max_size=8,
)
messages = st.fixed_dictionaries(
    {"op": st.integers(-2, 40) | json_values, "d": shaped | json_values},
    optional={"seq": st.integers(-5, 70000) | json_values},
)
frames = (
    messages.map(lambda m: json.dumps(m, allow_nan=True))
    | json_values.map(lambda v: json.dumps(v, allow_nan=True))
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.tuples(st.integers(0, 65535), st.integers(0, 255), st.binary(max_size=30)).map(
        lambda t: t[0].to_bytes(2, "big") + bytes([t[1]]) + t[2]
    )
)


async def _no_udp(host: str, port: int, feed: Any) -> VoiceUdp:
    raise VoiceError("fuzz: no network")


def _walk_to(gateway: VoiceGateway, target: GatewayState) -> None:
    """Put ``gateway`` in ``target`` without a server, one legal transition at a time."""
    paths: dict[GatewayState, list[GatewayState]] = {gateway.state: []}
    queue = [gateway.state]
    while queue and target not in paths:
        state = queue.pop(0)
        for nxt in sorted(TRANSITIONS[state], key=lambda s: s.value):
            if nxt not in paths:
                paths[nxt] = [*paths[state], nxt]
                queue.append(nxt)
    assert target in paths, f"{target} is not reachable from {gateway.state}"
    for step in paths[target]:
        gateway._set_state(step)


async def _run(state: GatewayState, resume: bool, inputs: list[str | bytes]) -> VoiceGateway:
    creds = VoiceCredentials(1, 2, 3, "session", "fuzz-voice-token", Endpoint("127.0.0.1", 9))
    session = VoiceSessionState(creds, SinkSwitch())
    events: list[VoiceEvent] = []
    gateway = VoiceGateway(session, attempt=1, resume=resume, emit=events.append, open_udp=_no_udp)
    _walk_to(gateway, state)
    try:
        for item in inputs:
            if isinstance(item, bytes):
                await gateway.handle_binary(item)
            else:
                await gateway.handle_text(item)
            await asyncio.sleep(0)  # let spawned steps (discovery) run and fail
    finally:
        await gateway.close()
        await session.close()
    return gateway


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    state=st.sampled_from(list(GatewayState)),
    resume=st.booleans(),
    inputs=st.lists(frames, max_size=8),
)
def test_no_exception_escapes_the_gateway_handlers(
    state: GatewayState, resume: bool, inputs: list[str | bytes]
) -> None:
    gateway = asyncio.run(_run(state, resume, inputs))
    c = gateway.counters
    assert c.received == len(inputs)
    assert c.handler_errors == 0, c


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.sampled_from([8, 2, 4, 9, 5, 11, 12, 13, 6, 3]), max_size=10))
def test_handshake_ops_in_any_order_are_handled(ops: list[int]) -> None:
    """Well-formed messages in any order: unexpected ones are counted, never raised."""
    payloads = {
        8: {"heartbeat_interval": 13750, "v": 8},
        2: {"ssrc": 5, "ip": "127.0.0.1", "port": 9, "modes": ["aead_aes256_gcm_rtpsize"]},
        4: {"mode": "aead_aes256_gcm_rtpsize", "secret_key": list(range(32))},
        9: None,
        5: {"speaking": 1, "ssrc": 77, "user_id": "42"},
        11: {"user_ids": ["42", "43"]},
        12: {"user_id": "43", "audio_ssrc": 78, "video_ssrc": 0},
        13: {"user_id": "42"},
        6: {"t": 123},
        3: None,
    }
    inputs: list[str | bytes] = [json.dumps({"op": op, "d": payloads[op]}) for op in ops]
    gateway = asyncio.run(_run(GatewayState.CONNECTING, False, inputs))
    assert gateway.counters.malformed == 0
    assert gateway.counters.handler_errors == 0


class RecordingDave(DaveHandler):
    """A DAVE handler that keeps what the gateway hands it."""

    def __init__(self) -> None:
        super().__init__(max_protocol_version=1)
        self.binary: list[tuple[int, bytes]] = []
        self.json: list[tuple[int, Any]] = []
        self.versions: list[int] = []

    async def on_binary(self, op: int, payload: bytes) -> None:
        self.binary.append((op, payload))

    async def on_json(self, op: int, d: Any) -> None:
        self.json.append((op, d))

    async def on_session_description(self, protocol_version: int) -> None:
        self.versions.append(protocol_version)


async def test_dave_frames_reach_the_dave_handler_and_advance_seq() -> None:
    creds = VoiceCredentials(1, 2, 3, "session", "fuzz-voice-token", Endpoint("127.0.0.1", 9))
    dave = RecordingDave()
    session = VoiceSessionState(creds, SinkSwitch(), dave=dave)
    gateway = VoiceGateway(session, attempt=1, resume=False, emit=lambda e: None)
    _walk_to(gateway, GatewayState.SELECTING)
    try:
        await gateway.handle_binary(b"\x01\x02\x19external-sender")  # seq 258, op 25
        await gateway.handle_text(json.dumps({"op": 24, "d": {"epoch": 1}, "seq": 300}))
        await gateway.handle_binary(b"\x00\x07\x05nope")  # op 5 is not a binary op
        key = {"mode": "aead_xchacha20_poly1305_rtpsize", "secret_key": [7] * 32}
        await gateway.handle_text(json.dumps({"op": 4, "d": {**key, "dave_protocol_version": 1}}))
        assert dave.binary == [(25, b"external-sender")]
        assert dave.json == [(24, {"epoch": 1})]
        assert dave.versions == [1]
        assert session.seq == 7  # the last frame's seq, binary or JSON
        assert gateway.counters.unknown_ops == 1
        assert gateway.state is GatewayState.READY
        assert session.pipeline is not None and session.mode == key["mode"]
    finally:
        await gateway.close()
        await session.close()


@given(raw=st.text(max_size=40))
def test_parse_endpoint_returns_an_endpoint_or_raises_value_error(raw: str) -> None:
    try:
        endpoint = parse_endpoint(raw)
    except ValueError:
        return
    assert endpoint.host and 0 < endpoint.port < 65536


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z0-9-]{1,10}){0,3}", fullmatch=True),
    port=st.integers(1, 65535),
    scheme=st.sampled_from(["", "wss://"]),
)
def test_parse_endpoint_keeps_the_port(host: str, port: int, scheme: str) -> None:
    endpoint = parse_endpoint(f"{scheme}{host}:{port}")
    assert (endpoint.host, endpoint.port) == (host, port)
    assert endpoint.url == f"wss://{host}:{port}/?v=8"
    assert parse_endpoint(f"{scheme}{host}").port == 443  # no port: the default
