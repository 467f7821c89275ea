"""timeline.png: lanes and gap colours from the notes' own data, drawn as a real PNG."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from PIL import Image

from notetaker.notes.model import MissingSpan, build_notes
from notetaker.notes.picture import (
    OTHER_COLOUR,
    REASON_COLOURS,
    SPEECH_COLOUR,
    lanes,
    render_png,
)
from notetaker.notes.render import render_markdown
from notetaker.transcript import Segment

ALICE, BOB = 1, 2


def notes_with(missing: list[MissingSpan], opted_out: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return build_notes(
        title="Standup",
        started_at=datetime(2026, 12, 1, 15, 0, tzinfo=UTC),
        duration=120.0,
        names={ALICE: "alice", BOB: "bob"},
        segments=[
            Segment(ALICE, 1.0, 20.0, "Good morning."),
            Segment(BOB, 25.0, 50.0, "The release is ready."),
            Segment(ALICE, 60.0, 90.0, "Ship it."),
        ],
        missing=missing,
        opted_out=opted_out,
    )


def rgb(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def colours_in(png: bytes) -> set[tuple[int, int, int]]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return {c[:3] for _, c in image.convert("RGBA").getcolors(maxcolors=1 << 20)}


SPANS = [
    MissingSpan(ALICE, 30.0, 40.0, "loss"),
    MissingSpan(BOB, 55.0, 58.0, "decrypt"),
    MissingSpan(ALICE, 95.0, 100.0, "reconnect"),
    MissingSpan(BOB, 95.0, 100.0, "reconnect"),
    MissingSpan(BOB, 100.0, 110.0, "restart"),
    MissingSpan(ALICE, 60.0, 90.0, "transcription"),
    MissingSpan(BOB, 110.0, 120.0, "disk full"),
]


def test_lanes_are_the_coverage_sections_data() -> None:
    notes = notes_with(SPANS)
    rows = lanes(notes)
    assert [r.name for r in rows] == [p.name for p in notes.participants]
    for row in rows:
        assert row.missing == tuple(s for s in notes.missing if s.user_id == row.user_id)
        said = [(ln.start, ln.end) for ln in notes.lines if ln.user_id == row.user_id and ln.text]
        assert list(row.speech) == said
    # and the Markdown's coverage section names the same spans
    coverage = render_markdown(notes).split("## Coverage")[1].split("## Transcript")[0]
    assert "packet loss" in coverage and "bot restarted" in coverage


def test_every_cause_present_is_drawn_in_its_colour_and_no_other() -> None:
    drawn = colours_in(render_png(notes_with(SPANS)))
    assert rgb(SPEECH_COLOUR) in drawn
    for colour in [*REASON_COLOURS.values(), OTHER_COLOUR]:
        assert rgb(colour) in drawn, colour


@pytest.mark.parametrize("reason", sorted(REASON_COLOURS))
def test_a_cause_that_did_not_happen_is_not_drawn(reason: str) -> None:
    others = [s for s in SPANS if s.reason != reason]
    drawn = colours_in(render_png(notes_with(others)))
    assert rgb(REASON_COLOURS[reason]) not in drawn


def test_a_complete_meeting_is_speech_only() -> None:
    drawn = colours_in(render_png(notes_with([])))
    assert rgb(SPEECH_COLOUR) in drawn
    assert not {rgb(c) for c in [*REASON_COLOURS.values(), OTHER_COLOUR]} & drawn


def test_opted_out_members_have_no_lane() -> None:
    notes = notes_with([], opted_out=("carol",))
    assert [r.name for r in lanes(notes)] == ["alice", "bob"]
    assert render_png(notes)[:8] == b"\x89PNG\r\n\x1a\n"
