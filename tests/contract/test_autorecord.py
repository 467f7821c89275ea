"""The backend contract, part 7: /autorecord. The library's voice state updates reach
core, which starts notes when the first member joins an empty auto-record channel and
posts them once it has stayed empty for the grace period.

Runs unchanged against every backend (NOTETAKER_TEST_BACKEND) and the simulator.
"""

from __future__ import annotations

from typing import Any

import pytest

WAIT = 20.0
EPHEMERAL = 1 << 6


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.model_copy(update={"autorecord_grace_s": 0.5})


@pytest.fixture
def speakers() -> list[Any]:
    return []  # only the organiser comes and goes


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


async def _message(r: Any, needle: str, after: int = 0) -> Any:
    return await r.sim.record.wait_for(
        "message", lambda e: needle in (e.get("content") or ""), timeout=WAIT, after=after
    )


async def _status(r: Any) -> str:
    inv = await r.sim.invoke("notesstatus", user=r.organiser)
    return _text(await inv.wait(lambda resp: "auto-record" in _text(resp), timeout=WAIT))


async def test_autorecord_starts_with_the_first_member_and_stops_when_empty(
    running: Any,
) -> None:
    r = running
    vc = r.sim.world.voice_channel
    inv = await r.sim.invoke("autorecord", user=r.organiser, options={"mode": "on"})
    on = await inv.wait(lambda resp: "Auto-record is on" in _text(resp), timeout=WAIT)
    assert f"<#{vc.id}>" in _text(on) and not on.json.get("data", {}).get("flags")
    assert f"auto-record: <#{vc.id}>" in await _status(r)

    # The organiser was already there: nothing starts until the channel empties and
    # someone comes in.
    await r.sim.set_voice_state(r.organiser, None)
    mark = len(r.sim.record.entries)
    await r.sim.set_voice_state(r.organiser, vc)
    announce = await _message(r, "Recording has started", after=mark)
    assert "alice" in announce["content"]  # on behalf of who turned auto-record on
    started = await _message(r, "Auto-record: recording", after=mark)
    assert f"<#{vc.id}> (meeting 1" in started["content"]
    await r.sim.record.wait_for("voice.state", user_id=r.sim.world.bot.id, channel_id=vc.id)
    assert r.meetings.made is not None and len(r.meetings.made) == 1

    # Everyone leaves: after the grace period the notes are posted and the bot leaves.
    mark = len(r.sim.record.entries)
    await r.sim.set_voice_state(r.organiser, None)
    await _message(r, "has been empty for 0.5 s; finishing the notes of meeting 1", after=mark)
    await r.sim.record.wait_for(
        "voice.state", user_id=r.sim.world.bot.id, channel_id=None, after=mark, timeout=WAIT
    )
    assert r.guild_state().meeting is None


async def test_autorecord_off_and_a_manual_meeting_are_left_alone(running: Any) -> None:
    r = running
    vc = r.sim.world.voice_channel
    inv = await r.sim.invoke("autorecord", user=r.organiser, options={"mode": "on"})
    await inv.wait(lambda resp: "Auto-record is on" in _text(resp), timeout=WAIT)
    inv = await r.sim.invoke("autorecord", user=r.organiser, options={"mode": "off"})
    off = await inv.wait(lambda resp: "off" in _text(resp), timeout=WAIT)
    assert _text(off) == f"Auto-record is off for <#{vc.id}>."
    await r.sim.set_voice_state(r.organiser, None)
    await r.sim.set_voice_state(r.organiser, vc)
    # The voice state was handled before this command (the gateway's order).
    assert "auto-record: off" in await _status(r)
    assert not r.meetings.made and r.guild_state().meeting is None


async def test_autorecord_needs_the_roles_that_may_record_and_a_voice_channel(
    running: Any,
) -> None:
    r = running
    inv = await r.sim.invoke("autorecord", user=r.guest, options={"mode": "on"})
    refused = await inv.wait(lambda resp: "not allowed" in _text(resp), timeout=WAIT)
    assert "not allowed to /autorecord" in _text(refused)
    inv = await r.sim.invoke("autorecord", user=r.outsider, options={"mode": "on"})
    where = await inv.wait(lambda resp: "Join the voice channel" in _text(resp), timeout=WAIT)
    assert int(where.json.get("data", where.json).get("flags") or 0) & EPHEMERAL
    inv = await r.sim.invoke("autorecord", user=r.organiser, options={"mode": "maybe"})
    bad = await inv.wait(lambda resp: "on or off" in _text(resp), timeout=WAIT)
    assert "not 'maybe'" in _text(bad)
