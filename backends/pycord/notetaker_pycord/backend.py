"""The notetaker bot on py-cord: a ``discord.Bot`` with slash commands.

Imported only when the backend is used (the plugin module stays cheap to import).
py-cord passes an ``ApplicationContext``; its ``interaction`` is the same ``Interaction``
the other libraries hand over, so core's bridge works on it unchanged.
"""

from typing import Any

import discord

from notetaker.bot import COMMANDS
from notetaker.runtime import LibraryBackend, LibraryKit


class PycordBackend(LibraryBackend):
    def library_kit(self) -> LibraryKit:
        return LibraryKit.of(discord, "py-cord")

    def create_client(self) -> Any:
        intents = discord.Intents.default()
        intents.voice_states = True
        # py-cord syncs the registered application commands itself on connect.
        return discord.Bot(intents=intents)

    def register_commands(self) -> None:
        for spec in COMMANDS:
            self.client.add_application_command(
                discord.SlashCommand(
                    self._callback(spec.name), name=spec.name, description=spec.description
                )
            )

    def _callback(self, name: str) -> Any:
        async def callback(ctx: discord.ApplicationContext) -> None:
            await self.dispatch(ctx.interaction, name, {})

        return callback


def create(settings: Any, **kwargs: Any) -> PycordBackend:
    return PycordBackend(settings, **kwargs)
