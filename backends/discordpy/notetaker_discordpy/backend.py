"""The notetaker bot on discord.py: a ``Client`` with an app-command tree.

Imported only when the backend is used (the plugin module stays cheap to import).
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from notetaker.bot import COMMANDS
from notetaker.runtime import LibraryBackend, LibraryKit


class DiscordpyBackend(LibraryBackend):
    def library_kit(self) -> LibraryKit:
        return LibraryKit.of(discord, "discord.py")

    def create_client(self) -> Any:
        intents = discord.Intents.default()
        intents.voice_states = True
        client = discord.Client(intents=intents, enable_debug_events=False)
        self.tree = app_commands.CommandTree(client)

        async def setup_hook() -> None:
            # Global registration; Discord may take a while to show new commands everywhere.
            await self.tree.sync()

        client.setup_hook = setup_hook  # type: ignore[method-assign]
        return client

    def register_commands(self) -> None:
        for spec in COMMANDS:
            self.tree.add_command(
                app_commands.Command(
                    name=spec.name, description=spec.description, callback=self._callback(spec.name)
                )
            )

    def _callback(self, name: str) -> Any:
        async def callback(interaction: discord.Interaction) -> None:
            await self.dispatch(interaction, name, {})

        return callback


def create(settings: Any, **kwargs: Any) -> DiscordpyBackend:
    return DiscordpyBackend(settings, **kwargs)
