"""Unmodified disnake against the simulator: login, guild, slash command, op 4, resume.

Runs in the disnake environment (.venv-disnake); skipped elsewhere.
"""

# No "from __future__ import annotations": the libraries read the command callbacks'
# annotations at runtime to build the options.

import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from discordsim.app import Simulator
from discordsim.testing import StubVoiceSide, installed_library
from discordsim.testing.checks import (
    NOTES,
    assert_left_voice,
    assert_ready_and_guild,
    assert_resumes,
    assert_voice_handshake,
)

pytestmark = pytest.mark.skipif(
    installed_library() != "disnake",
    reason="disnake is not installed here (run in .venv-disnake)",
)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(lifetime=120) as s:
        s.world.voice = StubVoiceSide()
        yield s


def make_bot() -> Any:
    import disnake
    from disnake.ext import commands

    bot = commands.InteractionBot(intents=disnake.Intents.default())

    @bot.slash_command(name="startnotes", description="Start taking notes")
    async def startnotes(inter: disnake.ApplicationCommandInteraction, title: str) -> None:
        await inter.response.defer()
        perms = inter.permissions
        await inter.followup.send(
            f"{title} by {inter.user.name} connect={perms.connect}",
            file=disnake.File(io.BytesIO(NOTES), "notes.md"),
        )

    return bot


async def test_disnake_logs_in_answers_a_command_and_asks_for_voice(sim: Simulator) -> None:
    import disnake

    from discordsim.testing.disnake import logged_in

    w = sim.world
    bot = make_bot()
    async with logged_in(sim, bot):
        assert bot.user is not None and bot.user.id == w.bot.id
        assert bot.application_id == w.application_id
        guild = bot.get_guild(w.guild_id)
        assert guild is not None and guild.name == w.guild_name
        voice = guild.get_channel(w.voice_channel.id)
        assert isinstance(voice, disnake.VoiceChannel) and voice.name == "Meeting Room"
        assert_ready_and_guild(sim)

        # disnake syncs by itself after login (it reads the global commands, then
        # overwrites them); logged_in waited for that sync.
        cmd = await sim.wait_command("startnotes")
        assert sim.record.of("rest", method="PUT", route="/applications/{app}/commands")

        inv = await sim.invoke("startnotes", user=w.user("alice"), options={"title": "Standup"})
        assert inv.payload["data"]["id"] == cmd["id"]
        assert (await inv.callback()).type == 5
        reply = await inv.reply()
        assert reply.content == "Standup by alice connect=True"
        [att] = reply.attachments
        assert (att.filename, att.data) == ("notes.md", NOTES)

        # The stub voice endpoint refuses the voice WebSocket: the connect fails after the
        # library got both dispatches and tried the endpoint they named.
        with pytest.raises(aiohttp.ClientConnectorError, match=r"127\.0\.0\.1:1\b"):
            await voice.connect(timeout=10, reconnect=False)
        assert_voice_handshake(sim)
        # A library that keeps the failed voice client registered after a refused
        # connection has to be told to leave.
        if guild.voice_client is not None:
            await guild.voice_client.disconnect(force=True)
        await assert_left_voice(sim)


async def test_disnake_resumes_after_a_dropped_gateway(sim: Simulator) -> None:
    from discordsim.testing.disnake import logged_in

    async with logged_in(sim, make_bot()):
        await assert_resumes(sim)
