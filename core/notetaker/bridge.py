"""Glue every backend shares, written once against the API the three libraries have in
common (they are forks of one code base): the ``VoiceProtocol`` hook, ``Interaction``
responses, guilds, members and messages.

Core never imports a Discord library: a backend hands in the library's classes
(``VoiceProtocol``, ``File``) and objects (the client, interactions), and this module
uses them by duck typing. What truly differs between libraries — creating the client,
registering slash commands — stays in the backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from notetaker.bot import Platform
from notetaker.commands import CommandContext, CommandInvocation, Member
from notetaker.errors import PlatformError, RateLimited, VoiceError
from notetaker.session import VoiceSession
from notetaker.voice.adapter import GatewayAdapter, VoiceStateListener

log = logging.getLogger(__name__)

#: How long to wait after a 429 that says nothing about it (no ``Retry-After``): the
#: libraries give up only after their own retries, so this is rarely used.
DEFAULT_RETRY_AFTER_S = 1.0
#: Longest library error text kept in a PlatformError (flattened form errors run long).
_TEXT_LIMIT = 300
#: Token-shaped strings: a bot token (three dot-separated base64url parts) and the
#: interaction token in a webhook URL. Neither may reach an error message.
_TOKEN_SHAPES = (
    re.compile(r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}"),
    re.compile(r"(/webhooks/\d+/)[^/\s?]+"),
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without any of ``secrets`` and without anything shaped like a token."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = _TOKEN_SHAPES[0].sub("<redacted>", text)
    return _TOKEN_SHAPES[1].sub(r"\1<redacted>", text)


def _retry_after(exc: BaseException) -> float:
    """Seconds to wait, from the exception (discord.py's ``RateLimited``) or from the
    429 response it carries (``Retry-After``, else ``X-RateLimit-Reset-After``)."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float):
        return float(value)
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name in ("Retry-After", "X-RateLimit-Reset-After"):
        try:
            return float(headers[name])
        except (KeyError, TypeError, ValueError):
            continue
    return DEFAULT_RETRY_AFTER_S


def translate_http_error(
    exc: BaseException, action: str, secrets: Iterable[str] = ()
) -> PlatformError | None:
    """core's error for a library's HTTP exception, or None if ``exc`` is not one.

    Duck-typed, as core never imports a library: an HTTP exception has an int
    ``status`` (and ``text``, Discord's message). Status 429, or a ``retry_after``
    without a status (discord.py's ``RateLimited``, raised when the wait exceeds its
    ``max_ratelimit_timeout``), is :class:`RateLimited`; any other status is
    :class:`PlatformError`. ``action`` says what was refused ("send a message").
    """
    status = getattr(exc, "status", None)
    has_status = isinstance(status, int) and not isinstance(status, bool)
    limited = (has_status and status == 429) or (
        not has_status and isinstance(getattr(exc, "retry_after", None), int | float)
    )
    if not has_status and not limited:
        return None
    raw = str(getattr(exc, "text", "") or "") or str(exc) or type(exc).__name__
    text = scrub(raw, secrets)[:_TEXT_LIMIT]
    if limited:
        wait = _retry_after(exc)
        return RateLimited(f"Discord rate limited the bot ({action}): {text}", wait)
    return PlatformError(f"Discord refused to {action} (HTTP {status}): {text}", status)


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
            raise VoiceError(f"the bot is not in guild {self.guild_id} (or it is unavailable)")
        return guild

    def _ours(self, guild: Any) -> Any | None:
        vc = guild.voice_client
        return vc if isinstance(vc, self.protocol_cls) else None

    async def send_voice_state(
        self, guild_id: int, channel_id: int | None, self_mute: bool, self_deaf: bool
    ) -> None:
        """Op 4 through the library. The one place the library's own exceptions from a
        voice state change become :class:`VoiceError`, which the supervisor's policy
        handles like any other failed attempt."""
        try:
            await self._send_voice_state(channel_id, self_mute, self_deaf)
        except (VoiceError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise VoiceError(
                f"the library could not change the voice state: {type(exc).__name__}: {exc}"
            ) from exc

    async def _send_voice_state(
        self, channel_id: int | None, self_mute: bool, self_deaf: bool
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
            raise VoiceError(f"no voice channel {channel_id} in guild {self.guild_id}")
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
        #: Threads this platform started, by id. A library caches a thread only when its
        #: THREAD_CREATE arrives, which may be after the first caption is sent into it.
        self._threads: dict[int, Any] = {}

    def open_voice(self, guild_id: int) -> VoiceSession:
        return self._open_session(guild_id)

    def _secrets(self) -> list[str]:
        """The bot's token as the library holds it (discord.py and py-cord: ``http.token``;
        nextcord: ``http._default_auth``, "Bot <token>"), to keep out of error messages."""
        http = getattr(self.client, "http", None)
        found = [getattr(http, "token", None), getattr(http, "_default_auth", None)]
        values = [str(v) for v in found if isinstance(v, str) and v]
        return values + [v.removeprefix("Bot ") for v in values]

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """The one place where the library's HTTP exceptions become core's errors."""
        try:
            yield
        except Exception as exc:
            error = translate_http_error(exc, action, self._secrets())
            if error is None:
                raise
            raise error from exc

    async def _messageable(self, channel_id: int) -> Any:
        channel = self.client.get_channel(channel_id) or self._threads.get(channel_id)
        if channel is None:
            channel = await self.client.fetch_channel(channel_id)
        return channel

    async def send_message(
        self, channel_id: int, text: str, files: Sequence[Path] = ()
    ) -> int | None:
        with self._translated("send a message"):
            channel = await self._messageable(channel_id)
            attachments = [self.file_cls(str(p)) for p in files]
            if attachments:
                message = await channel.send(text or None, files=attachments)
            else:
                message = await channel.send(text)
        message_id = getattr(message, "id", None)
        return int(message_id) if message_id is not None else None

    async def edit_message(self, channel_id: int, message_id: int, text: str) -> None:
        with self._translated("edit a message"):
            channel = await self._messageable(channel_id)
            await channel.get_partial_message(message_id).edit(content=text)

    async def create_thread(self, channel_id: int, message_id: int, name: str) -> int:
        with self._translated("start a thread"):
            channel = await self._messageable(channel_id)
            if not hasattr(channel, "create_thread"):
                raise PlatformError(f"channel {channel_id} cannot have threads")
            # Every library's TextChannel.create_thread(name=, message=) starts the thread
            # from the message (POST .../messages/{id}/threads); only discord.py's
            # PartialMessage has a create_thread of its own.
            thread = await channel.create_thread(
                name=name, message=channel.get_partial_message(message_id)
            )
        self._threads[int(thread.id)] = thread
        return int(thread.id)

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

    def voice_members(self, guild_id: int, channel_id: int) -> list[int] | None:
        # Every library keeps the guild's voice states (from GUILD_CREATE and
        # VOICE_STATE_UPDATE, no privileged intent needed) and answers a voice channel's
        # ``voice_states`` from them: user id -> state.
        channel = self.client.get_channel(channel_id)
        states = getattr(channel, "voice_states", None)
        if channel is None or states is None:
            return None
        me = getattr(self.client.user, "id", None)
        return sorted(int(uid) for uid in states if uid != me)

    def display_name(self, guild_id: int, user_id: int) -> str:
        guild = self.client.get_guild(guild_id)
        member = guild.get_member(user_id) if guild is not None else None
        return str(member.display_name) if member is not None else str(user_id)
