"""Writing the notes' files: every format, text or picture; one failing costs no other."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from notetaker import meeting
from notetaker.notes.model import build_notes
from notetaker.registry import Registry, RendererSpec
from notetaker.transcript import Segment

NOTES = build_notes(
    title="t",
    started_at=datetime(2026, 12, 1, tzinfo=UTC),
    duration=10.0,
    names={1: "alice"},
    segments=[Segment(1, 0.0, 2.0, "Hello.")],
)


def test_the_built_in_formats_and_the_picture(tmp_path: Path) -> None:
    written = meeting.render_all(NOTES, tmp_path)
    assert sorted(p.name for p in written) == [
        "notes.json",
        "notes.md",
        "notes.srt",
        "notes.vtt",
        "timeline.png",
    ]
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "notes.md").read_text(encoding="utf-8").startswith("---\n")


def test_a_failing_format_is_logged_and_the_others_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(notes: Any) -> str:
        raise RuntimeError("renderer bug")

    renderers: Registry[RendererSpec] = Registry("renderer")
    renderers.add(RendererSpec("broken", "txt", broken))
    renderers.add(RendererSpec("raw", "bin", lambda n: b"\x00\x01", filename="raw.bin"))
    monkeypatch.setattr(meeting.plugins, "load", lambda: SimpleNamespace(renderers=renderers))
    with caplog.at_level(logging.ERROR):
        written = meeting.render_all(NOTES, tmp_path)
    assert [p.name for p in written] == ["raw.bin"]
    assert (tmp_path / "raw.bin").read_bytes() == b"\x00\x01"
    assert not (tmp_path / "notes.txt").exists()
    assert "notes format broken (notes.txt) failed" in caplog.text
