"""What every backend is made of, written once: a backend subclasses :class:`LibraryBackend`
and supplies only what differs between libraries — creating the client and registering
the slash commands of :data:`notetaker.bot.COMMANDS` with it.

Everything else — the bot's behaviour, voice sessions through the reconnect supervisor,
the engine attached via the library's ``VoiceProtocol`` — comes from core, so switching
``backend`` in the config is the only change needed to move the bot between libraries.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from notetaker import legacy_stores
from notetaker.autorecord import AutoRecordStore
from notetaker.bot import CommandSpec, MeetingFactory, NotetakerBot, OptionSpec
from notetaker.bridge import (
    InteractionContext,
    LibraryPlatform,
    LibraryVoiceAdapter,
    make_engine_protocol,
)
from notetaker.config import Settings
from notetaker.consent import ConsentStore
from notetaker.errors import (
    ConfigError,
    DiscordUnreachable,
    IntentsRefused,
    NotetakerError,
    StartupError,
    TokenRejected,
    VoiceError,
)
from notetaker.libraries import installed_version
from notetaker.policy import ReconnectPolicy
from notetaker.recorder.paths import DataLayout
from notetaker.session import VoiceLink, VoiceSession
from notetaker.startup import PRIVILEGED_INTENTS, intents_refused, login_with_retry, token_rejected
from notetaker.supervisor import Supervisor
from notetaker.voice.dave_hook import DaveHandler
from notetaker.voice.session_state import VoiceCredentials

log = logging.getLogger(__name__)


class _Never(Exception):
    """Stands for a library exception the library does not have (never raised)."""


@dataclass(frozen=True)
class LibraryKit:
    """The library's classes core needs, handed in so that core never imports them."""

    distribution: str  #: "py-cord", "discord.py", "nextcord", "disnake"
    version: str
    voice_protocol: type  #: the library's VoiceProtocol base class
    file_cls: type  #: the library's File class
    native_voice_client: type | None = None  #: the library's own VoiceClient
    #: The library's exceptions that :meth:`LibraryBackend.translate_error` maps.
    login_failure: type[BaseException] = _Never
    intents_required: type[BaseException] = _Never
    http_exception: type[BaseException] = _Never
    gateway_not_found: type[BaseException] = _Never

    @classmethod
    def of(cls, module: Any, distribution: str) -> LibraryKit:
        """The kit of a library whose top-level ``module`` has the forks' common names
        (``VoiceProtocol``, ``File``, ``VoiceClient``, ``LoginFailure``,
        ``PrivilegedIntentsRequired``, ``HTTPException``, ``GatewayNotFound``,
        ``__version__``)."""
        return cls(
            distribution=distribution,
            version=installed_version(distribution) or str(module.__version__),
            voice_protocol=module.VoiceProtocol,
            file_cls=module.File,
            native_voice_client=module.VoiceClient,
            login_failure=getattr(module, "LoginFailure", _Never),
            intents_required=getattr(module, "PrivilegedIntentsRequired", _Never),
            http_exception=getattr(module, "HTTPException", _Never),
            gateway_not_found=getattr(module, "GatewayNotFound", _Never),
        )


def dave_handler(creds: VoiceCredentials) -> DaveHandler:
    """The engine's DAVE member for one voice session (DAVE protocol version 1)."""
    from notetaker.voice.dave import DaveProtocolHandler

    if creds.channel_id is None:
        raise VoiceError("DAVE needs the voice channel id, and the voice state has none")
    return DaveProtocolHandler(creds.user_id, creds.channel_id)


class LibraryBackend(ABC):
    """A notetaker bot on one Discord library."""

    kit: LibraryKit

    def __init__(
        self,
        settings: Settings,
        *,
        meetings: MeetingFactory | None = None,
        consent: ConsentStore | None = None,
        voice_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.voice_ssl = voice_ssl
        self._recovery: asyncio.Task[None] | None = None
        self.kit = self.library_kit()
        self.client = self.create_client()
        self._closing = False
        # The libraries print an event handler's exception to stderr themselves; ours
        # goes through the log (its format, its redaction), one line while shutting down.
        self.client.on_error = self._on_library_error
        if settings.discord_api_base or settings.discord_gateway_url:
            self.apply_endpoints(settings.discord_api_base, settings.discord_gateway_url)
        self._engine_protocol = make_engine_protocol(self.kit.voice_protocol)
        self.policy = ReconnectPolicy.from_overrides(settings.policy)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Opt-outs and auto-record channels live in the session index's file.
        index_path = DataLayout(settings.data_dir).index_path
        if consent is None:
            consent = ConsentStore(index_path)
        self.autorecord = AutoRecordStore(index_path)
        legacy_stores.adopt(settings.data_dir, index_path)
        platform = LibraryPlatform(self.client, self.kit.file_cls, self.open_session)
        if meetings is None:
            from notetaker.meeting import MeetingRecorderFactory

            # Speakers are named as the guild shows them when they first speak.
            meetings = MeetingRecorderFactory(
                settings, display_name=platform.display_name, channel_name=platform.channel_name
            )
        self.meetings = meetings
        self.consent = consent
        self.bot = NotetakerBot(
            platform,
            settings,
            consent=consent,
            meetings=meetings,
            autorecord=self.autorecord,
        )
        # Every library dispatches on_voice_state_update(member, before, after) to an
        # attribute of the client, after updating its own voice states.
        self.client.on_voice_state_update = self._on_voice_state_update
        self.register_commands()

    # -- what a backend writes -----------------------------------------------------------

    @abstractmethod
    def library_kit(self) -> LibraryKit:
        """The library's classes and version."""

    @abstractmethod
    def create_client(self) -> Any:
        """The library's client with the intents the bot needs (guilds, voice states)."""

    @abstractmethod
    def register_commands(self) -> None:
        """Register :data:`notetaker.bot.COMMANDS`; each calls :meth:`dispatch`."""

    def apply_endpoints(self, api_base: str | None, gateway_url: str | None) -> None:
        """Point the library at ``api_base`` (REST, version included) and ``gateway_url``
        (the main gateway), through the library's own knobs; None leaves one as it is."""
        raise ConfigError(
            f"the {self.kit.distribution} backend cannot use discord_api_base or "
            "discord_gateway_url"
        )

    # -- shared -------------------------------------------------------------------------

    def requested_privileged_intents(self) -> list[str]:
        """The privileged intents the client asks for (``members``...)."""
        intents = getattr(self.client, "intents", None)
        return [name for name in PRIVILEGED_INTENTS if getattr(intents, name, False)]

    def translate_error(self, exc: BaseException) -> NotetakerError | None:
        """The one place a login or connect failure of the library becomes notetaker's:
        :class:`TokenRejected` / :class:`IntentsRefused` (final), :class:`DiscordUnreachable`
        (retried), or None for anything else."""
        import aiohttp

        kit = self.kit
        if isinstance(exc, NotetakerError):
            return exc
        if isinstance(exc, kit.login_failure):
            return TokenRejected(token_rejected())
        if isinstance(exc, kit.intents_required):
            wanted = self.requested_privileged_intents()
            return IntentsRefused(intents_refused(wanted), tuple(wanted))
        if isinstance(exc, kit.http_exception):
            status = int(getattr(exc, "status", 0) or 0)
            if status == 401:
                return TokenRejected(token_rejected())
            if status >= 500 or status == 0:
                return DiscordUnreachable(f"HTTP {status or 'error'} from the API")
            return None
        if isinstance(exc, kit.gateway_not_found):
            return DiscordUnreachable("the API did not say where the gateway is")
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return DiscordUnreachable(f"TLS certificate not accepted: {exc.certificate_error}")
        # ClientConnectorDNSError is aiohttp 3.10+; before it a DNS failure is the generic
        # connector error below.
        if isinstance(exc, getattr(aiohttp, "ClientConnectorDNSError", _Never)):
            return DiscordUnreachable(f"DNS lookup failed for {exc.host}")  # type: ignore[attr-defined]
        if isinstance(exc, aiohttp.ClientConnectorError):
            return DiscordUnreachable(f"cannot connect to {exc.host}:{exc.port}: {exc.strerror}")
        if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
            return DiscordUnreachable(f"{type(exc).__name__}: {exc}".rstrip(": "))
        return None

    async def reset_http(self) -> None:
        """Drop a failed login's HTTP session so the next try opens a fresh one."""
        await self.client.http.close()

    async def dispatch(self, interaction: Any, name: str, options: dict[str, Any]) -> None:
        """Hand one slash command invocation to the bot."""
        await self.bot.handle(InteractionContext(interaction, name, options, self.kit.file_cls))

    def command_callback(
        self,
        spec: CommandSpec,
        first: tuple[str, Any],
        option: Callable[[OptionSpec], inspect.Parameter],
        interaction: Callable[[Any], Any] = lambda arg: arg,
    ) -> Callable[..., Awaitable[None]]:
        """A slash command callback for ``spec`` whose signature declares its options.

        The libraries read a command's options from its callback's signature: ``first``
        is the (name, annotation) of the argument they pass first, ``option`` makes each
        option's keyword parameter the library's way, ``interaction`` takes the
        interaction out of the first argument. Libraries pass every declared option,
        None for those not given; only the given ones reach the bot.
        """

        async def callback(*args: Any, **options: Any) -> None:
            given = {name: value for name, value in options.items() if value is not None}
            await self.dispatch(interaction(args[0]), spec.name, given)

        head = inspect.Parameter(
            first[0], inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=first[1]
        )
        callback.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [head, *(option(o) for o in spec.options)]
        )
        return callback

    def open_session(self, guild_id: int) -> VoiceSession:
        """A voice session for ``guild_id`` on the configured transport."""
        link: VoiceLink
        if self.settings.transport == "engine":
            from notetaker.voice.link import EngineLink

            adapter = LibraryVoiceAdapter(self.client, guild_id, self._engine_protocol)
            link = EngineLink(
                adapter,
                guild_id=guild_id,
                user_id=int(self.client.user.id),
                ssl_context=self.voice_ssl,
                dave=dave_handler,
                library=self.kit.distribution,
                library_version=self.kit.version,
            )
            adapter.attach(link)
        else:
            from notetaker.native import NativeLink

            link = NativeLink(self.client, guild_id, self.kit)
        return Supervisor(link, self.policy, guild_id=guild_id, logger=log)

    async def start(self, token: str) -> None:
        """Log in (retrying while Discord is unreachable) and run until :meth:`close`.

        Raises :class:`StartupError` when Discord refuses the token or an intent.
        """
        where = self.settings.discord_api_base or "Discord's API"
        if self._recovery is None:
            self._recovery = asyncio.create_task(self._recover_when_ready())
        await login_with_retry(
            lambda: self.client.login(token),
            self.translate_error,
            reset=self.reset_http,
            where=where,
        )
        try:
            await self.client.connect(reconnect=True)
        except Exception as exc:
            error = self.translate_error(exc)
            if isinstance(error, StartupError):
                raise error from None
            raise

    async def wait_until_ready(self) -> None:
        await self.client.wait_until_ready()

    async def _recover_when_ready(self) -> None:
        """Meetings the last process left unfinished, once the guilds (and who is in
        their voice channels) are known: the first ready after start."""
        await self.client.wait_until_ready()
        try:
            await self.bot.recover()
        except Exception:  # recovery is best effort; the bot serves commands either way
            log.exception("restart recovery failed")

    async def shutdown(self, grace_s: float) -> list[int]:
        """Graceful stop: see :meth:`NotetakerBot.shutdown`; then :meth:`close`."""
        self._closing = True
        return await self.bot.shutdown(grace_s)

    async def _on_voice_state_update(self, member: Any, before: Any, after: Any) -> None:
        if getattr(member, "bot", False):
            return
        guild = getattr(member, "guild", None)
        if guild is None:
            return
        old, new = getattr(before, "channel", None), getattr(after, "channel", None)
        try:
            self.bot.voice_state_changed(
                int(guild.id),
                int(member.id),
                None if old is None else int(old.id),
                None if new is None else int(new.id),
            )
        except Exception:  # a voice state is not worth the library's error handler
            log.exception("voice state update of member %s not handled", member.id)

    async def _on_library_error(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        """What an event handler of the library raised (for example nextcord's command
        sync on connect when the connection closes under it)."""
        exc = sys.exc_info()[1]
        if self._closing:
            log.info("while shutting down, the library's %s handler ended: %s", event, exc)
        else:
            log.error("the library's %s handler failed", event, exc_info=exc)

    async def close(self) -> None:
        self._closing = True
        if self._recovery is not None and not self._recovery.done():
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._recovery
        await self.bot.auto.close()
        for state in self.bot.guilds.values():
            if state.session is not None:
                try:
                    await asyncio.wait_for(state.session.disconnect(force=True), 5)
                except Exception as exc:  # shutting down: note it and go on
                    log.warning("voice session did not close cleanly: %s", exc)
        await self.client.close()
        # The transcription worker and the stores: nothing is written after this.
        close_meetings = getattr(self.meetings, "close", None)
        if close_meetings is not None:
            close_meetings()
        self.consent.close()
        self.autorecord.close()
