from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from notetaker import plugins
from notetaker.notes import MissingSpan, build_notes
from notetaker.notes.render import (
    clock,
    render_json,
    render_markdown,
    render_srt,
    render_vtt,
    strip_front_matter,
)
from notetaker.transcript import Segment

ALICE, BOB, CAROL = 11, 22, 33
NAMES = {ALICE: "Alice", BOB: "Bob", CAROL: "Carol"}
SEGMENTS = [
    Segment(BOB, 4.0, 7.5, "The budget review moves to Thursday afternoon."),
    Segment(ALICE, 0.5, 3.0, "Good morning, let's start with the budget."),
    Segment(ALICE, 725.0, 730.0, "Back again: the budget numbers for Thursday are final."),
    Segment(CAROL, 9.0, 10.0, "Sounds good."),
    Segment(BOB, 12.0, 12.5, "   "),
]
MISSING = [
    MissingSpan(ALICE, 723.0, 740.0, "reconnect"),
    MissingSpan(ALICE, 740.2, 740.4, "reconnect"),  # merges into the span above
    MissingSpan(BOB, 30.0, 30.02, "loss"),
    MissingSpan(BOB, 50.0, 50.04, "loss"),
    MissingSpan(CAROL, 100.0, 103.0, "decrypt"),
]


def _notes():  # type: ignore[no-untyped-def]
    return build_notes(
        title="Meeting notes — Meeting Room",
        started_at=datetime(2026, 11, 24, 14, 0, tzinfo=UTC),
        duration=760.0,
        names=NAMES,
        segments=SEGMENTS,
        missing=MISSING,
        opted_out=["Dave"],
        summary_lines=2,
    )


def test_timeline_is_merged_in_order_with_holes_inline() -> None:
    notes = _notes()
    starts = [ln.start for ln in notes.lines]
    assert starts == sorted(starts)
    assert [ln.name for ln in notes.lines if ln.missing is None] == [
        "Alice",
        "Bob",
        "Carol",
        "Alice",
    ]
    holes = [ln.missing for ln in notes.lines if ln.missing is not None]
    assert [(h.user_id, h.start, h.end, h.reason) for h in holes] == [
        (CAROL, 100.0, 103.0, "decrypt"),
        (ALICE, 723.0, 740.4, "reconnect"),
    ]


def test_markdown_has_every_section_and_inline_gap_markers() -> None:
    md = render_markdown(_notes())
    for heading in (
        "# Meeting notes",
        "## Participants",
        "## Summary",
        "## Coverage",
        "## Transcript",
    ):
        assert heading in md
    assert "[00:00] Alice: Good morning, let's start with the budget." in md
    assert "[audio missing 12:03-12:20, Alice: reconnect]" in md
    assert "[audio missing 01:40-01:43, Carol: decrypt failures]" in md
    assert "Opted out (not recorded): Dave" in md
    assert "Extractive" in md and "Nothing here was generated" in md
    assert re.search(r"Bob: audio missing 2 short drop\(s\), 0\.1 s in all", md)
    talk = {m[0]: m[1] for m in re.findall(r"- (\w+) — talk time (\d\d:\d\d)", md)}
    assert talk == {"Alice": "00:07", "Bob": "00:03", "Carol": "00:01"}


def test_summary_quotes_transcript_lines_verbatim_and_skips_fillers() -> None:
    notes = _notes()
    transcript = {ln.text for ln in notes.lines if ln.missing is None}
    assert len(notes.summary) == 2
    assert all(ln.text in transcript for ln in notes.summary)
    assert all(ln.text != "Sounds good." for ln in notes.summary)


def test_srt_and_vtt_cues() -> None:
    notes = _notes()
    srt = render_srt(notes)
    assert srt.startswith("1\n00:00:00,500 --> 00:00:03,000\nAlice: Good morning")
    assert srt.count(" --> ") == len(notes.lines)
    vtt = render_vtt(notes)
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:03.000\n<v Alice>Good morning")
    assert "12:03:00" not in vtt and "00:12:03.000 --> 00:12:20.400" in vtt


def test_json_round_trips_the_structure() -> None:
    data = json.loads(render_json(_notes()))
    assert data["summary"]["method"] == "extractive"
    assert [p["name"] for p in data["participants"]] == ["Alice", "Bob", "Carol"]
    assert {"user_id": str(ALICE), "start": 723.0, "end": 740.4, "reason": "reconnect"} in data[
        "missing"
    ]
    assert data["opted_out"] == ["Dave"]


def test_empty_meeting_renders_honestly() -> None:
    notes = build_notes(
        title="t",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration=5.0,
        names={ALICE: "Alice"},
        segments=[],
    )
    md = render_markdown(notes)
    assert "nothing to summarise" in md and "Complete: no audio is missing" in md


@pytest.mark.parametrize(
    ("secs", "text"), [(0, "00:00"), (59.9, "00:59"), (725, "12:05"), (3725, "1:02:05")]
)
def test_clock(secs: float, text: str) -> None:
    assert clock(secs) == text


def test_builtin_renderers_are_registered_through_the_hook() -> None:
    # notetaker_register_renderers, implemented by notetaker.notes.plugin (core's entry point)
    found = plugins.load()
    assert {"markdown", "srt", "vtt", "json"} <= set(found.renderers.names())
    md = found.renderers.get("markdown")
    assert md is not None and "\n# Meeting notes" in md.render(_notes())


def test_front_matter_reads_back_as_yaml_for_a_notes_vault() -> None:
    import yaml

    notes = build_notes(
        title='Meeting notes — "Standup": café (meeting 7)',
        started_at=datetime(2026, 11, 24, 14, 0, tzinfo=UTC),
        duration=760.4,
        names=NAMES,
        segments=SEGMENTS,
        missing=[],
        meta={"meeting_id": "7", "guild_id": "900", "channel": "Dev: #1", "channel_id": "901"},
    )
    md = render_markdown(notes)
    assert md.startswith("---\n")
    _, head, body = md.split("---\n", 2)
    assert yaml.safe_load(head) == {
        "title": 'Meeting notes — "Standup": café (meeting 7)',
        "date": "2026-11-24T14:00:00Z",
        "duration": clock(760.4),
        "duration_s": 760,
        "participants": ["Alice", "Bob", "Carol"],
        "meeting_id": "7",
        "guild_id": "900",
        "channel": "Dev: #1",
        "channel_id": "901",
    }
    assert body.startswith("# Meeting notes")
    # The chat message carries the notes without it.
    assert strip_front_matter(md) == body
    assert strip_front_matter(body) == body
