"""`notetaker search` over a data directory's session index, as an operator runs it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from notetaker.cli import cli
from notetaker.recorder import MeetingIndex
from notetaker.transcript import Segment

ALICE, BOB = 11, 12
DEC_1 = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC).timestamp()
NOV_3 = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC).timestamp()


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("NOTETAKER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTETAKER_DATA_DIR", str(tmp_path / "data"))
    index = MeetingIndex.open(tmp_path / "data")
    for started, guild, lines in (
        (NOV_3, 5, [(ALICE, 75.0, "The release slips a week.")]),
        (DEC_1, 5, [(BOB, 3661.0, "Release notes are done."), (ALICE, 2.0, "Hello all.")]),
        (DEC_1, 9, [(BOB, 1.0, "Another server's release.")]),
    ):
        mid = index.create_meeting(
            guild_id=guild,
            channel_id=6,
            started_by=ALICE,
            started_at=started,
            channel_name="standup",
        )
        index.add_speaker(mid, ALICE, "alice")
        index.add_speaker(mid, BOB, "bob")
        index.add_segments(mid, 1, [Segment(u, s, s + 2, t) for u, s, t in lines])
    index.close()
    return tmp_path / "data"


def run(*args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["search", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_prints_meeting_date_clock_speaker_and_line(data: Path) -> None:
    out = run("release", "--guild", "5")
    assert sorted(out) == [
        "meeting 1    2026-11-03  #standup  [01:15] alice: The release slips a week.",
        "meeting 2    2026-12-01  #standup  [1:01:01] bob: Release notes are done.",
    ]


def test_filters_by_speaker_and_date(data: Path) -> None:
    assert run("release", "--speaker", "BOB", "--guild", "5") == [
        "meeting 2    2026-12-01  #standup  [1:01:01] bob: Release notes are done."
    ]
    assert len(run("release", "--since", "2026-12-01")) == 2  # both servers
    assert run("release", "--since", "2026-12-02") == ["no matches"]


def test_a_query_of_punctuation_is_one_line_and_status_2(data: Path) -> None:
    result = CliRunner().invoke(cli, ["search", "?!"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: Give a word to search for, e.g. /notessearch query:budget"
    )


def test_a_bad_date_is_explained(data: Path) -> None:
    result = CliRunner().invoke(cli, ["search", "release", "--since", "yesterday"])
    assert result.exit_code == 2
    assert "'yesterday' does not match the format '%Y-%m-%d'" in result.output
