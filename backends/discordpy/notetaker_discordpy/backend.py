"""The notetaker bot on discord.py: a ``Client`` with an app-command tree.

Imported only when the backend is used (the plugin module stays cheap to import).
"""

from __future__ import annotations

import inspect
from typing import Any

import discord
from discord import app_commands

from notetaker.bot import COMMANDS, CommandSpec, OptionSpec
from notetaker.runtime import LibraryBackend, LibraryKit


def _annotation(spec: OptionSpec) -> Any:
    """What discord.py turns into one of core's options: ``bool``, ``str`` or, with a
    maximum length, ``Range[str, None, max_length]``."""
    if spec.kind == "boolean":
        return bool
    if spec.max_length is not None:
        return app_commands.Range[str, None, spec.max_length]
    return str


class DiscordpyBackend(LibraryBackend):
    def library_kit(self) -> LibraryKit:
        return LibraryKit.of(discord, "discord.py")

    def create_client(self) -> Any:
        intents = discord.Intents.default()
        intents.voice_states = True
        intents.members = self.settings.members_intent
        client = discord.Client(
            intents=intents,
            enable_debug_events=False,
            guild_ready_timeout=self.settings.guild_ready_timeout_s,
        )
        self.tree = app_commands.CommandTree(client)

        async def setup_hook() -> None:
            # Global registration; Discord may take a while to show new commands everywhere.
            await self.tree.sync()

        client.setup_hook = setup_hook  # type: ignore[method-assign]
        return client

    def apply_endpoints(self, api_base: str | None, gateway_url: str | None) -> None:
        # Every REST URL is built from Route.BASE (webhooks and interaction callbacks
        # too); a non-sharded Client opens DEFAULT_GATEWAY without asking GET /gateway.
        # Both are class attributes: one bot per process.
        import yarl
        from discord.gateway import DiscordWebSocket

        if api_base:
            discord.http.Route.BASE = api_base
        if gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url + "/")

    async def reset_http(self) -> None:
        await self.client.http.close()
        # The closed session took its connector with it, and discord.py reuses the
        # connector it made on the first login unless it is unset again.
        self.client.http.connector = discord.utils.MISSING

    def register_commands(self) -> None:
        for spec in COMMANDS:
            self.tree.add_command(
                app_commands.Command(
                    name=spec.name, description=spec.description, callback=self._callback(spec)
                )
            )

    def _callback(self, spec: CommandSpec) -> Any:
        callback = self.command_callback(
            spec,
            ("interaction", discord.Interaction),
            lambda o: inspect.Parameter(
                o.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_annotation(o)
            ),
        )
        # app_commands.Command takes the options' descriptions from this attribute, which
        # its @describe decorator sets (a default makes an option optional).
        callback.__discord_app_commands_param_description__ = {  # type: ignore[attr-defined]
            o.name: o.description for o in spec.options
        }
        return callback


def create(settings: Any, **kwargs: Any) -> DiscordpyBackend:
    return DiscordpyBackend(settings, **kwargs)
