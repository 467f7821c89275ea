"""Validating a model's answer against the transcript: recorded answers in, only
grounded items out, every drop counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from release_notes import NOTES

from notetaker.notes.digest import (
    ActionItem,
    AnswerError,
    Digest,
    Item,
    merge,
    numbered,
    validate,
)
from notetaker.notes.render import render_json, render_markdown

FIXTURES = Path(__file__).parent / "fixtures" / "llm"
LINES = numbered(NOTES)
NAMES = ["alice", "bob"]


def answer(name: str) -> object:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def test_the_speech_lines_are_numbered_from_one_holes_left_out() -> None:
    assert [(ln.number, ln.start, ln.name) for ln in LINES] == [
        (1, 5.0, "alice"),
        (2, 70.0, "bob"),
        (3, 130.0, "alice"),
        (4, 190.0, "bob"),
    ]


def test_a_grounded_answer_is_kept_whole() -> None:
    digest = validate(answer("good"), LINES, NAMES, method="llm: m at u")
    assert digest == Digest(
        summary="The team agreed to ship the release on Friday. Bob drafts the release notes.",
        decisions=(Item("Ship the release on Friday.", (1, 3)),),
        actions=(
            ActionItem("Draft the release notes", "bob", "Thursday", (2,)),
            ActionItem("Book the demo room", "alice", "", (4,)),  # "Alice" is alice; "L4" is 4
        ),
        questions=(Item("Who tells support?", (4,)),),
        dropped={},
        method="llm: m at u",
    )


def test_ungrounded_items_are_dropped_and_counted() -> None:
    digest = validate(answer("ungrounded"), LINES, NAMES)
    assert digest.decisions == (Item("Ship on Friday.", (1,)),)
    assert digest.actions == (ActionItem("Draft the notes", "bob", "", (2,)),)
    assert digest.questions == ()
    assert digest.dropped == {
        "a citation of a line that does not exist": 1,
        "no citation": 1,
        "an item without text": 1,
        "an owner who was not in the meeting": 1,
        "a citation that is not a line number": 1,
        "a section that is not a list": 1,
    }


@pytest.mark.parametrize("bad", [[], "text", {"decisions": []}, {"summary": 3}, None])
def test_an_answer_that_is_not_the_object_asked_for_is_an_error(bad: object) -> None:
    with pytest.raises(AnswerError):
        validate(bad, LINES, NAMES)


def test_chunks_merge_under_one_summary_with_their_drops_added() -> None:
    a = Digest("a", (Item("x", (1,)),), dropped={"no citation": 1})
    b = Digest("b", (), (ActionItem("y", "bob", "", (4,)),), dropped={"no citation": 2})
    both = merge([a, b], "all", method="m")
    assert both == Digest(
        "all",
        (Item("x", (1,)),),
        (ActionItem("y", "bob", "", (4,)),),
        (),
        {"no citation": 3},
        "m",
    )


def test_the_notes_show_each_item_linked_to_the_lines_it_cites() -> None:
    import dataclasses

    digest = validate(answer("ungrounded"), LINES, NAMES, method="llm: tiny at http://x")
    notes = dataclasses.replace(NOTES, digest=digest)
    md = render_markdown(notes)
    assert "- Ship on Friday. — [00:05](#l-1)" in md
    assert "- [ ] **bob**: Draft the notes — [01:10](#l-2)" in md
    assert "_6 item(s) the model gave were left out: " in md
    assert '<a id="l-2"></a>[01:10] bob: I\'ll draft the release notes by Thursday.' in md
    assert "## Open questions\n\nNone." in md and "Extractive" not in md
    data = json.loads(render_json(notes))["summary"]
    assert data["method"] == "llm: tiny at http://x"
    assert data["action_items"] == [
        {
            "text": "Draft the notes",
            "owner": "bob",
            "due": None,
            "cites": [{"line": 2, "start": 70.0}],
        }
    ]
