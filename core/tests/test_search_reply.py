"""The /notessearch answer: one Discord message, never over the limit."""

from __future__ import annotations

from notetaker.commands import MESSAGE_LIMIT
from notetaker.recorder.search import SearchHit
from notetaker.search_reply import MAX_LINE_CHARS, search_reply


def hit(n: int, text: str = "The **budget** is approved.", speaker: str = "bob") -> SearchHit:
    plain = text.replace("**", "")
    return SearchHit(n, 5, "standup", 1_790_000_000.0, 42, speaker, 65.0 + n, plain, text)


def test_lines_name_meeting_date_clock_and_speaker() -> None:
    assert search_reply(" budget ", [hit(3)]) == (
        "Lines matching “budget”, best first:\n"
        "• meeting 3, <t:1790000000:d> [01:08] bob: The **budget** is approved."
    )


def test_an_unnamed_speaker_is_mentioned_and_nothing_found_is_a_sentence() -> None:
    assert "<@42>: The" in search_reply("budget", [hit(1, speaker="")])
    assert search_reply("x", []) == "Nothing said in this server's meetings matches “x”."


def test_long_answers_stop_under_the_limit_saying_how_many_more() -> None:
    long = "budget " * 200
    hits = [hit(n, long) for n in range(10)]
    text = search_reply("budget", hits, more=True)
    assert len(text) <= MESSAGE_LIMIT
    shown = [ln for ln in text.splitlines() if ln.startswith("• ")]
    assert all(len(ln) < MAX_LINE_CHARS + 60 for ln in shown) and shown[0].endswith("…")
    assert text.splitlines()[-1] == f"… and {10 - len(shown)}+ more: add words to narrow it."


def test_more_in_the_index_than_asked_for_is_said() -> None:
    text = search_reply("budget", [hit(1)], more=True)
    assert text.splitlines()[-1] == "… and more: add words to narrow it."
