"""`notetaker meetings / transcribe / export / delete` on a meeting recorded on disk with
the real recorder and real Opus, as a user runs them."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest
from click.testing import CliRunner
from recorded_meeting import ALICE, BOB, record_meeting

from notetaker.cli import cli
from notetaker.recorder import DataLayout


def _record(data: Path, seconds: float = 2.0) -> int:
    """A two-speaker meeting, recorded and closed, before any transcript."""
    return record_meeting(data, seconds, started_at=time.time(), lines=())


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(__import__("os").environ):
        if key.startswith("NOTETAKER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTETAKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NOTETAKER_MODEL", "tiny.en")
    return tmp_path / "data"


def test_meetings_lists_a_recorded_meeting(data: Path) -> None:
    meeting_id = _record(data)
    out = CliRunner().invoke(cli, ["meetings"])
    assert out.exit_code == 0, out.output
    (line,) = out.output.splitlines()
    assert line.split()[0] == str(meeting_id) and "recording" in line


def test_transcribe_writes_the_notes_and_marks_it_done(data: Path) -> None:
    pytest.importorskip("notetaker_transcribe", reason="the transcriber plugin is not installed")
    meeting_id = _record(data)
    out = CliRunner().invoke(cli, ["transcribe", str(meeting_id)])
    assert out.exit_code == 0, out.output
    notes = DataLayout(data).meeting_dir(meeting_id) / "notes"
    assert f"wrote {notes / 'notes.md'}" in out.output
    markdown = (notes / "notes.md").read_text()
    assert "alice" in markdown and "bob" in markdown  # participants by name, not id
    assert "standup" in markdown
    assert "done" in CliRunner().invoke(cli, ["meetings", "--status", "done"]).output


def test_export_writes_a_mix_and_each_track(data: Path, tmp_path: Path) -> None:
    meeting_id = _record(data)
    out_dir = tmp_path / "export"
    out = CliRunner().invoke(cli, ["export", str(meeting_id), "-o", str(out_dir)])
    assert out.exit_code == 0, out.output
    files = sorted(p.name for p in out_dir.iterdir())
    # Tracks named for their speakers, in the order they joined.
    assert files == [f"1-alice-{ALICE}.opus", f"2-bob-{BOB}.opus", f"meeting-{meeting_id}-mix.opus"]
    with av.open(str(out_dir / f"meeting-{meeting_id}-mix.opus")) as mix:
        seconds = sum(f.samples for f in mix.decode(audio=0)) / 48_000
    assert abs(seconds - 2.0) <= 0.04


def test_delete_removes_audio_and_rows(data: Path) -> None:
    meeting_id = _record(data)
    folder = DataLayout(data).meeting_dir(meeting_id)
    assert folder.is_dir()
    out = CliRunner().invoke(cli, ["delete", str(meeting_id), "--yes"])
    assert out.exit_code == 0, out.output
    assert not folder.exists()
    assert CliRunner().invoke(cli, ["meetings"]).output.strip() == "no meetings"
    again = CliRunner().invoke(cli, ["delete", str(meeting_id), "--yes"])
    assert again.exit_code == 2 and f"no meeting {meeting_id}" in again.output
