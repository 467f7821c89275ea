"""The backend contract for the live path's options: /startnotes language: reaches the
meeting, a bad one is refused in a sentence, and captions:true opens a thread under the
recording announcement that the meeting's captions are posted in."""

from __future__ import annotations

from typing import Any

from notetaker.live.captions import CaptionLine

WAIT = 30.0
EPHEMERAL = 1 << 6


def _text(response: Any) -> str:
    data = response.json.get("data", response.json)
    return str(data.get("content") or "")


async def test_the_meeting_gets_the_language_asked_for(running: Any) -> None:
    inv = await running.sim.invoke("startnotes", user=running.organiser, options={"language": "DE"})
    reply = await inv.wait(lambda r: "Recording in" in _text(r), timeout=WAIT)
    assert "in de" in _text(reply)
    (meeting,) = running.meetings.made
    assert meeting.language == "de"


async def test_without_a_language_the_meeting_detects_it(running: Any) -> None:
    inv = await running.sim.invoke("startnotes", user=running.organiser)
    await inv.wait(lambda r: "Recording in" in _text(r), timeout=WAIT)
    (meeting,) = running.meetings.made
    assert meeting.language is None  # the config's default, auto


async def test_an_unknown_language_is_refused_before_anything_is_recorded(running: Any) -> None:
    inv = await running.sim.invoke(
        "startnotes", user=running.organiser, options={"language": "klingon"}
    )
    answer = await inv.wait(lambda r: "unknown language" in _text(r), timeout=WAIT)
    assert "en, de" in _text(answer)
    assert running.meetings.made is None
    assert running.guild_state().meeting is None


async def test_captions_go_to_a_thread_under_the_announcement(running: Any) -> None:
    sim = running.sim
    channel = sim.world.text_channel.id
    inv = await sim.invoke("startnotes", user=running.organiser, options={"captions": True})
    reply = await inv.wait(lambda r: "Recording in" in _text(r), timeout=WAIT)
    assert "live captions in the thread" in _text(reply)
    thread = await sim.record.wait_for("thread.create", timeout=WAIT, parent_id=channel)
    (announcement,) = [
        m
        for m in sim.record.of("message", channel_id=channel, via="channel")
        if "Recording has started" in m["content"]
    ]
    # The thread hangs off the announcement (on Discord a thread's id is its starter's).
    assert int(thread["message_id"]) == int(announcement["id"]) == int(thread["id"])
    (meeting,) = running.meetings.made
    assert meeting.captions is not None
    meeting.captions([CaptionLine(61.0, 5, "bob", "hello there", 0.0)])
    posted = await sim.record.wait_for("message", timeout=WAIT, channel_id=int(thread["id"]))
    assert posted["content"] == "[01:01] bob: hello there"
    after = len(sim.record)
    await sim.invoke("stopnotes", user=running.organiser)
    # The notes go out once the captions are stopped.
    await sim.record.wait_for(
        "message",
        lambda m: "captured meeting" in m["content"],
        timeout=WAIT,
        after=after,
        channel_id=channel,
    )
    assert running.guild_state().captions is None
