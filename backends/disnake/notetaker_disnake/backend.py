"""The notetaker bot on disnake: an ``InteractionBot`` with slash commands.

Imported only when the backend is used (the plugin module stays cheap to import).
No ``from __future__ import annotations`` here: disnake reads the callback's
annotations at runtime to build the command's options.
"""

import asyncio
import inspect
from typing import Any

import disnake
from disnake.ext import commands

from notetaker.bot import COMMANDS, CommandSpec, OptionSpec
from notetaker.runtime import LibraryBackend, LibraryKit

_TYPES: dict[str, type] = {"boolean": bool, "string": str}


def _parameter(spec: OptionSpec) -> inspect.Parameter:
    """The callback parameter disnake turns into one of core's options: annotated with
    its type, a ``commands.Param`` as its default (a default makes it optional; None when
    not given)."""
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=_TYPES[spec.kind],
        default=commands.Param(
            None, name=spec.name, description=spec.description, max_length=spec.max_length
        ),
    )


class DisnakeBackend(LibraryBackend):
    def library_kit(self) -> LibraryKit:
        return LibraryKit.of(disnake, "disnake")

    def create_client(self) -> Any:
        intents = disnake.Intents.default()
        intents.voice_states = True
        intents.members = self.settings.members_intent
        # An InteractionBot (no prefix commands) syncs the registered application
        # commands itself: after login it fetches the global ones and overwrites them
        # when they differ.
        return commands.InteractionBot(
            intents=intents, guild_ready_timeout=self.settings.guild_ready_timeout_s
        )

    def apply_endpoints(self, api_base: str | None, gateway_url: str | None) -> None:
        from disnake.http import Route

        if api_base:
            Route.BASE = api_base  # a class attribute every REST URL starts with
        if gateway_url:
            # disnake asks the API's GET /gateway/bot where to connect (and how many
            # sessions it may start); a configured URL answers the where, with the query
            # disnake would have added (v, encoding, compress).
            http = self.client.http
            bot_gateway, configured = http.get_bot_gateway, gateway_url

            def url(encoding: str, zlib: bool) -> str:
                return str(http._format_gateway_url(configured, encoding=encoding, zlib=zlib))

            async def get_bot_gateway(
                *, encoding: str = "json", zlib: bool = True
            ) -> tuple[int, str, Any]:
                shards, _, limits = await bot_gateway(encoding=encoding, zlib=zlib)
                return shards, url(encoding, zlib), limits

            async def get_gateway(*, encoding: str = "json", zlib: bool = True) -> str:
                return url(encoding, zlib)

            http.get_bot_gateway = get_bot_gateway
            http.get_gateway = get_gateway

    async def start(self, token: str) -> None:
        # disnake binds its client to an event loop when the client is made (the current
        # one, or a new one where none runs) and schedules its own tasks on that loop:
        # the command sync after login, rate-limit lock releases, the voice client's
        # runner. `notetaker run` makes the backend before asyncio.run() starts the loop
        # it runs in, so move the client (and its HTTP client and connection state, which
        # hold the same loop) to the running loop before logging in, as discord.py 2.x
        # does itself at login.
        loop = asyncio.get_running_loop()
        self.client.loop = self.client.http.loop = self.client._connection.loop = loop
        await super().start(token)

    def register_commands(self) -> None:
        for spec in COMMANDS:
            self.client.slash_command(name=spec.name, description=spec.description)(
                self._callback(spec)
            )

    def _callback(self, spec: CommandSpec) -> Any:
        inner = self.command_callback(
            spec, ("interaction", disnake.ApplicationCommandInteraction), _parameter
        )

        # disnake calls a slash command's callback with keywords only, the interaction
        # included (by its parameter's name); core's callback takes it first, positionally.
        async def callback(interaction: Any, **options: Any) -> None:
            await inner(interaction, **options)

        callback.__signature__ = inner.__signature__  # type: ignore[attr-defined]
        return callback


def create(settings: Any, **kwargs: Any) -> DisnakeBackend:
    return DisnakeBackend(settings, **kwargs)
