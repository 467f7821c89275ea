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
        # py-cord syncs the registered application commands itself on connect.
        return discord.Bot(intents=intents)

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
