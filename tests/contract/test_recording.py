"""A reconnect in the middle of a meeting, with the production recorder: the same tracks
continue (one per speaker), the gap is marked in the timeline, and the meeting still
ends in notes."""

from __future__ import annotations

from typing import Any

import av
import pytest

from notetaker.recorder.index import MeetingIndex
from notetaker.session import Reconnected, Resumed, VoiceEvent

WAIT = 30.0


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


async def _next(sub: Any, kinds: tuple[type[VoiceEvent], ...]) -> VoiceEvent:
    while True:
        event = await sub.get(WAIT)
        if isinstance(event, kinds):
            return event


@pytest.mark.parametrize("meeting_kind", ["recorded"], indirect=True)
@pytest.mark.parametrize("speakers", [5.0], indirect=True)
@pytest.mark.parametrize("scenario", ["crash-4015", "failover"], indirect=True)
async def test_reconnect_keeps_one_track_per_speaker_with_a_marked_gap(
    running: Any, settings: Any
) -> None:
    r = running
    inv = await r.sim.invoke("startnotes", user=r.organiser)
    await inv.wait(lambda resp: "Recording in" in _text(resp), timeout=WAIT)
    meeting = r.guild_state().meeting
    sub = r.guild_state().session.events()
    await _next(sub, (Resumed, Reconnected))
    for user in r.speakers:
        await r.sim.record.wait_for("voice.participant_done", timeout=WAIT, user_id=user.id)
    inv = await r.sim.invoke("stopnotes", user=r.organiser)
    await r.sim.record.wait_for(
        "message", lambda e: any(name == "notes.md" for name, _ in e.get("files", [])), timeout=60
    )
    index = MeetingIndex.open(settings.data_dir)
    try:
        recorded = index.get_meeting(meeting.meeting_id)
    finally:
        index.close()
    assert recorded.status == "done"
    assert recorded.channel_name == r.sim.world.voice_channel.name  # for display; paths use ids
    assert sorted(t.user_id for t in recorded.tracks) == sorted(u.id for u in r.speakers)
    assert len({t.path for t in recorded.tracks}) == len(r.speakers)  # continued, not new files
    # The gap is marked: one reconnect event, inside the meeting, whose count is how long
    # the connection was down (a new TLS handshake cannot be 0 ms), and every speaker's
    # track is re-anchored for it once audio comes back.
    (reconnect,) = [e for e in recorded.events if e.kind == "reconnect"]
    (close,) = [e for e in recorded.events if e.kind == "close"]
    assert reconnect.at_ms is not None and close.at_ms is not None
    assert 0 < reconnect.at_ms < close.at_ms
    assert reconnect.count > 0
    reanchored = {
        e.user_id: e.at_ms
        for e in recorded.events
        if e.kind == "reanchor" and e.detail == "reconnect"
    }
    assert sorted(reanchored) == sorted(u.id for u in r.speakers)
    assert all(at is not None and at >= reconnect.at_ms for at in reanchored.values())
    for track in recorded.tracks:
        with av.open(str(track.path)) as container:
            seconds = sum(f.samples for f in container.decode(audio=0)) / 48_000
        assert seconds > 4.0  # both sides of the drop are in the one file
