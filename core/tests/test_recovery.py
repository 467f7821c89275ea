"""Restart recovery: the pure rule, and what the bot does with each meeting it finds.

The bot's side runs behind the Platform and MeetingFactory seams (a recording platform,
:class:`~notetaker.fakes.CaptureMeetings`, voice sessions on :class:`FakeLink`); the real
meetings and tracks are tested in test_meeting_resume.py and, end to end with processes
killed by SIGKILL, in tests/process/test_restart.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from notetaker.bot import NotetakerBot, Platform
from notetaker.config import Settings
from notetaker.consent import ConsentStore
from notetaker.fakes import CaptureMeetings, FakeLink
from notetaker.policy import ReconnectPolicy
from notetaker.recovery import Decision, Interrupted, RecoveryPolicy, decide
from notetaker.session import VoiceSession, VoiceState
from notetaker.supervisor import Supervisor

POLICY = RecoveryPolicy(resume_within_s=600)
T0 = 1_700_000_000.0


def meeting(
    meeting_id: int = 1,
    *,
    guild_id: int = 10,
    status: str = "recording",
    down_since: float = T0 + 100,
    text_channel_id: int | None = 30,
) -> Interrupted:
    return Interrupted(
        meeting_id=meeting_id,
        guild_id=guild_id,
        voice_channel_id=20 + meeting_id,
        text_channel_id=text_channel_id,
        started_by=5,
        status=status,
        started_at=T0,
        alive_at=down_since,
    )


# -- the rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "down_s", "members", "action", "words"),
    [
        ("recording", 30, 2, "resume", "down for 30 s and people are still there"),
        ("recording", 600, 1, "resume", "down for 10 min 00 s"),
        ("recording", 601, 3, "finish", "longer than resume_within_s (10 min 00 s)"),
        ("recording", 30, 0, "finish", "nobody is in the voice channel any more"),
        ("recording", 30, None, "finish", "its voice channel is gone"),
        ("transcribing", 5, 4, "finish", "notes were not finished before the bot stopped"),
    ],
)
def test_decide(status: str, down_s: float, members: int | None, action: str, words: str) -> None:
    m = meeting(status=status)
    decision = decide(m, now=m.alive_at + down_s, members=members, policy=POLICY)
    assert decision.action == action
    assert words in decision.why


def test_a_heartbeat_in_the_future_counts_as_no_outage() -> None:
    m = meeting()
    decision = decide(m, now=m.alive_at - 50, members=1, policy=POLICY)
    assert decision == Decision("resume", "the bot was down for 0 s and people are still there")


# -- the bot ----------------------------------------------------------------------------


class Room(Platform):
    """Who is in which voice channel, and what the bot posted."""

    def __init__(self, members: dict[int, list[int] | None]) -> None:
        self.members = members
        self.posted: list[tuple[int, str]] = []
        self.links: list[FakeLink] = []
        self.broken_voice = False

    def open_voice(self, guild_id: int) -> VoiceSession:
        link = FakeLink()
        if self.broken_voice:
            link.fail_opens(4014)  # kicked from the channel: final, no retry
        self.links.append(link)
        return Supervisor(link, ReconnectPolicy(), guild_id=guild_id)

    async def send_message(
        self, channel_id: int, text: str, files: Sequence[Path] = ()
    ) -> int | None:
        self.posted.append((channel_id, text))
        return len(self.posted)

    async def edit_message(self, channel_id: int, message_id: int, text: str) -> None:
        raise NotImplementedError

    async def create_thread(self, channel_id: int, message_id: int, name: str) -> int:
        raise NotImplementedError

    async def set_nickname(self, guild_id: int, nickname: str | None) -> bool:
        return True

    def display_name(self, guild_id: int, user_id: int) -> str:
        return f"user{user_id}"

    def voice_members(self, guild_id: int, channel_id: int) -> list[int] | None:
        return self.members.get(channel_id)


def make_bot(tmp_path: Path, room: Room, left_over: list[Interrupted]) -> NotetakerBot:
    settings = Settings(data_dir=tmp_path, recording_nickname_prefix="")
    meetings = CaptureMeetings(left_over=left_over)
    consent = ConsentStore(tmp_path / "consent.sqlite3")
    return NotetakerBot(room, settings, consent=consent, meetings=meetings)


async def test_a_meeting_with_people_still_there_is_rejoined_and_goes_on(
    tmp_path: Path,
) -> None:
    m = meeting(down_since=T0 + 100)
    room = Room({m.voice_channel_id: [7, 8]})
    bot = make_bot(tmp_path, room, [m])
    decisions = await bot.recover(now=lambda: T0 + 130)
    assert [d.action for d in decisions] == ["resume"]
    state = bot.guilds[m.guild_id]
    assert state.session is not None and state.session.state is VoiceState.CONNECTED
    assert state.session.channel_id == m.voice_channel_id
    assert state.meeting is not None and state.meeting.meeting_id == m.meeting_id
    assert getattr(state.meeting, "resumed", False)
    assert state.text_channel_id == m.text_channel_id
    (told,) = room.posted
    assert told[0] == m.text_channel_id
    assert f"recording of meeting {m.meeting_id} goes on" in told[1]
    assert "bot restarted" in told[1]
    meetings = bot.meetings
    assert isinstance(meetings, CaptureMeetings) and meetings.finished_interrupted == []
    await state.session.disconnect(force=True)


async def test_a_meeting_everyone_left_is_finished_and_its_notes_posted(tmp_path: Path) -> None:
    m = meeting()
    room = Room({m.voice_channel_id: []})
    bot = make_bot(tmp_path, room, [m])
    decisions = await bot.recover(now=lambda: T0 + 130)
    assert decisions == [Decision("finish", "nobody is in the voice channel any more")]
    assert bot.guilds.get(m.guild_id) is None or bot.guilds[m.guild_id].session is None
    assert room.links == []  # never tried to join
    texts = [text for channel, text in room.posted if channel == m.text_channel_id]
    assert len(texts) == 2, room.posted
    assert "does not go on: nobody is in the voice channel any more" in texts[0]
    assert texts[1] == f"notes of interrupted meeting {m.meeting_id}: {decisions[0].why}"


async def test_a_rejoin_that_fails_finishes_the_meeting_instead(tmp_path: Path) -> None:
    m = meeting()
    room = Room({m.voice_channel_id: [7]})
    room.broken_voice = True
    bot = make_bot(tmp_path, room, [m])
    (decision,) = await bot.recover(now=lambda: T0 + 130)
    assert decision.action == "finish"
    assert decision.why.startswith("rejoining the voice channel failed: ")
    assert bot.guilds[m.guild_id].meeting is None
    assert bot.guilds[m.guild_id].session is None
    meetings = bot.meetings
    assert isinstance(meetings, CaptureMeetings)
    assert meetings.finished_interrupted == [(m.meeting_id, decision.why)]
    assert any("notes of interrupted meeting" in text for _, text in room.posted)


async def test_every_meeting_is_handled_and_those_that_go_on_come_first(tmp_path: Path) -> None:
    old = meeting(1, guild_id=10, status="transcribing")
    live = meeting(2, guild_id=11)
    no_channel = meeting(3, guild_id=12, text_channel_id=None)
    room = Room({live.voice_channel_id: [9], no_channel.voice_channel_id: []})
    bot = make_bot(tmp_path, room, [old, live, no_channel])
    decisions = await bot.recover(now=lambda: T0 + 130)
    assert [d.action for d in decisions] == ["finish", "resume", "finish"]
    meetings = bot.meetings
    assert isinstance(meetings, CaptureMeetings)
    assert [mid for mid, _ in meetings.finished_interrupted] == [1, 3]
    # The resumed meeting's notice went out before either finished meeting's notes.
    first_notes = next(i for i, (_, t) in enumerate(room.posted) if t.startswith("notes of"))
    resumed = next(i for i, (_, t) in enumerate(room.posted) if "goes on" in t)
    assert resumed < first_notes
    assert any("finishing the notes of meeting 1" in t for _, t in room.posted)
    # Meeting 3 has no channel: its notes are written, nothing is posted for it.
    assert not any("meeting 3" in t for _, t in room.posted)
    session = bot.guilds[live.guild_id].session
    assert session is not None
    await session.disconnect(force=True)
