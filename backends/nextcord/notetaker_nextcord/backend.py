"""The notetaker bot on nextcord: a ``Client`` with application commands.

Imported only when the backend is used (the plugin module stays cheap to import).
No ``from __future__ import annotations`` here: nextcord reads the callback's
annotations at runtime to build the command's options.
"""

import inspect
from typing import Any

import nextcord

from notetaker.bot import COMMANDS, CommandSpec, OptionSpec
from notetaker.runtime import LibraryBackend, LibraryKit

_TYPES: dict[str, type] = {"boolean": bool, "string": str}


def _parameter(spec: OptionSpec) -> inspect.Parameter:
    """The callback parameter nextcord turns into one of core's options: annotated with
    its type, a ``SlashOption`` as its default (not required, None when not given)."""
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=_TYPES[spec.kind],
        default=nextcord.SlashOption(
            name=spec.name,
            description=spec.description,
            required=False,
            default=None,
            max_length=spec.max_length,
        ),
    )


class NextcordBackend(LibraryBackend):
    def library_kit(self) -> LibraryKit:
        return LibraryKit.of(nextcord, "nextcord")

    def create_client(self) -> Any:
        intents = nextcord.Intents.default()
        intents.voice_states = True
        intents.members = self.settings.members_intent
        # nextcord rolls out the registered application commands itself on connect.
        return nextcord.Client(
            intents=intents, guild_ready_timeout=self.settings.guild_ready_timeout_s
        )

    def apply_endpoints(self, api_base: str | None, gateway_url: str | None) -> None:
        from nextcord.http import Route

        if api_base:
            Route.BASE = api_base  # a class attribute every REST URL starts with
        if gateway_url:
            # nextcord asks the API's GET /gateway where to connect; a configured URL
            # answers that question instead, formatted as nextcord formats the answer.
            http = self.client.http

            async def get_gateway(*, encoding: str = "json", zlib: bool = True, **_: Any) -> str:
                return str(http.format_websocket_url(gateway_url, encoding, zlib))

            http.get_gateway = get_gateway

    def register_commands(self) -> None:
        for spec in COMMANDS:
            self.client.slash_command(name=spec.name, description=spec.description)(
                self._callback(spec)
            )

    def _callback(self, spec: CommandSpec) -> Any:
        return self.command_callback(spec, ("interaction", nextcord.Interaction), _parameter)


def create(settings: Any, **kwargs: Any) -> NextcordBackend:
    return NextcordBackend(settings, **kwargs)
