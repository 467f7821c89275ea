"""One small meeting's notes that the summarizer tests share: four lines, two speakers,
ten seconds of bob's audio lost between his lines (a hole the numbering skips)."""

from __future__ import annotations

from datetime import UTC, datetime

from notetaker.notes.model import MissingSpan, build_notes
from notetaker.transcript import Segment

NOTES = build_notes(
    title="Release",
    started_at=datetime(2026, 12, 1, 15, 0, tzinfo=UTC),
    duration=300.0,
    names={1: "alice", 2: "bob"},
    segments=[
        Segment(1, 5.0, 9.0, "Let's ship on Friday."),
        Segment(2, 70.0, 74.0, "I'll draft the release notes by Thursday."),
        Segment(1, 130.0, 133.0, "Friday it is."),
        Segment(2, 190.0, 195.0, "Someone should book the demo room, and tell support?"),
    ],
    missing=[MissingSpan(2, 100.0, 110.0, "loss")],
)
