"""Glue every backend shares, written once against the API the three libraries have in
common (they are forks of one code base): the ``VoiceProtocol`` hook, ``Interaction``
responses, guilds, members and messages.

Core never imports a Discord library: a backend hands in the library's classes
(``VoiceProtocol``, ``File``) and objects (the client, interactions), and this module
uses them by duck typing. What truly differs between libraries — creating the client,
registering slash commands — stays in the backends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from notetaker.bot import Platform
from notetaker.commands import CommandContext, CommandInvocation, Member
from notetaker.session import VoiceSession
from notetaker.voice.adapter import GatewayAdapter, VoiceStateListener

log = logging.getLogger(__name__)


def member_from(user: Any) -> Member:
    """A library ``Member`` (or ``User`` outside a guild) as core's :class:`Member`."""
    roles = frozenset(int(r.id) for r in getattr(user, "roles", ()) or ())
    perms = getattr(user, "guild_permissions", None)
    names = frozenset(name for name, value in perms if value) if perms is not None else frozenset()
    return Member(
        id=int(user.id),
        display_name=str(getattr(user, "display_name", None) or user.name),
        role_ids=roles,
        permissions=names,
    )


class InteractionContext(CommandContext):
    """A library ``Interaction`` as a :class:`CommandContext`.

    ``file_cls`` is the library's ``File`` class (``discord.File``, ``nextcord.File``).
    """

    def __init__(
        self, interaction: Any, name: str, options: dict[str, Any], file_cls: type
    ) -> None:
        self.interaction = interaction
        self.invocation = CommandInvocation(name, options)
        self.member = member_from(interaction.user)
        self.guild_id = int(interaction.guild_id)
        self.channel_id = int(interaction.channel_id)
        voice = getattr(interaction.user, "voice", None)
        channel = getattr(voice, "channel", None)
        self.voice_channel_id = int(channel.id) if channel is not None else None
        self._file_cls = file_cls

    async def defer(self, *, ephemeral: bool = False) -> None:
        if not self.interaction.response.is_done():
            await self.interaction.response.defer(ephemeral=ephemeral)

    async def reply(self, text: str, *, ephemeral: bool = False) -> None:
        if self.interaction.response.is_done():
            await self.followup(text, ephemeral=ephemeral)
        else:
            await self.interaction.response.send_message(text, ephemeral=ephemeral)

    async def followup(self, text: str, *, ephemeral: bool = False) -> None:
        await self.interaction.followup.send(text, ephemeral=ephemeral)

    async def post_file(self, path: Path, text: str = "") -> None:
        await self.interaction.followup.send(text or None, file=self._file_cls(str(path)))


def make_engine_protocol(base: type) -> type:
    """A subclass of the library's ``VoiceProtocol`` that carries only the main-gateway
    voice state to the engine: op 4 out, VOICE_STATE_UPDATE / VOICE_SERVER_UPDATE in.

    The library routes the bot's voice dispatches to the registered protocol of the guild;
    this one forwards them to the listener that :class:`LibraryVoiceAdapter` attached.
    """

    class EngineVoiceProtocol(base):  # type: ignore[misc]
        listener: VoiceStateListener | None = None
        self_mute = False
        self_deaf = False

        async def on_voice_state_update(self, data: Any, /) -> None:
            if self.listener is not None:
                self.listener.on_voice_state_update(dict(data))

        async def on_voice_server_update(self, data: Any, /) -> None:
            if self.listener is not None:
                self.listener.on_voice_server_update(dict(data))

        async def connect(
            self,
            *,
            timeout: float,  # noqa: ASYNC109 - the library's VoiceProtocol signature
            reconnect: bool,
            **_: Any,
        ) -> None:
            # Only op 4: the engine runs the voice handshake itself, driven by the supervisor.
            # Mute/deaf come from the adapter: not every library's connect() passes them on.
            await self.channel.guild.change_voice_state(
                channel=self.channel, self_mute=self.self_mute, self_deaf=self.self_deaf
            )

        async def disconnect(self, *, force: bool = False) -> None:
            try:
                await self.channel.guild.change_voice_state(channel=None)
            finally:
                self.cleanup()

    EngineVoiceProtocol.__qualname__ = EngineVoiceProtocol.__name__ = (
        f"EngineVoiceProtocol[{base.__module__}]"
    )
    return EngineVoiceProtocol


class LibraryVoiceAdapter(GatewayAdapter):
    """Sends op 4 through the library and registers the engine protocol so that the
    library hands the guild's voice dispatches to ``listener``."""

    def __init__(self, client: Any, guild_id: int, protocol_cls: type) -> None:
        self.client = client
        self.guild_id = guild_id
        self.protocol_cls = protocol_cls
        self.listener: VoiceStateListener | None = None

    def attach(self, listener: VoiceStateListener) -> None:
        self.listener = listener

    def _guild(self) -> Any:
        guild = self.client.get_guild(self.guild_id)
        if guild is None:
            raise LookupError(f"the bot is not in guild {self.guild_id}")
        return guild

    def _ours(self, guild: Any) -> Any | None:
        vc = guild.voice_client
        return vc if isinstance(vc, self.protocol_cls) else None

    async def send_voice_state(
        self, guild_id: int, channel_id: int | None, self_mute: bool, self_deaf: bool
    ) -> None:
        guild = self._guild()
        if channel_id is None:
            await guild.change_voice_state(channel=None)
            ours = self._ours(guild)
            if ours is not None:
                ours.cleanup()
            return
        ours = self._ours(guild)
        if ours is not None:
            await guild.change_voice_state(
                channel=guild.get_channel(channel_id), self_mute=self_mute, self_deaf=self_deaf
            )
            return
        await self.drop_foreign_client(guild)
        channel = guild.get_channel(channel_id)
        if channel is None:
            raise LookupError(f"no voice channel {channel_id} in guild {self.guild_id}")
        listener = self.listener
        cls = self.protocol_cls

        def build(client: Any, connectable: Any) -> Any:
            proto = cls(client, connectable)
            proto.listener = listener
            proto.self_mute, proto.self_deaf = self_mute, self_deaf
            return proto

        # The library registers the protocol, then calls its connect(), which sends op 4.
        await channel.connect(cls=build, reconnect=False)

    async def drop_foreign_client(self, guild: Any) -> None:
        """Disconnect a voice client of this guild that is not ours (a stale native one)."""
        vc = guild.voice_client
        if vc is not None and not isinstance(vc, self.protocol_cls):
            log.info("dropping a stale voice client of guild %s", guild.id)
            try:
                await vc.disconnect(force=True)
            except Exception as exc:  # the session reset must go on; say what was lost
                log.warning("stale voice client of guild %s did not disconnect: %s", guild.id, exc)
            finally:
                cleanup = getattr(vc, "cleanup", None)
                if cleanup is not None:
                    try:
                        cleanup()
                    except Exception as exc:
                        log.debug("cleanup of stale voice client failed: %s", exc)


class LibraryPlatform(Platform):
    """:class:`Platform` over a library client; voice sessions come from ``open_session``."""

    def __init__(
        self,
        client: Any,
        file_cls: type,
        open_session: Callable[[int], VoiceSession],
    ) -> None:
        self.client = client
        self.file_cls = file_cls
        self._open_session = open_session

    def open_voice(self, guild_id: int) -> VoiceSession:
        return self._open_session(guild_id)

    async def send_message(self, channel_id: int, text: str, files: Sequence[Path] = ()) -> None:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            channel = await self.client.fetch_channel(channel_id)
        attachments = [self.file_cls(str(p)) for p in files]
        if attachments:
            await channel.send(text or None, files=attachments)
        else:
            await channel.send(text)

    async def set_nickname(self, guild_id: int, nickname: str | None) -> bool:
        guild = self.client.get_guild(guild_id)
        if guild is None:
            return False
        try:
            await guild.me.edit(nick=nickname)
        except Exception as exc:  # Forbidden on every library; the bot goes on without it
            log.info("cannot change nickname in guild %s: %s", guild_id, type(exc).__name__)
            return False
        return True

    def channel_name(self, channel_id: int) -> str | None:
        channel = self.client.get_channel(channel_id)
        name = getattr(channel, "name", None)
        return str(name) if name else None

    def display_name(self, guild_id: int, user_id: int) -> str:
        guild = self.client.get_guild(guild_id)
        member = guild.get_member(user_id) if guild is not None else None
        return str(member.display_name) if member is not None else str(user_id)
