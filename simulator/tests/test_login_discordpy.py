"""Unmodified discord.py against the simulator: login, guild, slash command, op 4, resume.

Runs in the discord.py environment (.venv-discordpy); skipped elsewhere.
"""

# No "from __future__ import annotations": the libraries read the command callbacks'
# annotations at runtime to build the options.

import io
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from standalone import cli, serve

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
    installed_library() != "discord.py",
    reason="discord.py is not installed here (run in .venv-discordpy)",
)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(lifetime=120) as s:
        s.world.voice = StubVoiceSide()
        yield s


def make_bot() -> tuple[Any, Any]:
    import discord
    from discord import app_commands

    client = discord.Client(intents=discord.Intents.default())
    tree = app_commands.CommandTree(client)

    @tree.command(name="startnotes", description="Start taking notes")
    async def startnotes(interaction: discord.Interaction, title: str) -> None:
        await interaction.response.defer(thinking=True)
        perms = interaction.permissions
        await interaction.followup.send(
            f"{title} by {interaction.user.name} connect={perms.connect}",
            file=discord.File(io.BytesIO(NOTES), "notes.md"),
        )

    return client, tree


async def test_discordpy_logs_in_answers_a_command_and_asks_for_voice(sim: Simulator) -> None:
    import discord

    from discordsim.testing.discordpy import logged_in

    w = sim.world
    client, tree = make_bot()
    async with logged_in(sim, client):
        assert client.user is not None and client.user.id == w.bot.id
        assert client.application_id == w.application_id
        guild = client.get_guild(w.guild_id)
        assert guild is not None and guild.name == w.guild_name
        voice = guild.get_channel(w.voice_channel.id)
        assert isinstance(voice, discord.VoiceChannel) and voice.name == "Meeting Room"
        assert_ready_and_guild(sim)

        # discord.py registers commands only when told to sync.
        synced = await tree.sync()
        cmd = await sim.wait_command("startnotes")
        assert [(c.name, c.id) for c in synced] == [("startnotes", int(cmd["id"]))]

        inv = await sim.invoke("startnotes", user=w.user("alice"), options={"title": "Standup"})
        assert (await inv.callback()).type == 5
        reply = await inv.reply()
        assert reply.content == "Standup by alice connect=True"
        [att] = reply.attachments
        assert (att.filename, att.data) == ("notes.md", NOTES)

        # The stub voice endpoint refuses the voice WebSocket: the connect fails after the
        # library got both dispatches and tried the endpoint they named.
        # Older releases strip the endpoint's port and try 443 (the mid-2025 4006 bug).
        with pytest.raises(aiohttp.ClientConnectorError, match=r"127\.0\.0\.1:(1|443)\b"):
            await voice.connect(timeout=10, reconnect=False)
        assert_voice_handshake(sim)
        # Some releases (nextcord, older discord.py and py-cord) keep the failed voice
        # client registered after a refused connection; leave explicitly then.
        if guild.voice_client is not None:
            await guild.voice_client.disconnect(force=True)
        await assert_left_voice(sim)


async def test_discordpy_resumes_after_a_dropped_gateway(sim: Simulator) -> None:
    from discordsim.testing.discordpy import logged_in

    client, _ = make_bot()
    async with logged_in(sim, client):
        await assert_resumes(sim)


@pytest.mark.slow
async def test_discordpy_against_a_standalone_serve_answers_the_invoke_cli(tmp_path: Path) -> None:
    """The by-hand setup, as the README tells it: `discordsim serve --state FILE`, a bot
    pointed at the URLs and token in FILE, `discordsim invoke` from another terminal."""
    import discord
    from discord import app_commands

    from discordsim.testing.discordpy import logged_in

    client = discord.Client(intents=discord.Intents.default())
    tree = app_commands.CommandTree(client)

    @tree.command(name="startnotes", description="Start taking notes")
    async def startnotes(
        interaction: discord.Interaction, captions: bool = False, language: str = "en"
    ) -> None:
        member = interaction.user
        assert isinstance(member, discord.Member)
        voice = member.voice.channel.name if member.voice and member.voice.channel else None
        await interaction.response.send_message(
            f"Recording started by {member.name} in {voice}: captions={captions} "
            f"language={language} manage_guild={member.guild_permissions.manage_guild}"
        )

    async with serve(tmp_path, "--scenario", "today") as served:
        s = served.state
        # What a separate bot process reads from the state file.
        where = SimpleNamespace(
            api_base=s["api_base"], gateway_url=s["gateway_url"], token=s["token"]
        )
        async with logged_in(where, client):  # type: ignore[arg-type]
            await tree.sync()
            r = await cli(
                "invoke", "startnotes", "-o", "captions=true", "-o", "language=de",
                "--linger", "0.3", "--state", str(served.path),
            )  # fmt: skip
            assert r.rc == 0, r.err
            assert r.out.splitlines()[1:] == [
                "reply: Recording started by organiser in Meeting Room: captions=True "
                "language=de manage_guild=True"
            ]
            r = await cli("invoke", "startnotes", "--as", "alice", "--state", str(served.path))
            assert r.rc == 0 and "by alice in None: captions=False" in r.out, r.out
            r = await cli("messages", "--state", str(served.path))
            assert r.out.count("notetaker-bot (/startnotes): Recording started by") == 2
