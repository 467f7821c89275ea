"""Auto-record's policy (a pure decide) and its timer, on an injected sleep."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from notetaker.autorecord import (
    Action,
    AutoChannel,
    AutoRecorder,
    AutoRecordPolicy,
    AutoRecordStore,
    Situation,
    decide,
)

VC, OTHER, GUILD, ALICE, BOB = 10, 11, 1, 100, 101
IDLE = Situation(
    joined=VC,
    left=None,
    enabled=frozenset({VC}),
    recording_in=None,
    auto_meeting=False,
    occupied=False,
    stop_armed=False,
    first_in=True,
)


@pytest.mark.parametrize(
    ("change", "action"),
    [
        ({}, Action.START),
        ({"first_in": False}, Action.NOTHING),  # people stopped notes and stayed
        ({"joined": OTHER}, Action.NOTHING),  # not an auto-record channel
        ({"left": VC}, Action.NOTHING),  # a mute: same channel before and after
        ({"recording_in": VC, "auto_meeting": True}, Action.NOTHING),  # already recording
        ({"joined": None, "left": VC, "recording_in": VC, "auto_meeting": True}, Action.ARM_STOP),
        (
            {
                "joined": None,
                "left": VC,
                "recording_in": VC,
                "auto_meeting": True,
                "occupied": True,
            },
            Action.NOTHING,  # someone is still there
        ),
        (
            {"joined": None, "left": VC, "recording_in": VC, "auto_meeting": False},
            Action.NOTHING,  # /startnotes meetings are the members' to stop
        ),
        ({"recording_in": VC, "auto_meeting": True, "stop_armed": True}, Action.DISARM_STOP),
    ],
)
def test_decide(change: dict[str, object], action: Action) -> None:
    assert decide(replace(IDLE, **change)) is action  # type: ignore[arg-type]


def test_the_store_keeps_channels_per_guild(tmp_path: Path) -> None:
    store = AutoRecordStore(tmp_path / "x.sqlite3")
    store.enable(AutoChannel(GUILD, VC, 5, ALICE))
    store.enable(AutoChannel(2, OTHER, 6, BOB))
    store.close()
    again = AutoRecordStore(tmp_path / "x.sqlite3")
    assert again.channels(GUILD) == [AutoChannel(GUILD, VC, 5, ALICE)]
    assert again.disable(GUILD, VC) and not again.disable(GUILD, VC)
    assert again.channels(GUILD) == [] and again.get(2, OTHER) is not None


class Room:
    """Who is in which channel, the bot's start/stop calls, and a sleep the test ends."""

    def __init__(self) -> None:
        self.members: dict[int, list[int]] = {VC: [], OTHER: []}
        self.started: list[AutoChannel] = []
        self.stopped: list[int] = []
        self.slept: list[float] = []
        self.wake = asyncio.Event()

    async def start(self, channel: AutoChannel) -> bool:
        self.started.append(channel)
        return True

    async def stop(self, guild_id: int) -> None:
        self.stopped.append(guild_id)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await self.wake.wait()

    def move(self, rec: AutoRecorder, user: int, before: int | None, after: int | None) -> Action:
        if before is not None:
            self.members[before].remove(user)
        if after is not None:
            self.members[after].append(user)
        recording = VC if self.started and not self.stopped else None
        return rec.changed(GUILD, user, before, after, recording_in=recording)


def recorder(room: Room) -> AutoRecorder:
    store = AutoRecordStore(":memory:")
    store.enable(AutoChannel(GUILD, VC, 5, ALICE))
    return AutoRecorder(
        store,
        AutoRecordPolicy(empty_grace_s=30.0),
        start=room.start,
        stop=room.stop,
        members=lambda g, c: list(room.members[c]),
        sleep=room.sleep,
    )


async def test_start_then_stop_after_the_grace_and_a_return_disarms_it() -> None:
    room = Room()
    rec = recorder(room)
    assert room.move(rec, ALICE, None, VC) is Action.START
    await asyncio.sleep(0)  # the start task runs
    assert [c.voice_channel_id for c in room.started] == [VC] and rec.auto == {GUILD: VC}
    assert room.move(rec, BOB, None, VC) is Action.NOTHING
    assert room.move(rec, ALICE, VC, None) is Action.NOTHING  # bob is still there
    assert room.move(rec, BOB, VC, OTHER) is Action.ARM_STOP
    await asyncio.sleep(0)
    assert room.slept == [30.0] and room.stopped == []
    assert room.move(rec, BOB, OTHER, VC) is Action.DISARM_STOP  # back within the grace
    assert room.move(rec, BOB, VC, None) is Action.ARM_STOP
    room.wake.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert room.stopped == [GUILD] and rec.auto == {}
    await rec.close()


async def test_close_cancels_a_pending_stop() -> None:
    room = Room()
    rec = recorder(room)
    room.move(rec, ALICE, None, VC)
    await asyncio.sleep(0)
    room.move(rec, ALICE, VC, None)
    await asyncio.sleep(0)
    await rec.close()
    room.wake.set()
    await asyncio.sleep(0)
    assert room.stopped == []
