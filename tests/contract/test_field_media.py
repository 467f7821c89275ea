"""The backend contract, field media (field-behaviours.md M3, op5-late), on every backend
with transport ``engine``: RTP padding, padding-only packets where speech stops, and a
speaker's first packets before the op 5 that names them cost a meeting no audio.

From the first frame the meeting received, every audio frame the simulator sent the bot
must be there, in order, with no gap: padding-only packets hold sequence numbers of
their own, and a receiver that played them, or counted them as lost or as decrypt
failures, fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

WAIT = 20.0


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


def _sent_to_bot(r: Any, user_id: int, *kinds: str) -> list[int]:
    bot = r.sim.world.bot.id
    conns = {s.conn_id for s in r.voice.sessions.values() if s.user_id == bot}
    ssrc = next(p.ssrc for p in r.voice.participants if p.user_id == user_id)
    return [
        e["seq"]
        for e in r.sim.record.of("voice.rtp_out", ssrc=ssrc, action="sent")
        if e["conn"] in conns and e.get("what") in kinds
    ]


async def _meeting_of_every_speaker(r: Any) -> Any:
    inv = await r.sim.invoke("startnotes", user=r.organiser)
    await inv.wait(lambda resp: "Recording in" in _text(resp), timeout=WAIT)
    meeting = r.meetings.made[-1]
    await meeting.wait_for_speakers({u.id for u in r.speakers})
    for user in r.speakers:
        await r.sim.record.wait_for("voice.participant_done", timeout=WAIT, user_id=user.id)
    return meeting


async def _assert_no_audio_lost(r: Any, meeting: Any) -> None:
    for user in r.speakers:
        sent = _sent_to_bot(r, user.id, "audio", "padded")

        def complete(user_id: int = user.id, sent: list[int] = sent) -> bool:
            got = [f.sequence for f in meeting.capture.by_user().get(user_id, [])]
            return bool(got) and got[-1] == sent[-1]

        await meeting.capture.until(complete, WAIT)
        got = [f.sequence for f in meeting.capture.by_user()[user.id]]
        assert got == sent[sent.index(got[0]) :]
        assert all(f.opus for f in meeting.capture.by_user()[user.id])
    assert meeting.capture.gaps == []


@pytest.mark.parametrize("scenario", ["padding"], indirect=True)
async def test_padding_costs_a_meeting_no_audio(running: Any) -> None:
    r = running
    meeting = await _meeting_of_every_speaker(r)
    for user in r.speakers:
        # Each speaker's speech ended in a burst of padding-only packets.
        assert len(_sent_to_bot(r, user.id, "padding-only")) == r.voice.scenario.padding_burst
    await _assert_no_audio_lost(r, meeting)
    receive = r.guild_state().session.stats()["session"]["receive"]
    assert receive["ignored"].get("padding_only", 0) >= 1
    assert not [k for k in receive["dropped"] if k.startswith("dave")]


@pytest.mark.parametrize("scenario", ["op5-late"], indirect=True)
async def test_packets_before_op5_cost_a_meeting_no_audio(running: Any) -> None:
    r = running
    meeting = await _meeting_of_every_speaker(r)
    late = {e["user_id"] for e in r.sim.record.of("voice.op5_late")}
    assert late == {u.id for u in r.speakers}
    await _assert_no_audio_lost(r, meeting)
