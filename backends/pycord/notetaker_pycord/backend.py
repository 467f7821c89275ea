"""The notetaker bot on py-cord: a ``discord.Bot`` with slash commands.

Imported only when the backend is used (the plugin module stays cheap to import).
py-cord passes an ``ApplicationContext``; its ``interaction`` is the same ``Interaction``
the other libraries hand over, so core's bridge works on it unchanged.
"""

import inspect
from typing import Any

import discord

from notetaker.bot import COMMANDS, CommandSpec, OptionSpec
from notetaker.runtime import LibraryBackend, LibraryKit

_TYPES: dict[str, type] = {"boolean": bool, "string": str}


def _option(spec: OptionSpec) -> Any:
    """The ``discord.Option`` for one of core's options: never required, None when not
    given (no option is ever None when given, so None means "not given")."""
    limits = {} if spec.max_length is None else {"max_length": spec.max_length}
    return discord.Option(
        _TYPES[spec.kind], spec.description, name=spec.name, default=None, **limits
    )


class PycordBackend(LibraryBackend):
    def library_kit(self) -> LibraryKit:
        return LibraryKit.of(discord, "py-cord")

    def create_client(self) -> Any:
        intents = discord.Intents.default()
        intents.voice_states = True
        intents.members = self.settings.members_intent
        # py-cord syncs the registered application commands itself on connect.
        return discord.Bot(intents=intents, guild_ready_timeout=self.settings.guild_ready_timeout_s)

    def apply_endpoints(self, api_base: str | None, gateway_url: str | None) -> None:
        from discord.http import API_VERSION, Route

        if api_base:
            if "API_BASE_URL" in vars(Route):  # 2.7+: the base is formatted from it
                Route.API_BASE_URL = api_base.replace("{", "{{").replace("}", "}}")
            else:  # 2.5 / 2.6 return a fixed string from the base property
                Route.base = property(lambda _: api_base)  # type: ignore[assignment,method-assign]
        if gateway_url:
            # py-cord asks the API's GET /gateway where to connect; a configured URL
            # answers that question instead, with the query py-cord would have added.
            async def get_gateway(*, encoding: str = "json", zlib: bool = True) -> str:
                compress = "&compress=zlib-stream" if zlib else ""
                return f"{gateway_url}?encoding={encoding}&v={API_VERSION}{compress}"

            self.client.http.get_gateway = get_gateway

    def register_commands(self) -> None:
        for spec in COMMANDS:
            self.client.add_application_command(
                discord.SlashCommand(
                    self._callback(spec), name=spec.name, description=spec.description
                )
            )

    def _callback(self, spec: CommandSpec) -> Any:
        return self.command_callback(
            spec,
            ("ctx", discord.ApplicationContext),
            lambda o: inspect.Parameter(
                o.name, inspect.Parameter.KEYWORD_ONLY, annotation=_option(o)
            ),
            interaction=lambda ctx: ctx.interaction,
        )


def create(settings: Any, **kwargs: Any) -> PycordBackend:
    return PycordBackend(settings, **kwargs)
