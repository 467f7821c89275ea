"""The backend contract, part 2: voice. /startnotes in a channel with scripted speakers
yields per-speaker audio, /stopnotes stops cleanly, and the policy scenarios behave the
same on every library (transport ``engine``: core's receive engine attached through the
library's VoiceProtocol).

Every wait is on something that happens: a simulator record entry, a session state or
event, a frame reaching the sink.
"""

from __future__ import annotations

from typing import Any

import pytest

from notetaker.session import Reconnected, Resumed, VoiceEvent, VoiceState

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


async def _nth_identify(r: Any, n: int) -> Any:
    """The bot's n-th voice Identify (1-based), waiting for it."""
    bot = r.sim.world.bot.id
    after = 0
    entry = None
    for _ in range(n):
        entry = await r.sim.record.wait_for(
            "voice.identify", timeout=WAIT, after=after, user_id=bot
        )
        after = entry.seq + 1
    return entry


async def _next(sub: Any, kind: type[VoiceEvent]) -> VoiceEvent:
    while True:
        event = await sub.get(WAIT)
        if isinstance(event, kind):
            return event


def _identifies(r: Any) -> list[Any]:
    return r.sim.record.of("voice.identify", user_id=r.sim.world.bot.id)


async def test_startnotes_records_every_speaker_and_stopnotes_posts(running: Any) -> None:
    r = running
    meeting = await _start_notes(r)
    # Consent: announced in the text channel, naming who started it; nickname marked.
    announce = await _message(r, "Recording has started")
    assert "alice" in announce["content"]
    nick = await r.sim.record.wait_for("member.update", user_id=r.sim.world.bot.id, timeout=WAIT)
    assert nick["nick"].startswith("[REC] ")
    ids = {u.id for u in r.speakers}
    await meeting.wait_for_speakers(ids)
    await r.sim.record.wait_for("voice.participant_done", timeout=WAIT)
    bot = r.sim.world.bot.id
    conns = {s.conn_id for s in r.voice.sessions.values() if s.user_id == bot}
    for user in r.speakers:
        await r.sim.record.wait_for("voice.participant_done", timeout=WAIT, user_id=user.id)
        ssrc = next(p.ssrc for p in r.voice.participants if p.user_id == user.id)
        sent = [
            e["seq"]
            for e in r.sim.record.of("voice.rtp_out", ssrc=ssrc, action="sent")
            if e["conn"] in conns
        ]
        await meeting.capture.until(
            lambda u=user.id, s=sent: (
                [f.sequence for f in meeting.capture.by_user()[u]][-1:] == s[-1:]
            ),
            WAIT,
        )
        seqs = [f.sequence for f in meeting.capture.by_user()[user.id]]
        # Every frame the simulator sent the bot reached the meeting, in order: the
        # speakers start after the bot is in the channel with the meeting's sink set.
        receive = r.guild_state().session.stats()["session"]["receive"]
        assert seqs == sent, (receive["users"].get(user.id), meeting.capture.gaps)
        assert all(f.opus for f in meeting.capture.by_user()[user.id])
    assert meeting.capture.gaps == []
    inv = await r.sim.invoke("stopnotes", user=r.organiser)
    await inv.wait(lambda resp: "Stopped recording" in _text(resp), timeout=WAIT)
    await _message(r, "captured meeting")
    assert meeting.finished and r.guild_state().meeting is None
    assert r.sim.world.nicks.get(r.sim.world.bot.id) in (None, "")


async def test_guest_cannot_stop_notes(running: Any) -> None:
    r = running
    await _start_notes(r)
    inv = await r.sim.invoke("stopnotes", user=r.guest)
    assert "not allowed to /stopnotes" in _text(await inv.callback())
    assert r.guild_state().meeting is not None


async def test_optout_drops_a_speaker_at_capture(running: Any) -> None:
    r = running
    meeting = await _start_notes(r)
    bob, carol = r.speakers
    await meeting.wait_for_speakers({bob.id})
    inv = await r.sim.invoke("optout", user=bob)
    assert "deleted" in _text(await inv.callback())
    assert meeting.discarded == [bob.id]
    await meeting.wait_for_speakers({carol.id})
    await r.sim.record.wait_for("voice.participant_done", timeout=WAIT, user_id=bob.id)
    assert bob.id not in meeting.capture.by_user()


@pytest.mark.parametrize("scenario", ["crash-4015"], indirect=True)
async def test_crash_4015_resumes_without_new_identify(running: Any) -> None:
    r = running
    meeting = await _start_notes(r)
    sub = r.guild_state().session.events()
    await _next(sub, Resumed)
    await r.sim.record.wait_for("voice.resumed", timeout=WAIT)
    assert len(_identifies(r)) == 1
    await meeting.wait_for_speakers({u.id for u in r.speakers})
    inv = await r.sim.invoke("notesstatus", user=r.guest)
    assert "resumes: 1" in _text(await inv.callback())
    # The drop is marked in the recording's timeline, so the notes show the hole.
    ((dropped, back),) = meeting.reconnects
    assert back > dropped


@pytest.mark.parametrize("scenario", ["failover"], indirect=True)
async def test_failover_identifies_again_with_the_new_token(running: Any) -> None:
    r = running
    await _start_notes(r)
    failover = await r.sim.record.wait_for("voice.failover", timeout=WAIT)
    second = await _nth_identify(r, 2)
    grant = r.sim.record.of("voice.grant", user_id=r.sim.world.bot.id)[-1]
    assert grant["token"] == failover["token"]  # fingerprints of the new token
    assert second["conn"] != _identifies(r)[0]["conn"]
    await r.guild_state().session.wait_for(VoiceState.CONNECTED, WAIT)


@pytest.mark.parametrize("scenario", ["kick-4014"], indirect=True)
async def test_kick_4014_stops_and_tells_the_channel(running: Any) -> None:
    r = running
    await _start_notes(r)
    meeting = r.meetings.made[-1]
    lost = await _message(r, "Voice connection lost")
    assert "4014" in lost["content"]
    # What was recorded is not lost: the notes are made and posted, then the bot leaves.
    await _message(r, "captured meeting")
    assert meeting.finished and r.guild_state().meeting is None
    assert len(_identifies(r)) == 1


@pytest.mark.parametrize("scenario", ["dave-required-4017"], indirect=True)
async def test_engine_offers_dave_so_4017_does_not_stop_it(running: Any) -> None:
    r = running
    await _start_notes(r)
    (identify,) = _identifies(r)
    assert identify["dave_max"] >= 1
    assert r.guild_state().session.state is VoiceState.CONNECTED


@pytest.mark.parametrize("scenario", ["stale-session-4006"], indirect=True)
async def test_stale_session_4006_gets_a_new_session_from_a_fresh_voice_state(
    running: Any,
) -> None:
    r = running
    await _start_notes(r)
    sub = r.guild_state().session.events()
    await r.sim.record.wait_for("voice.invalidate", timeout=WAIT)
    # The resume with the now-stale token is refused with 4006 ...
    await r.sim.record.wait_for("voice.close", timeout=WAIT, code=4006)
    # ... and the policy starts a new session: op 4 again, then Identify with the new token.
    await _next(sub, Reconnected)
    await _nth_identify(r, 2)
    grants = r.sim.record.of("voice.grant", user_id=r.sim.world.bot.id)
    assert len(grants) >= 3  # first join, the silent invalidation, the fresh voice state
    assert r.guild_state().session.state is VoiceState.CONNECTED
