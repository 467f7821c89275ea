"""``notetaker demo``: a whole meeting on loopback — no token, no Discord, no internet.

Scripted members speak lines made with espeak-ng at run time into the simulator's
voice channel; the bot runs on the configured backend and transport exactly as it
would against Discord, with the real recorder, transcriber and notes. The only
difference from production is where the library connects (the simulator on 127.0.0.1,
trusted through a throwaway test CA).

Run it with ``python demo/notetaker_demo.py`` (``--help`` for options). Settings come
from the environment as usual (``NOTETAKER_BACKEND``, ``NOTETAKER_TRANSPORT``,
``NOTETAKER_MODEL``...); the default is discord.py, the receive engine and Whisper
``base`` from the shipped model packages.

:func:`run_meeting` is also what the end-to-end test drives (tests/e2e).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Offline before anything imports the Hugging Face hub client, which reads it once:
# the shipped models need no download, and nothing else may try one.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Discord's MANAGE_GUILD permission bit: what the default config requires for /startnotes.
MANAGE_GUILD = 1 << 5
#: Seconds to wait for any one thing the meeting needs (a reply, a message, a speaker).
WAIT = 60.0
#: Generous bound on /stopnotes -> notes (on the live path it takes seconds; a slow
#: machine may still be working through a backlog).
NOTES_WAIT = 600.0


#: How the bot's message starts when it could not produce the notes.
FAILED = "I could not produce the notes"


class DemoError(Exception):
    """The meeting ran but produced no notes; the message says why."""


@dataclass(frozen=True)
class Line:
    """One turn of the scripted meeting."""

    speaker: str
    text: str


#: The demo's meeting: three speakers, each with their own vocabulary.
SCRIPT: tuple[Line, ...] = (
    Line("bob", "Good morning everyone. Let us start with the project update."),
    Line("carol", "Thank you Bob. The new release is ready for testing this week."),
    Line("dave", "The budget looks fine to me. We have enough money for two more servers."),
    Line("bob", "Great news. We need to finish the report before the end of the month."),
    Line("carol", "I will send the test results to the whole team on Friday."),
    Line("dave", "Then I will order the servers on Monday morning."),
)

#: espeak-ng voices, one per speaker, so that they sound different.
VOICES: dict[str, str] = {"bob": "en-us", "carol": "en-gb", "dave": "en-us+m3"}

#: Who runs /startnotes and /stopnotes: a member with Manage Server, in the voice channel.
ORGANISER = "alice"


@dataclass(frozen=True)
class Speaker:
    """A scripted speaker's audio and what they say in it."""

    name: str
    path: Path
    join_at: float  #: seconds after the bot's voice session goes live
    said: str


@dataclass
class Outcome:
    """What one demo meeting produced, for the narration and for the tests."""

    meeting_id: int
    notes_dir: Path
    markdown: str
    message: Any  #: the simulator's record entry of the notes message
    progress: list[str]  #: followups on /stopnotes while the transcript is finished
    speakers: dict[str, int]  #: speaker name -> user id, of those who were recorded
    all_speakers: dict[str, int]  #: every scripted speaker, opted out or not
    status: str  #: the meeting's status in the session index
    timings: dict[str, float]
    captions: list[str] = field(default_factory=list)  #: caption lines, in posting order
    caption_thread: int | None = None  #: the captions thread's channel id
    rate_limited: int = 0  #: 429s the simulator answered the bot


def prepare_speech(
    folder: Path, script: Sequence[Line] = SCRIPT, voices: dict[str, str] | None = None
) -> list[Speaker]:
    """Synthesise each speaker's turns into an Ogg Opus file, timed as a conversation."""
    from notetaker_transcribe.speech import MeetingLine, make_meeting

    folder.mkdir(parents=True, exist_ok=True)
    meeting = make_meeting(
        folder, [MeetingLine(ln.speaker, ln.text) for ln in script], voices or VOICES
    )
    return [
        Speaker(name, track.path, meeting.offsets[name], meeting.said_by(name))
        for name, track in meeting.tracks.items()
    ]


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


async def run_meeting(
    settings: Any,
    speakers: Sequence[Speaker],
    *,
    say: Callable[[str], None] = lambda _: None,
    scenario: str = "modern",
    captions: bool = True,
    language: str | None = None,
    opt_out: Sequence[str] = (),
) -> Outcome:
    """Simulator + voice server + the configured bot; /startnotes, talk, /stopnotes, notes.

    ``opt_out`` names speakers who run /optout before the meeting starts.
    """
    from discordsim.app import Simulator
    from discordsim.tls import TestCA
    from discordsim.voice.participants import ParticipantSpec
    from discordsim.voice.server import VoiceServer
    from discordsim.world import VoiceStateRec, World
    from notetaker import plugins
    from notetaker.recorder.index import MeetingIndex
    from notetaker.recorder.paths import DataLayout

    timings: dict[str, float] = {}
    world = World.default()
    organiser = world.user(ORGANISER)
    organisers = world.add_role("organisers", MANAGE_GUILD)
    world.give_role(organiser, organisers)
    world.voice_states[organiser.id] = VoiceStateRec(
        organiser.id, world.voice_channel.id, "organiser-session"
    )
    for s in speakers:
        world.add_user(s.name)
    backend_spec = plugins.load().backend(settings.backend)
    helper = importlib.import_module(f"discordsim.testing.{settings.backend}")
    ca = TestCA()
    caption_lines: list[str] = []
    thread: list[int] = []
    async with (
        Simulator(world, lifetime=NOTES_WAIT + 300) as sim,
        VoiceServer(world, scenario, record=sim.record, tls=ca, max_lifetime_s=None) as voice,
    ):
        for s in speakers:
            # Each track starts with a second of silence, so the speech falls well after
            # /startnotes has put the recorder in place.
            voice.add_participant(ParticipantSpec(s.name, s.path, join_at=s.join_at, speak_after=0))
        backend = backend_spec.factory(settings, voice_ssl=ca.client_context())
        say(
            f"Bot: {backend.kit.distribution} {backend.kit.version}, transport "
            f"{settings.transport}, transcriber {settings.transcriber} ({settings.model})"
        )
        async with helper.logged_in(sim, backend.client):
            watcher: asyncio.Task[None] | None = None
            try:
                await sim.wait_command("startnotes", timeout=WAIT)
                say(f"Simulated Discord on {sim.base_url}; the bot is logged in.")
                for name in opt_out:
                    inv = await sim.invoke("optout", user=world.user(name))
                    reply = await inv.wait(lambda r: "opted out" in _text(r), timeout=WAIT)
                    say(f"{name}: /optout -> {_text(reply)}")
                started = time.monotonic()
                options: dict[str, object] = {"captions": captions}
                if language:
                    options["language"] = language
                inv = await sim.invoke("startnotes", user=organiser, options=options)
                reply = await inv.wait(lambda r: "Recording in" in _text(r), timeout=WAIT)
                say(f"{ORGANISER}: /startnotes {_options(options)} -> {_text(reply)}")
                if captions:
                    watcher = asyncio.create_task(
                        _follow_captions(sim, world.text_channel.id, thread, caption_lines, say)
                    )
                ids = {s.name: world.user(s.name).id for s in speakers}
                say(f"{', '.join(ids)} are talking…")
                for name, uid in ids.items():
                    await sim.record.wait_for("voice.participant_done", timeout=WAIT, user_id=uid)
                    say(f"  {name} has finished.")
                timings["meeting_s"] = time.monotonic() - started
                stopped = time.monotonic()
                after = len(sim.record)
                inv = await sim.invoke("stopnotes", user=organiser)
                reply = await inv.wait(lambda r: "Stopped recording" in _text(r), timeout=WAIT)
                say(f"{ORGANISER}: /stopnotes -> {_text(reply)}")
                message = await sim.record.wait_for(
                    "message",
                    lambda e: bool(e.get("files")) or FAILED in (e.get("content") or ""),
                    timeout=NOTES_WAIT,
                    after=after,
                    channel_id=world.text_channel.id,
                )
                if not message.get("files"):
                    raise DemoError(message["content"])
                timings["notes_s"] = time.monotonic() - stopped
                say(f"The notes were posted {timings['notes_s']:.1f} s after /stopnotes.")
                progress = [_text(r) for r in inv.responses if _text(r).startswith("Finishing the")]
            finally:
                if watcher is not None:
                    watcher.cancel()
                await backend.close()
        rate_limited = len(sim.record.of("rest.rate_limited"))
    meeting_id = _meeting_id(_text(reply))
    index = MeetingIndex.open(settings.data_dir)
    try:
        status = index.get_meeting(meeting_id).status
    finally:
        index.close()
    notes_dir = DataLayout(settings.data_dir).meeting_dir(meeting_id) / "notes"
    return Outcome(
        meeting_id=meeting_id,
        notes_dir=notes_dir,
        markdown=(notes_dir / "notes.md").read_text(encoding="utf-8"),
        message=message,
        progress=progress,
        speakers={name: uid for name, uid in ids.items() if name not in opt_out},
        all_speakers=ids,
        status=status,
        timings=timings,
        captions=caption_lines,
        caption_thread=thread[0] if thread else None,
        rate_limited=rate_limited,
    )


def _options(options: dict[str, object]) -> str:
    return " ".join(
        f"{k}:{str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()
    )


async def _follow_captions(
    sim: Any, channel_id: int, thread: list[int], lines: list[str], say: Callable[[str], None]
) -> None:
    """Print the captions thread's messages as the bot posts them."""
    created = await sim.record.wait_for("thread.create", timeout=WAIT, parent_id=channel_id)
    thread.append(int(created["id"]))
    say(f"The bot opened the thread {created['name']!r} for live captions.")
    after = created.seq
    while True:
        entry = await sim.record.wait_for(
            "message", timeout=NOTES_WAIT, after=after + 1, channel_id=thread[0]
        )
        after = entry.seq
        for text in str(entry.get("content") or "").splitlines():
            lines.append(text)
            say(f"  caption: {text}")


def _meeting_id(stopped_reply: str) -> int:
    # "Stopped recording meeting 1; finishing the notes."
    word = stopped_reply.split("meeting", 1)[1].split(";", 1)[0]
    return int(word.strip())


def demo_settings(data_dir: Path | None) -> Any:
    """The configured settings (environment, as for ``notetaker run``) for a demo run."""
    from notetaker import plugins
    from notetaker.config import Settings

    overrides: dict[str, Any] = {}
    installed = plugins.load().backends.names()
    if "NOTETAKER_BACKEND" not in os.environ and len(installed) == 1:
        # Not configured: the one backend installed here, whatever the default is.
        overrides["backend"] = installed[0]
    if data_dir is not None or "NOTETAKER_DATA_DIR" not in os.environ:
        overrides["data_dir"] = data_dir or Path(tempfile.mkdtemp(prefix="notetaker-demo-"))
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A scripted meeting against the Discord simulator: "
        "/startnotes, three speakers, /stopnotes, the notes."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the meeting and its notes go (default: NOTETAKER_DATA_DIR, else a new "
        "temporary folder that is kept)",
    )
    parser.add_argument("--scenario", default="modern", help="the voice server's scenario")
    parser.add_argument(
        "--no-captions", action="store_true", help="do not ask for live captions in a thread"
    )
    parser.add_argument(
        "--language", default=None, help="/startnotes language: (a code such as en, or auto)"
    )
    args = parser.parse_args(argv)

    from notetaker.errors import NotetakerError
    from notetaker_transcribe.speech import tools_available

    if not tools_available():
        print("The demo needs espeak-ng and ffmpeg on PATH.", file=sys.stderr)
        return 2
    settings = demo_settings(args.data_dir)
    # The bot's warnings and errors reach the terminal, as under ``notetaker run``.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)

    say(f"Speaking the script with espeak-ng into {settings.data_dir / 'demo-speech'}")
    speakers = prepare_speech(settings.data_dir / "demo-speech")
    try:
        outcome = asyncio.run(
            run_meeting(
                settings,
                speakers,
                say=say,
                scenario=args.scenario,
                captions=not args.no_captions,
                language=args.language,
            )
        )
    except DemoError as exc:
        say(f"bot: {exc}")
        return 1
    except NotetakerError as exc:  # not installed, misconfigured: a sentence, no traceback
        print(f"notetaker demo: {exc}", file=sys.stderr)
        return 2
    for line in outcome.progress:
        say(f"bot: {line}")
    files = ", ".join(name for name, _ in outcome.message["files"])
    say(f"The bot posted the notes in #general with {files}.")
    print()
    print(outcome.markdown)
    print(f"Notes: {outcome.notes_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
