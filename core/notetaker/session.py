"""The voice seam: :class:`VoiceSession` (what the bot uses) and :class:`VoiceLink`
(what the reconnect supervisor drives).

A backend provides a :class:`VoiceLink` per guild for each transport it supports:

* ``engine`` -- core's receive engine (:mod:`notetaker.voice`), attached through the
  library's ``VoiceProtocol``; the library only carries the main-gateway voice state.
* ``native`` -- the library's own voice client, wrapped.

Core wraps any link in :class:`notetaker.supervisor.Supervisor`, which is the
:class:`VoiceSession` the bot sees. The supervisor owns every reconnect decision, via
:class:`notetaker.policy.ReconnectPolicy`; links never reconnect on their own.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from notetaker.sink import AudioSink


class VoiceState(enum.Enum):
    """Where a voice session is. Every change is logged by the one state setter."""

    IDLE = "idle"  #: never connected
    JOINING = "joining"  #: asked the main gateway for a voice state (op 4)
    CONNECTING = "connecting"  #: voice gateway handshake in progress
    CONNECTED = "connected"  #: receiving
    RESUMING = "resuming"  #: resuming the same voice session after a drop
    RECONNECTING = "reconnecting"  #: resetting: new voice state, new session
    WAITING_FOR_MOVE = "waiting_for_move"  #: closed with 4014, a move may follow
    DISCONNECTED = "disconnected"  #: left on request
    STOPPED = "stopped"  #: the policy gave up; see the Stopped event for why


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoiceEvent:
    """Base of everything a session reports. ``attempt`` numbers connection attempts."""

    attempt: int


@dataclass(frozen=True, slots=True)
class StateChanged(VoiceEvent):
    old: VoiceState
    new: VoiceState


@dataclass(frozen=True, slots=True)
class Closed(VoiceEvent):
    """The voice gateway closed with ``code`` (None: the transport dropped)."""

    code: int | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Resumed(VoiceEvent):
    """The same voice session continued after a drop (no new Identify)."""


@dataclass(frozen=True, slots=True)
class Reconnected(VoiceEvent):
    """A new voice session was established (fresh voice state, new Identify)."""


@dataclass(frozen=True, slots=True)
class ServerUpdate(VoiceEvent):
    """The main gateway delivered a new VOICE_SERVER_UPDATE (failover or move).

    ``endpoint`` None means the voice server went away; wait for another update.
    """

    endpoint: str | None


@dataclass(frozen=True, slots=True)
class SpeakerChanged(VoiceEvent):
    """SSRC <-> user mapping changed. ``ssrc`` None: the user left the call."""

    user_id: int
    ssrc: int | None


@dataclass(frozen=True, slots=True)
class Stopped(VoiceEvent):
    """The policy stopped the session. ``reason`` is written for the user."""

    reason: str
    code: int | None = None


# -- the seams ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What a link can tell about itself, for `/notesstatus`, doctor and the matrix."""

    transport: str  #: "engine" or "native"
    library: str  #: distribution name of the wrapped library, e.g. "discord.py"
    library_version: str
    can_receive: bool
    dave: bool  #: can negotiate DAVE protocol version >= 1
    notes: str = ""  #: one line on limits, e.g. "no voice receive in nextcord"

    def describe(self) -> str:
        """One line for `/notesstatus` and doctor: which transport, through which library,
        and what it can do."""
        library = f"{self.library} {self.library_version}".strip() or "an unknown library"
        via = (
            f"notetaker's voice engine through {library}"
            if self.transport == "engine"
            else f"{library}'s own voice client"
        )
        can = [
            "records" if self.can_receive else "cannot record",
            "DAVE" if self.dave else "no DAVE",
        ]
        return f"{self.transport} transport ({via}): " + ", ".join(can)


class VoiceLink(ABC):
    """One guild's voice connection mechanics, without any reconnect logic.

    Driven by :class:`notetaker.supervisor.Supervisor` only. Each connection attempt
    gets an ``attempt`` number; every event a link reports carries the attempt it
    belongs to, so the supervisor can ignore events of attempts it abandoned.
    """

    @property
    @abstractmethod
    def info(self) -> LinkInfo:
        """Static facts about this transport."""

    @abstractmethod
    async def request_voice_state(self, channel_id: int | None) -> None:
        """Send Update Voice State (op 4) for ``channel_id`` (None: leave).

        For a join, return once both VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE for
        this request have arrived (fresh session_id, token and endpoint); raise
        :class:`notetaker.errors.VoiceTimeout` if they do not.
        """

    @abstractmethod
    async def open(self, attempt: int, *, resume: bool) -> None:
        """Open the voice connection with the latest voice state.

        ``resume`` False: Identify (a new voice session). True: Resume the last one.
        Return once receiving; raise :class:`notetaker.errors.VoiceClosed` (with
        ``attempt``) if the gateway closes during the handshake. The link must not
        retry by itself.
        """

    @abstractmethod
    async def close(self) -> None:
        """Close the voice connection (WebSocket and UDP) but keep the voice state."""

    @abstractmethod
    async def force_disconnect(self) -> None:
        """Drop any voice client of this guild, ours or a stale one the library still
        holds, and leave the channel (op 4 with channel null). Must not raise if there is
        nothing to drop."""

    @abstractmethod
    def events(self) -> AsyncIterator[VoiceEvent]:
        """Events from the link: Closed, ServerUpdate, SpeakerChanged, tagged with the
        attempt they belong to. One consumer (the supervisor)."""

    @abstractmethod
    def set_sink(self, sink: AudioSink | None) -> None:
        """Deliver received frames to ``sink`` from now on (None: stop delivering)."""

    def stats(self) -> dict[str, Any]:
        """Receive statistics (packets by outcome, per user), if the link keeps any."""
        return {}


class VoiceSession(ABC):
    """A voice connection as the bot sees it: connect, disconnect, watch, record.

    Reconnects are invisible here except as events; the implementation
    (:class:`notetaker.supervisor.Supervisor`) runs the reconnect policy.
    """

    guild_id: int
    channel_id: int | None

    @property
    @abstractmethod
    def info(self) -> LinkInfo:
        """What the session's link can do (its transport, library, receive, DAVE)."""

    @property
    @abstractmethod
    def state(self) -> VoiceState:
        """Current state."""

    @abstractmethod
    async def connect(self, channel_id: int) -> None:
        """Join ``channel_id`` and return once receiving.

        Raises :class:`notetaker.errors.VoiceStopped` with a user-facing reason if the
        policy gives up.
        """

    @abstractmethod
    async def disconnect(self, *, force: bool = False) -> None:
        """Leave. ``force`` also drops a voice client the library may still hold."""

    @abstractmethod
    def events(self) -> AsyncIterator[VoiceEvent]:
        """A new subscription to this session's events, from now on."""

    @abstractmethod
    def set_sink(self, sink: AudioSink | None) -> None:
        """Deliver frames to ``sink`` (kept across reconnects)."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """Receive statistics and reconnect counts."""


@dataclass
class EventLog:
    """Collects events (for tests and `/notesstatus`)."""

    events: list[VoiceEvent] = field(default_factory=list)

    def of(self, kind: type[VoiceEvent]) -> list[VoiceEvent]:
        return [e for e in self.events if isinstance(e, kind)]
