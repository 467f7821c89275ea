"""Transcript lines split at a speaker's pauses, so turns stay in the order spoken."""

from __future__ import annotations

from notetaker.meeting import split_at_pauses
from notetaker.transcript import Segment, Word


def _words(*timed: tuple[float, float, str]) -> tuple[Word, ...]:
    return tuple(Word(s, e, t, 0.9) for s, e, t in timed)


def test_a_long_pause_inside_a_segment_starts_a_new_line() -> None:
    words = _words((1.0, 1.4, "Thank"), (1.4, 1.8, "you."), (9.0, 9.3, "I"), (9.3, 9.8, "will."))
    merged = Segment(7, 1.0, 9.8, "Thank you. I will.", words)
    other = Segment(8, 4.0, 6.0, "Meanwhile.")
    out = split_at_pauses([merged, other])
    assert [(s.user_id, s.text) for s in out] == [
        (7, "Thank you."),
        (8, "Meanwhile."),
        (7, "I will."),
    ]
    assert (out[0].start, out[0].end) == (1.0, 1.8)
    assert (out[2].start, out[2].end) == (9.0, 9.8)
    assert out[2].words == words[2:]


def test_short_pauses_and_segments_without_words_are_kept_whole() -> None:
    words = _words((0.0, 0.5, "One"), (1.9, 2.2, "two."))
    whole = Segment(1, 0.0, 2.2, "One two.", words)
    bare = Segment(2, 3.0, 4.0, "No word times.")
    assert split_at_pauses([bare, whole]) == [whole, bare]
    assert split_at_pauses([whole], pause_s=1.0)[1].text == "two."
