"""A main-gateway client for testing core's receive engine against the simulator.

It plays the part a Discord library plays for ``transport = "engine"``: it logs in to the
simulator's main gateway over a real WebSocket, sends Update Voice State (op 4) when the
engine asks (it is the engine's :class:`notetaker.voice.adapter.GatewayAdapter`), and
hands the engine the VOICE_STATE_UPDATE (the bot's own) and VOICE_SERVER_UPDATE
dispatches, as a backend's ``VoiceProtocol`` hook would.

Tests can make it lose voice dispatches (:attr:`MainGatewayClient.hold_voice`), which is
how a library ends up with a stale voice state.

Part of the harness: the one distribution that imports both notetaker and discordsim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import TracebackType
from typing import Any

import aiohttp

from notetaker.voice.adapter import GatewayAdapter, VoiceStateListener

#: GUILDS | GUILD_VOICE_STATES
INTENTS = (1 << 0) | (1 << 7)


class MainGatewayClient(GatewayAdapter):
    """Logs in as the bot at ``gateway_url`` with ``token``; see the module docstring."""

    def __init__(self, gateway_url: str, token: str, bot_id: int) -> None:
        self.gateway_url = gateway_url
        self.token = token
        self.bot_id = bot_id
        self.listener: VoiceStateListener | None = None
        #: While True, voice dispatches are swallowed instead of reaching the engine.
        self.hold_voice = False
        self.held: list[tuple[str, dict[str, Any]]] = []
        self._held_changed = asyncio.Event()
        self.sent_ops: list[dict[str, Any]] = []
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._seq: int | None = None
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, listener: VoiceStateListener) -> None:
        """Deliver voice dispatches to ``listener`` (the engine link)."""
        self.listener = listener

    async def __aenter__(self) -> MainGatewayClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Connect, identify and wait for READY."""
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"{self.gateway_url}?v=10&encoding=json")
        self._tasks.append(asyncio.create_task(self._read()))
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    async def stop(self) -> None:
        """Close the connection (1000: the session ends, as a library's logout does)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()

    async def send_voice_state(
        self, guild_id: int, channel_id: int | None, self_mute: bool, self_deaf: bool
    ) -> None:
        d = {
            "guild_id": str(guild_id),
            "channel_id": None if channel_id is None else str(channel_id),
            "self_mute": self_mute,
            "self_deaf": self_deaf,
        }
        await self._send(4, d)

    async def _send(self, op: int, d: Any) -> None:
        assert self._ws is not None
        self.sent_ops.append({"op": op, "d": d})
        await self._ws.send_str(json.dumps({"op": op, "d": d}))

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            payload = json.loads(msg.data)
            op, d = payload.get("op"), payload.get("d")
            if payload.get("s") is not None:
                self._seq = payload["s"]
            if op == 10:
                interval = d["heartbeat_interval"] / 1000
                self._tasks.append(asyncio.create_task(self._heartbeat(interval)))
                await self._send(
                    2,
                    {
                        "token": self.token,
                        "intents": INTENTS,
                        "properties": {"os": "linux", "browser": "test", "device": "test"},
                    },
                )
            elif op == 0:
                self._dispatch(payload.get("t"), d)

    def _dispatch(self, t: str | None, d: Any) -> None:
        if t == "READY":
            self._ready.set()
            return
        if t not in ("VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE") or not isinstance(d, dict):
            return
        if t == "VOICE_STATE_UPDATE" and str(d.get("user_id")) != str(self.bot_id):
            return
        if self.hold_voice:
            self.held.append((t, d))
            self._held_changed.set()
            return
        if self.listener is None:
            return
        if t == "VOICE_STATE_UPDATE":
            self.listener.on_voice_state_update(d)
        else:
            self.listener.on_voice_server_update(d)

    async def wait_held(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once ``count`` voice dispatches have been swallowed in all."""
        async with asyncio.timeout(timeout):
            while len(self.held) < count:
                self._held_changed.clear()
                await self._held_changed.wait()

    async def _heartbeat(self, interval: float) -> None:
        while True:
            await self._send(1, self._seq)
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def engine_rig(
    scenario: Any,
    speakers: tuple[Any, ...] = (),
    *,
    policy: Any,
    sink: Any,
    dave: Any = None,
    lifetime: float = 120.0,
) -> Any:
    """A simulator (main + voice, ``scenario``, scripted ``speakers``) with core's engine
    connected to it through :class:`MainGatewayClient`, driven by a real Supervisor with
    ``policy``, delivering to ``sink``. Yields ``(sim, voice, main, link, supervisor)``; the
    supervisor disconnects on exit. ``dave`` is the engine's DAVE handler factory (None:
    the engine offers no DAVE)."""
    from discordsim.app import Simulator
    from discordsim.tls import TestCA
    from discordsim.voice.server import VoiceServer
    from notetaker.clock import SystemClock
    from notetaker.supervisor import Supervisor
    from notetaker.voice.link import EngineLink

    ca = TestCA()
    async with (
        Simulator(lifetime=lifetime) as sim,
        VoiceServer(
            sim.world, scenario, record=sim.record, tls=ca, max_lifetime_s=lifetime
        ) as voice,
    ):
        for spec in speakers:
            voice.add_participant(spec)
        bot = sim.world.bot.id
        async with MainGatewayClient(sim.gateway_url, sim.token, bot) as main:
            link = EngineLink(
                main,
                guild_id=sim.world.guild_id,
                user_id=bot,
                ssl_context=ca.client_context(),
                voice_state_timeout=5.0,
                handshake_timeout=10.0,
                dave=dave,
            )
            main.attach(link)
            sup = Supervisor(link, policy, guild_id=sim.world.guild_id, clock=SystemClock())
            sup.set_sink(sink)
            try:
                yield sim, voice, main, link, sup
            finally:
                await sup.disconnect()


def watched_sink(default_wait: float = 15.0) -> Any:
    """A :class:`notetaker.sink.CaptureSink` that wakes waiters on every write and gap:
    ``changed`` is set each time, and ``await sink.until(done)`` waits for a condition."""
    from notetaker.sink import AudioFrame, CaptureSink, Gap

    class WatchedSink(CaptureSink):
        def __init__(self) -> None:
            super().__init__()
            self.changed = asyncio.Event()

        def write(self, frame: AudioFrame) -> None:
            super().write(frame)
            self.changed.set()

        def gap(self, gap: Gap) -> None:
            super().gap(gap)
            self.changed.set()

        async def until(self, done: Any, within: float = default_wait) -> None:
            async with asyncio.timeout(within):
                while not done():
                    self.changed.clear()
                    await self.changed.wait()

    return WatchedSink()
