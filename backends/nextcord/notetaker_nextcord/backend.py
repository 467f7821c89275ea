"""The notetaker bot on nextcord: a ``Client`` with application commands.

Imported only when the backend is used (the plugin module stays cheap to import).
No ``from __future__ import annotations`` here: nextcord reads the callback's
annotations at runtime to build the command's options.
"""

from typing import Any

import nextcord

from notetaker.bot import COMMANDS
from notetaker.runtime import LibraryBackend, LibraryKit


class NextcordBackend(LibraryBackend):
    def library_kit(self) -> LibraryKit:
        return LibraryKit.of(nextcord, "nextcord")

    def create_client(self) -> Any:
        intents = nextcord.Intents.default()
        intents.voice_states = True
        # nextcord rolls out the registered application commands itself on connect.
        return nextcord.Client(intents=intents)

    def register_commands(self) -> None:
        for spec in COMMANDS:
            self.client.slash_command(name=spec.name, description=spec.description)(
                self._callback(spec.name)
            )

    def _callback(self, name: str) -> Any:
        async def callback(interaction: nextcord.Interaction) -> None:
            await self.dispatch(interaction, name, {})

        return callback


def create(settings: Any, **kwargs: Any) -> NextcordBackend:
    return NextcordBackend(settings, **kwargs)
