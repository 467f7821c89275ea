"""The seam between the voice gateway and DAVE: the hooks a DAVE implementation fills in.

:class:`DaveHandler` is what the gateway calls for ops 4 (``dave_protocol_version``), 11,
13 and 21-31, and what hands the receive pipeline its frame decryptor. The base class is
DAVE protocol version 0 (transport encryption only), so the gateway never needs to know
whether DAVE is there; :class:`notetaker.voice.dave.DaveProtocolHandler` is the real one.
"""

from __future__ import annotations

from typing import Any, Protocol

from notetaker.voice.pipeline import FrameDecryptor, PassthroughDecryptor


class DaveTransport(Protocol):
    """How a :class:`DaveHandler` answers the voice gateway (op 23, 26, 28, 31)."""

    async def send_json(self, op: int, d: Any) -> None:
        """Send a JSON op (dropped if the WebSocket is gone)."""

    async def send_binary(self, op: int, payload: bytes) -> None:
        """Send a binary frame ``[u8 op][payload]`` (dropped if the WebSocket is gone)."""


class DaveHandler:
    """Where DAVE lands (ops 21-31, section 5). This base is protocol version 0: no DAVE.

    A DAVE implementation subclasses it. One handler lives as long as a voice session.
    The gateway calls :meth:`bind` with its transport on every (re)connect, then the
    ``on_*`` hooks as messages arrive; the receive pipeline calls :attr:`decryptor`'s
    ``decrypt`` for every frame. Hooks may raise: the gateway counts and logs the error
    and goes on.
    """

    #: The ``max_dave_protocol_version`` announced in Identify (0: transport-only).
    max_protocol_version: int = 0

    def __init__(self, max_protocol_version: int | None = None) -> None:
        if max_protocol_version is not None:
            self.max_protocol_version = max_protocol_version
        self.transport: DaveTransport | None = None
        self.protocol_version = 0
        self.ignored = 0

    def bind(self, transport: DaveTransport) -> None:
        """The WebSocket to answer on (a new one after a Resume)."""
        self.transport = transport

    @property
    def decryptor(self) -> FrameDecryptor:
        """The frame decryptor the receive pipeline uses (passthrough without DAVE)."""
        return PassthroughDecryptor()

    async def on_session_description(self, protocol_version: int) -> None:
        """Session Description (op 4) announced ``dave_protocol_version``."""
        self.protocol_version = protocol_version

    async def on_clients_connect(self, user_ids: list[int]) -> None:
        """op 11: these users are in the call (a DAVE group may only Add them)."""

    async def on_client_disconnect(self, user_id: int) -> None:
        """op 13: this user left."""

    async def on_json(self, op: int, d: Any) -> None:
        """A JSON DAVE op (21 prepare transition, 22 execute, 24 prepare epoch)."""
        self.ignored += 1

    async def on_binary(self, op: int, payload: bytes) -> None:
        """A binary DAVE op (25 external sender, 27 proposals, 29 commit, 30 welcome)."""
        self.ignored += 1
