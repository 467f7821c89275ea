"""The command seam: a slash command invocation, library-agnostic.

Each backend adapts its library's interaction object to :class:`CommandContext`; the
bot logic in core only ever sees this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

#: Discord's message length limit, in characters.
MESSAGE_LIMIT: Final = 2000


@dataclass(frozen=True, slots=True)
class Member:
    """The member who invoked a command, as far as permission checks need it.

    ``permissions`` holds Discord permission names in snake case as the libraries spell
    them (``manage_guild``, ``administrator``...).
    """

    id: int
    display_name: str
    role_ids: frozenset[int] = frozenset()
    permissions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CommandInvocation:
    """Which command, with which options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


class CommandContext(ABC):
    """One slash command invocation.

    The first response must come within Discord's 3 s window: call :meth:`defer`
    before any slow work, then :meth:`followup`. :meth:`reply` answers the
    interaction (or follows up if it was already answered or deferred).
    """

    invocation: CommandInvocation
    member: Member
    guild_id: int
    channel_id: int  #: the text channel the command was run in
    voice_channel_id: int | None  #: the asker's voice channel, None if not in voice

    @abstractmethod
    async def defer(self, *, ephemeral: bool = False) -> None:
        """Acknowledge now, answer later."""

    @abstractmethod
    async def reply(self, text: str, *, ephemeral: bool = False) -> None:
        """Answer the interaction (a followup if already answered or deferred)."""

    @abstractmethod
    async def followup(self, text: str, *, ephemeral: bool = False) -> None:
        """Send a followup message to the interaction."""

    @abstractmethod
    async def post_file(self, path: Path, text: str = "") -> None:
        """Post ``path`` as an attachment in the command's channel."""
