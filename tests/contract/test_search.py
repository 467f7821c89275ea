"""The backend contract, part 6: /notessearch over the session index, as a member uses it.

The index is the real one the bot records into (meeting_kind ``recorded``); its lines are
written here as the live path writes them. Runs unchanged against every backend.
"""

from __future__ import annotations

from typing import Any

import pytest

EPHEMERAL = 1 << 6
OTHER_GUILD = 4_000_000_000_000_000_001


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


def _flags(response: Any) -> int:
    data = response.json.get("data", response.json)
    return int(data.get("flags") or 0)


def _meeting(index: Any, guild_id: int, speaker: Any, lines: list[tuple[float, str]]) -> int:
    from notetaker.transcript import Segment

    mid = int(
        index.create_meeting(
            guild_id=guild_id, channel_id=77, started_by=speaker.id, started_at=1_790_000_000.0
        )
    )
    index.add_speaker(mid, speaker.id, speaker.name)
    index.add_segments(mid, 1, [Segment(speaker.id, s, s + 2, t) for s, t in lines])
    return mid


@pytest.fixture
def indexed(running: Any, settings: Any) -> tuple[int, int]:
    from notetaker.recorder import MeetingIndex

    index = MeetingIndex.open(settings.data_dir)
    try:
        bob, carol = running.speakers
        own = _meeting(
            index,
            running.sim.world.guild_id,
            bob,
            [(3.0, "The budget is approved."), (70.0, "Lunch at noon.")],
        )
        other = _meeting(index, OTHER_GUILD, carol, [(5.0, "Our budget is secret.")])
    finally:
        index.close()
    return own, other


@pytest.mark.parametrize("meeting_kind", ["recorded"], indirect=True)
async def test_notessearch_answers_with_this_servers_lines_only_ephemerally(
    running: Any, indexed: tuple[int, int]
) -> None:
    own, _ = indexed
    inv = await running.sim.invoke(
        "notessearch", user=running.organiser, options={"query": "budget"}
    )
    answer = await inv.wait(lambda r: "budget" in _text(r))
    text = _text(answer)
    assert _flags(answer) & EPHEMERAL
    assert f"• meeting {own}, <t:1790000000:d> [00:03] bob: The **budget** is approved." in text
    assert "secret" not in text and "Lunch" not in text


@pytest.mark.parametrize("meeting_kind", ["recorded"], indirect=True)
async def test_notessearch_says_when_nothing_matches_or_nothing_was_asked(
    running: Any, indexed: tuple[int, int]
) -> None:
    inv = await running.sim.invoke(
        "notessearch", user=running.organiser, options={"query": "secret"}
    )
    answer = await inv.wait(lambda r: "matches" in _text(r))
    assert _text(answer) == "Nothing said in this server's meetings matches “secret”."
    inv = await running.sim.invoke("notessearch", user=running.organiser)
    answer = await inv.wait(lambda r: "search for" in _text(r))
    assert "Give a word to search for" in _text(answer) and _flags(answer) & EPHEMERAL


@pytest.mark.parametrize("meeting_kind", ["recorded"], indirect=True)
async def test_notessearch_needs_the_roles_that_may_record(
    running: Any, indexed: tuple[int, int]
) -> None:
    inv = await running.sim.invoke("notessearch", user=running.guest, options={"query": "budget"})
    answer = await inv.wait(lambda r: "not allowed" in _text(r))
    assert "not allowed to /notessearch" in _text(answer) and "budget" not in _text(answer)
