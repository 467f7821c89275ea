"""The backend contract, part 1: login, slash commands, answers, permissions, consent.

Runs unchanged against every backend (NOTETAKER_TEST_BACKEND) and the simulator.
"""

from __future__ import annotations

from typing import Any

from notetaker.bot import COMMANDS

EPHEMERAL = 1 << 6


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


def _flags(response: Any) -> int:
    data = response.json.get("data", response.json)
    return int(data.get("flags") or 0)


async def test_logs_in_and_registers_every_command(running: Any) -> None:
    registered = {c["name"] for c in running.sim.commands.all()}
    assert {c.name for c in COMMANDS} <= registered
    descriptions = {c["name"]: c["description"] for c in running.sim.commands.all()}
    assert descriptions["startnotes"] == "Start recording meeting notes in your voice channel"


async def test_status_is_answered_ephemerally(running: Any) -> None:
    inv = await running.sim.invoke("notesstatus", user=running.guest)
    answer = await inv.callback()
    assert "Not in a voice channel" in _text(answer)
    assert _flags(answer) & EPHEMERAL


async def test_member_without_permission_is_refused_clearly(running: Any) -> None:
    inv = await running.sim.invoke("startnotes", user=running.guest)
    answer = await inv.callback()
    text = _text(answer)
    assert "not allowed to /startnotes" in text and "manage_guild" in text
    assert _flags(answer) & EPHEMERAL
    assert running.backend.bot.guilds[running.sim.world.guild_id].meeting is None


async def test_permitted_member_not_in_voice_is_told_what_to_do(running: Any) -> None:
    inv = await running.sim.invoke("startnotes", user=running.outsider)
    answer = await inv.wait(lambda r: "voice channel first" in _text(r))
    assert "Join a voice channel first" in _text(answer)


async def test_optout_is_remembered_per_guild_and_optin_undoes_it(running: Any) -> None:
    guild = running.sim.world.guild_id
    inv = await running.sim.invoke("optout", user=running.guest)
    assert "opted out" in _text(await inv.callback())
    assert running.guest.id in running.backend.bot.consent.opted_out(guild)
    inv = await running.sim.invoke("optin", user=running.guest)
    assert "opted in" in _text(await inv.callback())
    assert running.guest.id not in running.backend.bot.consent.opted_out(guild)
