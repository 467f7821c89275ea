"""Unmodified nextcord against the simulator: login, guild, slash command, op 4, resume.

Runs in the nextcord environment (.venv-nextcord, Python >= 3.12); skipped elsewhere.
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
    installed_library() != "nextcord",
    reason="nextcord is not installed here (run in .venv-nextcord)",
)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(lifetime=120) as s:
        s.world.voice = StubVoiceSide()
        yield s


def make_bot() -> Any:
    import nextcord
    from nextcord.ext import commands

    bot = commands.Bot(intents=nextcord.Intents.default())

    @bot.slash_command(name="startnotes", description="Start taking notes")
    async def startnotes(interaction: nextcord.Interaction, title: str) -> None:
        await interaction.response.defer()
        perms = interaction.permissions
        assert interaction.user is not None
        await interaction.followup.send(
            f"{title} by {interaction.user.name} connect={perms.connect}",
            file=nextcord.File(io.BytesIO(NOTES), "notes.md"),
        )

    return bot


async def test_nextcord_logs_in_answers_a_command_and_asks_for_voice(sim: Simulator) -> None:
    import nextcord

    from discordsim.testing.nextcord import logged_in

    w = sim.world
    bot = make_bot()
    async with logged_in(sim, bot):
        assert bot.user is not None and bot.user.id == w.bot.id
        guild = bot.get_guild(w.guild_id)
        assert guild is not None and guild.name == w.guild_name
        voice = guild.get_channel(w.voice_channel.id)
        assert isinstance(voice, nextcord.VoiceChannel) and voice.name == "Meeting Room"
        assert_ready_and_guild(sim)

        # nextcord syncs by itself once connected.
        cmd = await sim.wait_command("startnotes")

        inv = await sim.invoke("startnotes", user=w.user("alice"), options={"title": "Standup"})
        assert inv.payload["data"]["id"] == cmd["id"]
        assert (await inv.callback()).type == 5
        reply = await inv.reply()
        assert reply.content == "Standup by alice connect=True"
        [att] = reply.attachments
        assert (att.filename, att.data) == ("notes.md", NOTES)

        # Older releases strip the endpoint's port and try 443 (the mid-2025 4006 bug).
        with pytest.raises(aiohttp.ClientConnectorError, match=r"127\.0\.0\.1:(1|443)\b"):
            await voice.connect(timeout=10, reconnect=False)
        assert_voice_handshake(sim)
        # Some releases (nextcord, older discord.py and py-cord) keep the failed voice
        # client registered after a refused connection; leave explicitly then.
        if guild.voice_client is not None:
            await guild.voice_client.disconnect(force=True)
        await assert_left_voice(sim)


async def test_nextcord_resumes_after_a_dropped_gateway(sim: Simulator) -> None:
    from discordsim.testing.nextcord import logged_in

    async with logged_in(sim, make_bot()):
        await assert_resumes(sim)
