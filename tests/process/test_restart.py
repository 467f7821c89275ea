"""Restart recovery on real processes: ``notetaker run`` killed with SIGKILL mid-meeting
and started again, as a container's ``restart: unless-stopped`` does.

With people still in the voice channel the new process rejoins and the same meeting goes
on (same tracks, same clock, the outage marked ``bot restarted``); when everyone left
while it was down, it posts the notes of what was recorded, saying where they were cut
short.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from notetaker.recorder.index import MeetingIndex
from notetaker.recorder.ogg_read import TrackReader

speech = pytest.importorskip("notetaker_transcribe.speech", reason="needs notetaker-transcribe")
pytest.importorskip("av", reason="needs discordsim[media]")

BEFORE = {
    "bob": "The release is ready for testing this week.",
    "carol": "Please send the test results to the whole team.",
}
AFTER = ("bob", "We will meet again on Friday morning to decide.")


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


def _wav(path: Path, text: str) -> Path:
    import wave

    pcm, rate = speech.speak(text)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


async def _ready(sim: Any) -> None:
    """Until a bot process is on the gateway with its commands registered."""
    gid, bot = sim.world.guild_id, sim.world.bot.id

    def ready(_: object = None) -> bool:
        connected = sim.gateway.connection_of(bot) is not None
        return connected and all(sim.commands.find(n, gid) for n in ("startnotes", "stopnotes"))

    if not ready():
        await sim.record.wait_for(None, ready, timeout=120)


async def _message(sim: Any, needle: str) -> dict[str, Any]:
    event: dict[str, Any] = await sim.record.wait_for(
        "message", lambda e: needle in (e.get("content") or ""), timeout=180
    )
    return event


async def _record_and_kill(box: Any, launch: Any, sim: Any, specs: list[Any]) -> None:
    """Start a meeting with captions, wait until every speaker's words are transcribed
    (their captions are posted, so their audio and segments are on disk), then SIGKILL."""
    async with launch(box.bot_env(sim)) as bot:
        await _ready(sim)
        inv = await sim.invoke("startnotes", user=box.organiser, options={"captions": True})
        await inv.wait(lambda r: "Recording in" in _text(r), timeout=120)
        for spec in specs:
            await _message(sim, f"] {spec.name}:")
        bot.proc.send_signal(signal.SIGKILL)
        assert await bot.exit_code() == -signal.SIGKILL


def _speakers(box: Any) -> list[Any]:
    from discordsim.voice.participants import ParticipantSpec

    specs = []
    for at, (name, text) in enumerate(BEFORE.items()):
        box.world.add_user(name)
        path = _wav(box.tmp / f"{name}.wav", text)
        specs.append(ParticipantSpec(name, path, speak_after=0.5 + 4.0 * at))
    return specs


async def _notes_posted(sim: Any) -> None:
    def notes(e: dict[str, Any]) -> bool:
        return any(name == "notes.md" for name, _ in e.get("files") or ())

    await sim.record.wait_for("message", notes, timeout=180)


def _heard(index: MeetingIndex, meeting_id: int, text: str) -> bool:
    heard = " ".join(s.text for s in index.segments(meeting_id)).lower()
    words = speech.normalise_words(text)
    return sum(w in heard for w in words) >= len(words) // 2


async def test_killed_mid_meeting_the_bot_rejoins_and_the_same_meeting_goes_on(
    box: Any, launch: Any
) -> None:
    from discordsim.app import Simulator
    from discordsim.voice.participants import ParticipantSpec, prepare
    from discordsim.voice.server import VoiceServer

    specs = _speakers(box)
    after_path = _wav(box.tmp / "after.wav", AFTER[1])
    async with (
        Simulator(box.world, lifetime=400) as sim,
        VoiceServer(
            sim.world, "modern", record=sim.record, tls=box.ca, max_lifetime_s=400
        ) as voice,
    ):
        participants = {spec.name: voice.add_participant(spec) for spec in specs}
        await _record_and_kill(box, launch, sim, specs)

        async with launch(box.bot_env(sim)) as bot:
            told = await _message(sim, "goes on")
            assert "recording of meeting 1 goes on" in told["content"]
            # The same member says more, now that the bot is back.
            slots = prepare(ParticipantSpec(AFTER[0], after_path))
            await participants[AFTER[0]].speak(slots)
            inv = await sim.invoke("stopnotes", user=box.organiser)
            await inv.wait(lambda r: "Stopped recording meeting 1" in _text(r), timeout=120)
            await _notes_posted(sim)
            bot.signal(signal.SIGTERM)
            assert await bot.exit_code() == 0, bot.output
        assert "Traceback" not in bot.output

    data = Path(box.env["NOTETAKER_DATA_DIR"])
    index = MeetingIndex.open(data)
    try:
        (meeting,) = index.list_meetings()
        assert meeting.status == "done"
        full = index.get_meeting(meeting.id)
        (restart,) = [e for e in full.events if e.kind == "restart"]
        assert restart.detail == "bot restarted" and restart.count > 0
        for text in [*BEFORE.values(), AFTER[1]]:
            assert _heard(index, meeting.id, text), (text, index.segments(meeting.id))
        bob = next(s.user_id for s in full.speakers if s.display_name == "bob")
        after = [s for s in index.segments(meeting.id) if s.user_id == bob]
        # What bob said after the restart lies after the outage on the meeting clock.
        assert max(s.start for s in after) * 1000 >= restart.at_ms + restart.count - 1000
        # One file per speaker, one stream: it reads through the outage to the end.
        (bob_track,) = [t for t in full.tracks if t.user_id == bob]
        packets = list(TrackReader(bob_track.path).packets())
        assert packets[-1].end * 1000 // 48_000 >= restart.at_ms + restart.count
        assert len(list(bob_track.path.parent.glob(f"{bob}*.opus"))) == 1
    finally:
        index.close()
    notes = (data / "meetings" / str(meeting.id) / "notes" / "notes.md").read_text()
    assert "bot restarted" in notes


async def test_killed_and_everyone_left_the_notes_of_what_was_recorded_are_posted(
    box: Any, launch: Any
) -> None:
    from discordsim.app import Simulator
    from discordsim.voice.server import VoiceServer

    specs = _speakers(box)
    async with (
        Simulator(box.world, lifetime=400) as sim,
        VoiceServer(
            sim.world, "modern", record=sim.record, tls=box.ca, max_lifetime_s=400
        ) as voice,
    ):
        participants = [voice.add_participant(spec) for spec in specs]
        await _record_and_kill(box, launch, sim, specs)
        # While the bot is down the meeting ends: everyone leaves the voice channel.
        for participant in participants:
            await voice.participant_leave(participant)
        sim.world.voice_states.pop(box.organiser.id, None)
        selects = len(sim.record.of("voice.select"))

        async with launch(box.bot_env(sim)) as bot:
            said = await _message(sim, "does not go on")
            assert "nobody is in the voice channel any more" in said["content"]
            await _notes_posted(sim)
            bot.signal(signal.SIGTERM)
            assert await bot.exit_code() == 0, bot.output
        assert "Traceback" not in bot.output
        # It never went back into the channel.
        assert len(sim.record.of("voice.select")) == selects

    data = Path(box.env["NOTETAKER_DATA_DIR"])
    index = MeetingIndex.open(data)
    try:
        (meeting,) = index.list_meetings()
        assert meeting.status == "done"
        # It stopped where the dead process stopped, not when the notes were made.
        assert meeting.stopped_at is not None and meeting.alive_at is not None
        assert meeting.stopped_at <= meeting.alive_at + 5
        for text in BEFORE.values():
            assert _heard(index, meeting.id, text)
        full = index.get_meeting(meeting.id)
        assert all(t.ended_ms is not None for t in full.tracks)
        assert any(e.kind == "close" and e.detail == "bot restarted" for e in full.events)
    finally:
        index.close()
    notes = (data / "meetings" / str(meeting.id) / "notes" / "notes.md").read_text()
    assert "The recording was cut short at [" in notes
    assert "nobody is in the voice channel any more" in notes
