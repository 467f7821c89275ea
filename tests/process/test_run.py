"""``notetaker run`` as a real process: a rejected token, Discord unreachable at start,
and SIGTERM in the middle of a meeting.

Each test starts the bot the way a user's container does and talks to it only through
the simulator (slash commands, the text channel) and signals.
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from notetaker.recorder.index import MeetingIndex
from notetaker.recorder.ogg_read import TrackReader

speech = pytest.importorskip("notetaker_transcribe.speech", reason="needs notetaker-transcribe")
pytest.importorskip("av", reason="needs discordsim[media]")

LINES = {
    "bob": "The release is ready for testing this week.",
    "carol": "Please send the test results to the whole team.",
}


async def _commands_registered(sim: Any, *names: str) -> None:
    """Until the bot (in its own process) is on the gateway and has registered ``names``."""
    gid, bot = sim.world.guild_id, sim.world.bot.id

    def ready(_: object = None) -> bool:
        connected = sim.gateway.connection_of(bot) is not None
        return connected and all(sim.commands.find(n, gid) for n in names)

    # Every connect, gateway op and command sync is recorded: each entry is a moment to
    # look again.
    if not ready():
        await sim.record.wait_for(None, ready, timeout=120)


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


def _ended(track: Path) -> bool:
    """Whether the Ogg stream's last page carries the end-of-stream flag."""
    data = track.read_bytes()
    last = data.rfind(b"OggS")
    return last >= 0 and bool(data[last + 5] & 0x04)


async def test_a_rejected_token_is_one_sentence_and_exit_code_2(box: Any, launch: Any) -> None:
    from discordsim.app import Simulator

    async with Simulator(box.world, lifetime=120) as sim:
        bad = "MTIz.bad.token-that-discord-does-not-know"
        async with launch(box.bot_env(sim, NOTETAKER_TOKEN=bad)) as bot:
            assert await bot.exit_code() == 2
    errors = [ln for ln in bot.lines if ln.startswith("error:")]
    assert len(errors) == 1 and "Discord rejected the bot token" in errors[0], bot.output
    assert "Traceback" not in bot.output
    assert bad not in bot.output


async def test_the_bot_waits_for_an_unreachable_discord_and_connects_when_it_is_up(
    box: Any, launch: Any
) -> None:
    from discordsim.app import Simulator

    with socket.socket() as s:  # a port nobody listens on, until the simulator takes it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sim = Simulator(box.world, port=port, lifetime=180)
    env = box.bot_env(
        api_base=sim.api_base,
        NOTETAKER_DISCORD_GATEWAY_URL=sim.gateway_url,
        NOTETAKER_TOKEN=sim.token,
    )
    async with launch(env) as bot:
        tries = await bot.wait_for_line("Discord is unreachable at", count=2)
        assert all(f"127.0.0.1:{port}" in ln for ln in tries), tries
        async with sim:
            await _commands_registered(sim, "startnotes", "notesstatus")
            inv = await sim.invoke("notesstatus", user=box.organiser)
            reply = await inv.callback(timeout=60)
            assert "no notes are being taken" in _text(reply)
            bot.signal(signal.SIGTERM)
            assert await bot.exit_code() == 0
    assert "Traceback" not in bot.output


async def test_sigterm_mid_meeting_posts_the_notes_and_exits_0(box: Any, launch: Any) -> None:
    from discordsim.app import Simulator
    from discordsim.voice.participants import ParticipantSpec
    from discordsim.voice.server import VoiceServer

    specs = []
    for at, (name, text) in enumerate(LINES.items()):
        pcm, rate = speech.speak(text)
        path = box.tmp / f"{name}.wav"
        _wav(path, pcm, rate)
        box.world.add_user(name)
        specs.append(ParticipantSpec(name, path, speak_after=0.5 + 4.0 * at))
    async with (
        Simulator(box.world, lifetime=300) as sim,
        VoiceServer(
            sim.world, "modern", record=sim.record, tls=box.ca, max_lifetime_s=300
        ) as voice,
    ):
        for spec in specs:
            voice.add_participant(spec)
        async with launch(box.bot_env(sim)) as bot:
            await _commands_registered(sim, "startnotes", "stopnotes")
            inv = await sim.invoke("startnotes", user=box.organiser)
            await inv.wait(lambda r: "Recording in" in _text(r), timeout=120)
            for spec in specs:
                user = sim.world.user(spec.name)
                await sim.record.wait_for("voice.participant_done", timeout=120, user_id=user.id)
            bot.signal(signal.SIGTERM)
            assert await bot.exit_code() == 0, bot.output
        posted = [m for m in sim.messages if m.channel_id == sim.world.text_channel.id]
    texts = [m.content for m in posted]
    assert any("The bot is shutting down" in t for t in texts), texts
    notes = [m for m in posted if any(a.filename == "notes.md" for a in m.attachments)]
    assert len(notes) == 1, texts
    assert "Traceback" not in bot.output

    data = Path(box.env["NOTETAKER_DATA_DIR"])
    index = MeetingIndex.open(data)
    try:
        (meeting,) = index.list_meetings()
        assert meeting.status == "done"
        heard = " ".join(s.text for s in index.segments(meeting.id)).lower()
        for text in LINES.values():
            words = speech.normalise_words(text)
            found = sum(w in heard for w in words)
            assert found >= len(words) // 2, (text, heard)
        for track in index.get_meeting(meeting.id).tracks:
            assert _ended(track.path), f"{track.path} has no end-of-stream page"
            assert any(True for _ in TrackReader(track.path).packets())
    finally:
        index.close()
    notes_json = data / "meetings" / str(meeting.id) / "notes" / "notes.json"
    assert json.loads(notes_json.read_text(encoding="utf-8"))["participants"]


def _wav(path: Path, pcm: bytes, rate: int) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
