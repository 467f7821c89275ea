"""The backend contract, part 1: login, slash commands, answers, permissions, consent.

Runs unchanged against every backend (NOTETAKER_TEST_BACKEND) and the simulator.
"""

from __future__ import annotations

from typing import Any

import pytest

from notetaker import libraries
from notetaker.bot import COMMANDS
from notetaker.libraries import installed_discord_libraries
from notetaker.native import native_dave

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


async def test_the_guild_ready_timeout_setting_reaches_the_library(running: Any) -> None:
    # conftest sets 0.05 s; the library's own default (2 s) would mean it was not passed on.
    assert running.backend.client._connection.guild_ready_timeout == 0.05


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


def _link_line(transport: str) -> str:
    """What /notesstatus must say of the link, from the library facts (not from the link)."""
    ((dist, version),) = installed_discord_libraries().items()
    if transport == "engine":
        return (
            f"engine transport (notetaker's voice engine through {dist} {version}): records, DAVE"
        )
    dave = "DAVE" if native_dave(dist, version) else "no DAVE"
    assert libraries.release(dist, version).dave == (dave == "DAVE")  # dave.py is installed
    return f"native transport ({dist} {version}'s own voice client): cannot record, {dave}"


@pytest.mark.parametrize("transport", ["engine", "native"], indirect=True)
async def test_joinvoice_then_status_then_leave(running: Any, transport: str) -> None:
    r = running
    inv = await r.sim.invoke("joinvoice", user=r.organiser)
    await inv.wait(lambda resp: "Joined" in _text(resp), timeout=20)
    voice = r.sim.world.voice_states.get(r.sim.world.bot.id)
    assert voice is not None and voice.channel_id == r.sim.world.voice_channel.id
    inv = await r.sim.invoke("notesstatus", user=r.guest)
    status = _text(await inv.callback())
    assert "Voice: connected" in status and "no notes are being taken" in status
    assert _link_line(transport) in status
    inv = await r.sim.invoke("leave", user=r.guest)
    assert "Left the voice channel" in _text(await inv.callback())
    await r.sim.record.wait_for(
        "gateway.op", lambda e: e["d"].get("channel_id") is None, op=4, timeout=20
    )
    inv = await r.sim.invoke("leave", user=r.guest)
    assert "not in a voice channel" in _text(await inv.callback())


async def test_status_during_a_meeting_names_starter_and_speakers(running: Any) -> None:
    r = running
    inv = await r.sim.invoke("startnotes", user=r.organiser)
    await inv.wait(lambda resp: "Recording in" in _text(resp), timeout=20)
    meeting = r.meetings.made[-1]
    await meeting.wait_for_speakers({u.id for u in r.speakers})
    inv = await r.sim.invoke("notesstatus", user=r.guest)
    status = _text(await inv.callback())
    assert "recording meeting 1" in status and "started by alice" in status
    assert "speakers:" in status
