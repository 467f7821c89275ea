"""The backend contract, part 4: the bot's life around its meetings, on every library.

A lost voice connection whose notes fail still resets the session; a graceful shutdown
tells the channel and posts the notes, or says they come later when the grace runs out;
``discord_api_base`` / ``discord_gateway_url`` reach the library's own knobs; a refused
privileged intent and the library's login errors become notetaker's errors in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import types
from pathlib import Path
from typing import Any

import pytest

from notetaker.errors import DiscordUnreachable, IntentsRefused, TokenRejected
from notetaker.session import VoiceState

BACKEND = os.environ.get("NOTETAKER_TEST_BACKEND")
WAIT = 20.0


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


async def _start_notes(r: Any) -> Any:
    inv = await r.sim.invoke("startnotes", user=r.organiser)
    await inv.wait(lambda resp: "Recording in" in _text(resp), timeout=WAIT)
    return r.meetings.made[-1]


async def _message(r: Any, needle: str) -> Any:
    return await r.sim.record.wait_for(
        "message", lambda e: needle in (e.get("content") or ""), timeout=WAIT
    )


@pytest.mark.parametrize("scenario", ["kick-4014"], indirect=True)
async def test_notes_that_fail_after_a_lost_connection_still_reset_the_session(
    running: Any,
) -> None:
    r = running
    r.meetings.fail_finish = OSError(28, "No space left on device")
    await _start_notes(r)
    await _message(r, "Voice connection lost")
    failed = await _message(r, "I could not produce the notes")
    assert "ref " in failed["content"] and "No space left" not in failed["content"]
    state = r.guild_state()
    if state.session is not None:  # the reset follows the notes' failure
        await r.sim.record.wait_for(None, lambda _: state.session is None, timeout=WAIT)
    # The guild is usable again: a new session joins.
    inv = await r.sim.invoke("joinvoice", user=r.organiser)
    await inv.wait(lambda resp: "Joined" in _text(resp), timeout=WAIT)
    assert state.session is not None and state.session.state is VoiceState.CONNECTED


async def test_shutdown_tells_the_channel_and_posts_the_notes(running: Any) -> None:
    r = running
    meeting = await _start_notes(r)
    assert await r.backend.shutdown(5.0) == []
    told = await _message(r, "The bot is shutting down")
    assert f"meeting {meeting.meeting_id}" in told["content"]
    await _message(r, "captured meeting")
    assert meeting.finished and r.guild_state().meeting is None


async def test_shutdown_past_the_grace_says_the_notes_come_at_the_next_start(
    running: Any,
) -> None:
    r = running
    r.meetings.hold_finish = asyncio.Event()  # never set: transcription outlasts the grace
    meeting = await _start_notes(r)
    assert await r.backend.shutdown(0.2) == [meeting.meeting_id]
    late = await _message(r, "could not be finished before the bot stopped")
    assert f"notetaker transcribe {meeting.meeting_id}" in late["content"]
    assert not meeting.finished


@pytest.mark.parametrize("speakers", [10.0], indirect=True)  # speaking through the drop
@pytest.mark.parametrize(
    ("code", "how"), [(4000, "close"), (None, "op 7")], ids=["closed 4000", "op 7 reconnect"]
)
async def test_the_main_gateway_dropping_mid_meeting_is_resumed_and_recording_goes_on(
    running: Any, code: int | None, how: str
) -> None:
    r = running
    meeting = await _start_notes(r)
    ids = [u.id for u in r.speakers]
    await meeting.wait_for_speakers(ids, timeout=WAIT)
    bot = r.sim.world.bot.id
    conn = r.sim.gateway.connection_of(bot)
    assert conn is not None
    mark = len(r.sim.record)
    if code is not None:
        await r.sim.gateway.close(conn, code, b"Unknown error")
    else:
        await r.sim.gateway.request_reconnect(bot)
    await r.sim.record.wait_for("gateway.resumed", timeout=WAIT, after=mark)
    # The voice connection is the voice gateway's: it carries on, and every speaker is
    # still heard after the main gateway came back.
    heard = {uid: len(frames) for uid, frames in meeting.capture.by_user().items()}
    await meeting.capture.until(
        lambda: all(len(meeting.capture.by_user().get(u, ())) > heard[u] + 25 for u in ids), WAIT
    )
    session = r.guild_state().session
    assert session.state is VoiceState.CONNECTED and session.stats().get("reconnects", 0) == 0
    inv = await r.sim.invoke("stopnotes", user=r.organiser)
    await inv.wait(lambda resp: "Stopped recording" in _text(resp), timeout=WAIT)
    await _message(r, "captured meeting")


# -- login, endpoints, intents ---------------------------------------------------------


@contextlib.asynccontextmanager
async def _started(backend: Any, token: str) -> Any:
    """``backend.start`` in a task, as ``notetaker run`` runs it; closed on the way out."""
    task = asyncio.create_task(backend.start(token))
    try:
        yield task
    finally:
        await backend.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@contextlib.contextmanager
def _library_defaults_restored() -> Any:
    """The endpoint knobs are process-wide class attributes: point them somewhere dead
    for the test (so only the settings can make the bot reach the simulator) and put the
    library's values back afterwards."""
    helper = importlib.import_module(f"discordsim.testing.{BACKEND}")
    dead = types.SimpleNamespace(
        base_url="http://127.0.0.1:9",
        api_base="http://127.0.0.1:9/api/v10",
        gateway_url="ws://127.0.0.1:9/gateway",
    )
    with helper.point_at(dead):
        yield


def _settings(tmp_path: Path, **extra: Any) -> Any:
    from notetaker.config import Settings

    return Settings(
        backend=BACKEND or "", data_dir=tmp_path / "data", guild_ready_timeout_s=0.05, **extra
    )


async def test_the_api_base_and_gateway_settings_take_the_bot_to_that_server(
    tmp_path: Path,
) -> None:
    from discordsim.app import Simulator
    from notetaker import plugins
    from notetaker.fakes import CaptureMeetings

    spec = plugins.load().backend(BACKEND or "")
    async with Simulator(lifetime=120) as sim:
        organiser = sim.world.user("alice")
        with _library_defaults_restored():
            settings = _settings(
                tmp_path, discord_api_base=sim.api_base, discord_gateway_url=sim.gateway_url
            )
            backend = spec.factory(settings, meetings=CaptureMeetings())
            async with _started(backend, sim.token):
                await _registered(sim, "notesstatus")
                inv = await sim.invoke("notesstatus", user=organiser)
                answer = await inv.callback(timeout=WAIT)
                assert "Not in a voice channel" in _text(answer)
    assert sim.record.of("gateway.op", op=2), "the bot never identified on the simulator"


async def _registered(sim: Any, *names: str) -> None:
    """Until the bot is on the gateway and has registered ``names`` (each record entry is
    a moment to look again)."""
    gid, bot = sim.world.guild_id, sim.world.bot.id

    def ready(_: object = None) -> bool:
        connected = sim.gateway.connection_of(bot) is not None
        return connected and all(sim.commands.find(n, gid) for n in names)

    if not ready():
        await sim.record.wait_for(None, ready, timeout=60)


async def test_a_refused_privileged_intent_is_named_with_where_to_enable_it(
    tmp_path: Path,
) -> None:
    from discordsim.app import Simulator
    from notetaker import plugins
    from notetaker.fakes import CaptureMeetings

    spec = plugins.load().backend(BACKEND or "")
    async with Simulator(lifetime=120) as sim:  # no privileged intent enabled, as new apps
        with _library_defaults_restored():
            settings = _settings(
                tmp_path,
                discord_api_base=sim.api_base,
                discord_gateway_url=sim.gateway_url,
                members_intent=True,
            )
            backend = spec.factory(settings, meetings=CaptureMeetings())
            async with _started(backend, sim.token) as task:
                with pytest.raises(IntentsRefused) as refused:
                    async with asyncio.timeout(60):
                        await task
    assert refused.value.intents == ("members",)
    assert "Server Members Intent" in str(refused.value)
    assert "discord.com/developers/applications" in str(refused.value)
    assert sim.record.of("gateway.intents_refused")


async def test_the_members_intent_connects_when_the_application_has_it(
    tmp_path: Path,
) -> None:
    from discordsim.app import Simulator
    from notetaker import plugins
    from notetaker.fakes import CaptureMeetings

    spec = plugins.load().backend(BACKEND or "")
    async with Simulator(lifetime=120, privileged_intents=frozenset({"members"})) as sim:
        with _library_defaults_restored():
            settings = _settings(
                tmp_path,
                discord_api_base=sim.api_base,
                discord_gateway_url=sim.gateway_url,
                members_intent=True,
            )
            backend = spec.factory(settings, meetings=CaptureMeetings())
            async with _started(backend, sim.token):
                await _registered(sim, "notesstatus")
                inv = await sim.invoke("notesstatus", user=sim.world.user("alice"))
                assert "Not in a voice channel" in _text(await inv.callback(timeout=WAIT))
    assert not sim.record.of("gateway.intents_refused")


async def test_the_librarys_login_errors_are_translated_in_one_place(tmp_path: Path) -> None:
    from notetaker import plugins
    from notetaker.fakes import CaptureMeetings

    spec = plugins.load().backend(BACKEND or "")
    backend = spec.factory(_settings(tmp_path), meetings=CaptureMeetings())
    kit = backend.kit  # (async: py-cord makes its client on a running loop)

    def http_error(status: int) -> BaseException:
        response = types.SimpleNamespace(status=status, reason="Service Unavailable")
        return kit.http_exception(response, "oops")

    assert isinstance(backend.translate_error(kit.login_failure("bad")), TokenRejected)
    assert isinstance(backend.translate_error(http_error(401)), TokenRejected)
    assert isinstance(backend.translate_error(http_error(503)), DiscordUnreachable)
    assert backend.translate_error(http_error(403)) is None
    assert isinstance(backend.translate_error(kit.gateway_not_found()), DiscordUnreachable)
    assert isinstance(backend.translate_error(kit.intents_required(None)), IntentsRefused)
    assert isinstance(backend.translate_error(ConnectionRefusedError(111, "x")), DiscordUnreachable)
    assert backend.translate_error(ValueError("a bug")) is None


# -- restart recovery ---------------------------------------------------------------------


def _interrupted(r: Any, meeting_id: int, down_s: float) -> Any:
    import time

    from notetaker.recovery import Interrupted

    world = r.sim.world
    now = time.time()
    return Interrupted(
        meeting_id=meeting_id,
        guild_id=world.guild_id,
        voice_channel_id=world.voice_channel.id,
        text_channel_id=world.text_channel.id,
        started_by=r.organiser.id,
        status="recording",
        started_at=now - 60 - down_s,
        alive_at=now - down_s,
    )


async def test_the_library_tells_who_is_in_a_voice_channel(running: Any) -> None:
    r = running
    world = r.sim.world
    members = r.bot.platform.voice_members(world.guild_id, world.voice_channel.id)
    assert members is not None and r.organiser.id in members
    assert r.outsider.id not in members
    inv = await r.sim.invoke("joinvoice", user=r.organiser)
    await inv.wait(lambda resp: "Joined" in _text(resp), timeout=WAIT)
    members = r.bot.platform.voice_members(world.guild_id, world.voice_channel.id)
    assert members is not None and world.bot.id not in members
    assert r.bot.platform.voice_members(world.guild_id, world.text_channel.id + 999) is None


async def test_a_meeting_left_recording_is_rejoined_and_records_again(running: Any) -> None:
    r = running
    r.meetings.left_over = [_interrupted(r, 41, down_s=20)]
    (decision,) = await r.bot.recover()
    assert decision.action == "resume", decision
    told = await _message(r, "goes on")
    assert "meeting 41" in told["content"]
    meeting = r.meetings.made[-1]
    assert meeting.resumed and meeting.meeting_id == 41
    assert r.guild_state().meeting is meeting
    await meeting.wait_for_speakers([u.id for u in r.speakers])
    # It is an ordinary meeting from here: /stopnotes ends it.
    inv = await r.sim.invoke("stopnotes", user=r.organiser)
    await inv.wait(lambda resp: "Stopped recording meeting 41" in _text(resp), timeout=WAIT)
    await _message(r, "captured meeting 41")


async def test_a_meeting_interrupted_too_long_ago_is_finished_not_rejoined(running: Any) -> None:
    r = running
    r.meetings.left_over = [_interrupted(r, 42, down_s=3600)]
    (decision,) = await r.bot.recover()
    assert decision.action == "finish" and "longer than resume_within_s" in decision.why
    await _message(r, "meeting 42 does not go on")
    await _message(r, "notes of interrupted meeting 42")
    state = r.guild_state()
    assert state is None or state.session is None


async def test_a_track_that_stops_is_told_in_the_channel_and_recording_goes_on(
    running: Any,
) -> None:
    r = running
    meeting = await _start_notes(r)
    # What the real meeting hands over when a speaker's track stops (a full disk).
    meeting.failures("Recording of bob stopped at [00:03]: the disk is full.")
    told = await _message(r, "Recording of bob stopped")
    assert told["channel_id"] == r.sim.world.text_channel.id
    assert r.guild_state().meeting is meeting
    await meeting.wait_for_speakers([u.id for u in r.speakers])


class _Records(logging.Handler):
    """The runtime's log records, with an event set by the first that matches."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle, self.seen = needle, asyncio.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.needle in record.getMessage():
            self.seen.set()


@pytest.mark.parametrize("closing", [False, True], ids=["running", "shutting-down"])
async def test_an_event_handler_that_raises_goes_to_the_log_not_stderr(
    running: Any, closing: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """nextcord syncs commands in its own on_connect: a connection closed under it at
    shutdown used to print the library's 'Ignoring exception' traceback."""
    client = running.backend.client

    async def on_notetaker_probe() -> None:
        raise OSError("Server disconnected")

    client.on_notetaker_probe = on_notetaker_probe
    records = _Records("notetaker_probe")
    logger = logging.getLogger("notetaker.runtime")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        running.backend._closing = closing
        client.dispatch("notetaker_probe")
        await asyncio.wait_for(records.seen.wait(), WAIT)
    finally:
        running.backend._closing = False
        logger.setLevel(level)
        logger.removeHandler(records)
    (record,) = [r for r in records.records if "notetaker_probe" in r.getMessage()]
    if closing:
        assert record.levelno == logging.INFO and record.exc_info is None
        assert "Server disconnected" in record.getMessage()
    else:
        assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "Ignoring exception" not in capsys.readouterr().err
