"""The receive engine as a :class:`notetaker.session.VoiceLink`: ``transport = "engine"``.

:class:`EngineLink` is what a backend hands to the supervisor when the engine carries the
voice connection. The backend supplies a :class:`GatewayAdapter` (op 4 out) and feeds the
main gateway's voice dispatches into :meth:`EngineLink.on_voice_state_update` and
:meth:`EngineLink.on_voice_server_update`. Everything else (voice WebSocket, UDP,
decryption, jitter buffers) is core's own code, identical under every library.

The link never reconnects by itself. It reports what happens (:class:`Closed`,
:class:`ServerUpdate`, :class:`SpeakerChanged`) tagged with the attempt number of its
latest :meth:`open`, and the supervisor decides.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from notetaker.errors import VoiceClosed, VoiceError, VoiceTimeout
from notetaker.logs import register_secret
from notetaker.session import LinkInfo, ServerUpdate, VoiceEvent, VoiceLink
from notetaker.sink import AudioSink
from notetaker.voice.adapter import GatewayAdapter, parse_endpoint
from notetaker.voice.dave_hook import DaveHandler
from notetaker.voice.gateway import UdpOpener, VoiceGateway, open_udp_socket
from notetaker.voice.session_state import VoiceCredentials, VoiceSessionState
from notetaker.voice.sink_switch import SinkSwitch
from notetaker.voice.transport_crypto import cpu_has_aes

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _VoiceStateRequest:
    """One op 4 waiting for its two dispatches."""

    channel_id: int | None
    state: asyncio.Event = field(default_factory=asyncio.Event)
    #: set by a VOICE_SERVER_UPDATE with an endpoint (a null one only counts below)
    server: asyncio.Event = field(default_factory=asyncio.Event)
    null_endpoints: int = 0


class EngineLink(VoiceLink):
    """One guild's engine voice connection. See the module docstring.

    ``ssl_context``: None uses the default trust store (production); tests pass one that
    trusts the simulator's CA. ``dave`` makes the DAVE handler of each new voice session
    from its credentials (user and channel ids); its ``max_protocol_version`` is what
    Identify announces. Without it: :class:`DaveHandler`, version 0, transport encryption
    only. ``library`` and ``library_version`` name the wrapped library (its distribution
    and version) for :attr:`info`. Timeouts are seconds.
    """

    def __init__(
        self,
        adapter: GatewayAdapter,
        *,
        guild_id: int,
        user_id: int,
        ssl_context: ssl.SSLContext | None = None,
        dave: Callable[[VoiceCredentials], DaveHandler] | None = None,
        library: str = "",
        library_version: str = "",
        self_mute: bool = True,
        self_deaf: bool = False,
        voice_state_timeout: float = 10.0,
        handshake_timeout: float = 15.0,
        discovery_timeout: float = 5.0,
        has_aes: bool | Callable[[], bool] = cpu_has_aes,
        open_udp: UdpOpener = open_udp_socket,
    ) -> None:
        self.guild_id = guild_id
        self.user_id = user_id
        self._adapter = adapter
        self._ssl = ssl_context
        self._dave = dave
        self._library = library
        self._library_version = library_version
        self._self_mute = self_mute
        self._self_deaf = self_deaf
        self._voice_state_timeout = voice_state_timeout
        self._handshake_timeout = handshake_timeout
        self._discovery_timeout = discovery_timeout
        self._has_aes = has_aes
        self._open_udp = open_udp
        # The latest voice state and server, as the main gateway told us.
        self._channel_id: int | None = None
        self._session_id: str | None = None
        self._token: str | None = None
        self._endpoint: str | None = None
        self._request: _VoiceStateRequest | None = None
        self._attempt = 0
        self._session: VoiceSessionState | None = None
        self._gateway: VoiceGateway | None = None
        self._sink = SinkSwitch()
        self._events: asyncio.Queue[VoiceEvent] = asyncio.Queue()
        self._sessions = 0
        self._resumes = 0
        self._last_stats: dict[str, Any] = {}

    # -- VoiceLink: facts -----------------------------------------------------------------

    @property
    def info(self) -> LinkInfo:
        dave = self._dave is not None
        return LinkInfo(
            transport="engine",
            library=self._library,
            library_version=self._library_version,
            can_receive=True,
            dave=dave,
            notes="" if dave else "no DAVE yet: transport encryption only",
        )

    # -- main gateway dispatches (called by the backend) ----------------------------------

    def on_voice_state_update(self, data: dict[str, Any]) -> None:
        """A VOICE_STATE_UPDATE from the main gateway; others' states are ignored."""
        try:
            if _snowflake(data.get("user_id")) != self.user_id:
                return
            guild = _snowflake(data.get("guild_id"))
            if guild is not None and guild != self.guild_id:
                return
            session_id = data.get("session_id")
            self._channel_id = _snowflake(data.get("channel_id"))
            if isinstance(session_id, str) and session_id:
                self._session_id = session_id
            log.info("voice guild=%s: voice state: channel %s", self.guild_id, self._channel_id)
            if self._request is not None:
                self._request.state.set()
        except Exception:  # a bad payload from a library must not break its event loop
            log.exception("voice guild=%s: bad VOICE_STATE_UPDATE ignored", self.guild_id)

    def on_voice_server_update(self, data: dict[str, Any]) -> None:
        """A VOICE_SERVER_UPDATE: new token and endpoint (a join, a failover or a move).

        Outside of :meth:`request_voice_state` it is reported as :class:`ServerUpdate`.
        ``endpoint: null`` means "the voice server went away, wait for a new one"
        (field-behaviours.md L3): during a join it is not the answer, the next one is.
        """
        try:
            token = data.get("token")
            if isinstance(token, str):
                register_secret(token)  # before anything can log it
            guild = _snowflake(data.get("guild_id"))
            if guild is not None and guild != self.guild_id:
                return
            endpoint = data.get("endpoint")
            if not isinstance(token, str) or not token:
                log.warning("voice guild=%s: VOICE_SERVER_UPDATE without a token", self.guild_id)
                return
            self._token = token
            self._endpoint = endpoint if isinstance(endpoint, str) and endpoint else None
            log.info("voice guild=%s: voice server: %s", self.guild_id, self._endpoint)
            if self._request is not None:
                if self._endpoint is None:
                    log.info(
                        "voice guild=%s: endpoint null: waiting for a voice server", self.guild_id
                    )
                    self._request.null_endpoints += 1
                    self._request.server.clear()  # the latest one decides
                else:
                    self._request.server.set()
            else:
                self._emit(ServerUpdate(self._attempt, self._endpoint))
        except Exception:
            log.exception("voice guild=%s: bad VOICE_SERVER_UPDATE ignored", self.guild_id)

    # -- VoiceLink: control ---------------------------------------------------------------

    async def request_voice_state(self, channel_id: int | None) -> None:
        request = _VoiceStateRequest(channel_id)
        self._request = request
        try:
            await self._adapter.send_voice_state(
                self.guild_id, channel_id, self._self_mute, self._self_deaf
            )
            if channel_id is None:
                return
            try:
                async with asyncio.timeout(self._voice_state_timeout):
                    await request.state.wait()
                    await request.server.wait()
            except TimeoutError:
                server = "VOICE_SERVER_UPDATE"
                if request.null_endpoints:
                    server += (
                        f" with an endpoint (only {request.null_endpoints} with endpoint null)"
                    )
                missing = [
                    name
                    for name, event in (
                        ("VOICE_STATE_UPDATE", request.state),
                        (server, request.server),
                    )
                    if not event.is_set()
                ]
                raise VoiceTimeout(
                    f"joining voice channel {channel_id}: no {' or '.join(missing)} within "
                    f"{self._voice_state_timeout:g} s (is the channel full, or is the bot "
                    "missing the Connect permission?)"
                ) from None
        finally:
            if self._request is request:
                self._request = None

    async def open(self, attempt: int, *, resume: bool) -> None:
        self._attempt = attempt
        await self._close_gateway()
        if resume:
            session = self._session
            if session is None or not session.established:
                raise VoiceError("there is no established voice session to resume")
            self._resumes += 1
        else:
            await self._end_session()
            creds = self._credentials()
            dave = DaveHandler() if self._dave is None else self._dave(creds)
            session = VoiceSessionState(creds, self._sink, dave=dave)
            self._session = session
            self._sessions += 1
        gateway = VoiceGateway(
            session,
            attempt=attempt,
            resume=resume,
            emit=self._emit,
            ssl_context=self._ssl,
            open_udp=self._open_udp,
            has_aes=self._has_aes,
            discovery_timeout=self._discovery_timeout,
        )
        self._gateway = gateway
        try:
            async with asyncio.timeout(self._handshake_timeout):
                await gateway.connect()
        except TimeoutError:
            await gateway.close()
            raise VoiceTimeout(
                f"voice handshake ({gateway.state.value}) did not finish within "
                f"{self._handshake_timeout:g} s"
            ) from None
        except VoiceClosed:
            await gateway.close()
            raise
        except BaseException:
            await gateway.close()
            raise

    async def close(self) -> None:
        await self._close_gateway()
        await self._end_session()

    async def force_disconnect(self) -> None:
        try:
            await self.close()
        except Exception:
            log.exception("voice guild=%s: error while closing before leaving", self.guild_id)
        self._session_id = self._token = self._endpoint = None
        try:
            await self._adapter.send_voice_state(
                self.guild_id, None, self._self_mute, self._self_deaf
            )
        except Exception as exc:
            log.warning("voice guild=%s: could not send the leave (op 4): %r", self.guild_id, exc)

    async def events(self) -> AsyncIterator[VoiceEvent]:
        while True:
            yield await self._events.get()

    def set_sink(self, sink: AudioSink | None) -> None:
        self._sink.set(sink)

    def stats(self) -> dict[str, Any]:
        """The current voice session's counters (the last one's once closed)."""
        out: dict[str, Any] = {
            "transport": "engine",
            "voice_sessions": self._sessions,
            "resumes": self._resumes,
        }
        if self._session is not None:
            out["session"] = self._session.stats()
        elif self._last_stats:
            out["session"] = self._last_stats
        if self._gateway is not None:
            out["gateway"] = self._gateway.stats()
        return out

    # -- internals ------------------------------------------------------------------------

    @property
    def session(self) -> VoiceSessionState | None:
        """The current voice session (None between sessions)."""
        return self._session

    @property
    def gateway(self) -> VoiceGateway | None:
        """The current voice WebSocket, if any."""
        return self._gateway

    def _emit(self, event: VoiceEvent) -> None:
        self._events.put_nowait(event)

    def _credentials(self) -> VoiceCredentials:
        if self._session_id is None or self._token is None:
            raise VoiceError("no voice state yet: request_voice_state must come first")
        if self._endpoint is None:
            raise VoiceError("the voice server went away (endpoint null); waiting for another")
        try:
            endpoint = parse_endpoint(self._endpoint)
        except ValueError as exc:
            raise VoiceError(str(exc)) from None
        return VoiceCredentials(
            guild_id=self.guild_id,
            user_id=self.user_id,
            channel_id=self._channel_id,
            session_id=self._session_id,
            token=self._token,
            endpoint=endpoint,
        )

    async def _close_gateway(self) -> None:
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            await gateway.close()

    async def _end_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            self._last_stats = session.stats()
            await session.close()


def _snowflake(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None
