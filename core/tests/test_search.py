"""Full-text search over the transcripts in the session index (recorder/search.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from notetaker.errors import SearchError
from notetaker.recorder import MeetingIndex
from notetaker.recorder.search import NO_FTS5, match_expression, search
from notetaker.transcript import Segment

DAY = 86_400.0
NOW = 1_800_000_000.0
ALICE, BOB, CAROL = 101, 102, 103


def meeting(
    index: MeetingIndex,
    guild: int,
    started_at: float,
    lines: list[tuple[int, float, str]],
    names: dict[int, str],
) -> int:
    mid = index.create_meeting(
        guild_id=guild,
        channel_id=guild + 1,
        started_by=ALICE,
        started_at=started_at,
        channel_name=f"room-{guild}",
    )
    for uid, name in names.items():
        index.add_speaker(mid, uid, name)
    for uid, start, text in lines:
        index.add_segments(mid, 1, [Segment(uid, start, start + 2, text)])
    return mid


@pytest.fixture
def index(tmp_path: Path) -> MeetingIndex:
    idx = MeetingIndex.open(tmp_path)
    names = {ALICE: "Alice", BOB: "bob"}
    idx.first = meeting(  # type: ignore[attr-defined]
        idx,
        10,
        NOW - 3 * DAY,
        [
            (ALICE, 5.0, "We decided to move the budget review to Friday."),
            (BOB, 65.0, "I will draft the budget before then."),
        ],
        names,
    )
    idx.second = meeting(  # type: ignore[attr-defined]
        idx,
        10,
        NOW,
        [(BOB, 12.0, "The budget is approved."), (ALICE, 30.0, "Lunch is at noon.")],
        names,
    )
    idx.other_guild = meeting(  # type: ignore[attr-defined]
        idx, 20, NOW, [(CAROL, 3.0, "Our budget is secret.")], {CAROL: "carol"}
    )
    return idx


def texts(hits: list) -> set[str]:  # type: ignore[type-arg]
    return {h.text for h in hits}


def test_finds_lines_across_meetings_with_who_and_when(index: MeetingIndex) -> None:
    hits = index.search("budget", guild_id=10)
    assert texts(hits) == {
        "We decided to move the budget review to Friday.",
        "I will draft the budget before then.",
        "The budget is approved.",
    }
    draft = next(h for h in hits if h.text.startswith("I will"))
    assert (draft.meeting_id, draft.speaker, draft.start_s) == (index.first, "bob", 65.0)  # type: ignore[attr-defined]
    assert draft.channel_name == "room-10" and draft.started_at == NOW - 3 * DAY
    assert draft.marked == "I will draft the **budget** before then."


def test_another_guilds_meetings_are_never_returned(index: MeetingIndex) -> None:
    assert all(h.guild_id == 10 for h in index.search("budget", guild_id=10))
    assert texts(index.search("secret", guild_id=10)) == set()
    assert texts(index.search("secret", guild_id=20)) == {"Our budget is secret."}
    assert len(index.search("budget")) == 4  # no guild: the operator's CLI sees all


def test_by_speaker_name_any_case_or_id_and_by_date(index: MeetingIndex) -> None:
    assert texts(index.search("budget", speaker="ALICE")) == {
        "We decided to move the budget review to Friday."
    }
    assert texts(index.search("budget", speaker=str(BOB))) == {
        "I will draft the budget before then.",
        "The budget is approved.",
    }
    assert texts(index.search("budget", guild_id=10, since=NOW - DAY)) == {
        "The budget is approved."
    }


def test_every_word_must_match_stems_and_prefixes_work(index: MeetingIndex) -> None:
    assert texts(index.search("budget friday")) == {
        "We decided to move the budget review to Friday."
    }
    assert texts(index.search("decide")) == {"We decided to move the budget review to Friday."}
    assert texts(index.search("appr*")) == {"The budget is approved."}
    assert texts(index.search('"budget is"')) == {
        "The budget is approved.",
        "Our budget is secret.",
    }


@pytest.mark.parametrize(
    "query",
    ["budget AND", "NOT budget", "budget-review", 'bud"get', "budget:", "(budget", "NEAR(budget"],
)
def test_what_a_user_types_is_never_fts_syntax(index: MeetingIndex, query: str) -> None:
    index.search(query)  # no sqlite3.OperationalError: every term is quoted


@pytest.mark.parametrize("query", ["", "   ", "?!", '""', "*"])
def test_nothing_to_search_for_is_a_clear_error(index: MeetingIndex, query: str) -> None:
    with pytest.raises(SearchError, match="Give a word to search for"):
        index.search(query)


def test_match_expression_quotes_each_term() -> None:
    assert match_expression('Budget "next week" appr* OR') == '"Budget" "next week" "appr"* "OR"'


def test_deleted_lines_leave_the_search(index: MeetingIndex) -> None:
    index.delete_segments(index.second, BOB)  # type: ignore[attr-defined]  # an opt-out
    assert "The budget is approved." not in texts(index.search("budget"))
    index.delete_meeting(index.first)  # type: ignore[attr-defined]
    assert texts(index.search("budget", guild_id=10)) == set()


def test_only_the_current_transcript_run_is_searched(index: MeetingIndex) -> None:
    mid = index.second  # type: ignore[attr-defined]
    run = index.new_run(mid)
    index.add_segments(mid, run, [Segment(BOB, 12.0, 14.0, "The budget was rejected.")])
    # while the re-transcription runs, the notes (and search) still use run 1
    assert "The budget was rejected." not in texts(index.search("budget"))
    index.use_run(mid, run)
    found = texts(index.search("budget", guild_id=10))
    assert "The budget was rejected." in found and "The budget is approved." not in found


def test_an_index_from_before_search_is_indexed_when_opened(tmp_path: Path) -> None:
    idx = MeetingIndex.open(tmp_path)
    meeting(idx, 10, NOW, [(ALICE, 1.0, "Old line about budgets.")], {ALICE: "Alice"})
    idx.close()
    db = sqlite3.connect(tmp_path / "notetaker.sqlite3")
    for name in ("segments_fts_insert", "segments_fts_delete", "segments_fts_update"):
        db.execute(f"DROP TRIGGER {name}")
    db.execute("DROP TABLE segments_fts")
    db.commit()
    assert search_raises_no_fts(db)
    db.close()
    again = MeetingIndex.open(tmp_path)
    assert texts(again.search("budget")) == {"Old line about budgets."}


def search_raises_no_fts(db: sqlite3.Connection) -> bool:
    with pytest.raises(SearchError) as caught:
        search(db, "budget")
    return str(caught.value) == NO_FTS5
