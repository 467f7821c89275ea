"""The seam between the receive engine and a Discord library's main gateway.

As in @discordjs/voice, the engine never talks to the main gateway itself. A backend
gives it a :class:`GatewayAdapter` that sends Update Voice State (op 4), and hands the
engine the raw VOICE_STATE_UPDATE (the bot's own only) and VOICE_SERVER_UPDATE payloads
of its guild through :meth:`VoiceStateListener.on_voice_state_update` and
:meth:`VoiceStateListener.on_voice_server_update` (:class:`notetaker.voice.link.EngineLink`
implements both). The library's ``VoiceProtocol`` hook is the natural place to do that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

#: Port of a voice endpoint that names none (voice-protocol.md section 1).
DEFAULT_VOICE_PORT = 443


class GatewayAdapter(ABC):
    """What the engine needs from the library's main gateway connection."""

    @abstractmethod
    async def send_voice_state(
        self, guild_id: int, channel_id: int | None, self_mute: bool, self_deaf: bool
    ) -> None:
        """Send Update Voice State (op 4). ``channel_id`` None leaves the channel."""


class VoiceStateListener(Protocol):
    """What a backend calls with the main gateway's voice dispatches for one guild."""

    def on_voice_state_update(self, data: dict[str, Any]) -> None:
        """A raw VOICE_STATE_UPDATE payload of the bot's own user."""

    def on_voice_server_update(self, data: dict[str, Any]) -> None:
        """A raw VOICE_SERVER_UPDATE payload."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A voice server address: host and port, the port kept from VOICE_SERVER_UPDATE."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The voice gateway URL, version 8."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"wss://{host}:{self.port}/?v=8"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(raw: str) -> Endpoint:
    """Parse a VOICE_SERVER_UPDATE ``endpoint``, keeping its port.

    A leading ``wss://`` is stripped and 443 used only when there is no port: stripping
    the port is what sent every library to the wrong listener (4006) in mid-2025.
    Raises :class:`ValueError` for an empty host or a port that is not a number in range.
    """
    text = raw.strip()
    for scheme in ("wss://", "ws://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    text = text.rstrip("/")
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"voice endpoint {raw!r} has no host")
    if not port_text:
        return Endpoint(host, DEFAULT_VOICE_PORT)
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"voice endpoint {raw!r} has an invalid port")
    return Endpoint(host, int(port_text))
