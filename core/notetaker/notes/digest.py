"""What a summarizer adds to the notes, grounded in the transcript: a short summary,
decisions, action items and open questions, each citing the transcript lines it comes
from by number.

:func:`numbered` numbers the transcript's speech lines (1, 2, ...) the way a summarizer
sees them; :func:`validate` turns a model's answer into a :class:`Digest`, dropping (and
counting) every item that cites a line that does not exist, cites none, or names an
owner who was not in the meeting. Pure functions: no model, no network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from notetaker.notes.model import Line, Notes


@dataclass(frozen=True, slots=True)
class NumberedLine:
    number: int
    start: float
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Item:
    """A decision or open question; ``lines``: the transcript line numbers it cites."""

    text: str
    lines: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ActionItem:
    text: str
    owner: str  #: a participant's name, as the notes show it
    due: str  #: as said ("Friday", "2026-12-18"); '' when none was
    lines: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    summary: str
    decisions: tuple[Item, ...] = ()
    actions: tuple[ActionItem, ...] = ()
    questions: tuple[Item, ...] = ()
    #: items the model gave that were dropped, by why
    dropped: dict[str, int] = field(default_factory=dict)
    #: who made it, for the notes ("llm: gemma3 at http://...")
    method: str = ""


def speech_lines(notes: Notes) -> list[Line]:
    return [ln for ln in notes.lines if ln.missing is None and ln.text]


def numbered(notes: Notes) -> list[NumberedLine]:
    """The transcript as a summarizer sees it: speech lines numbered from 1."""
    return [
        NumberedLine(n, ln.start, ln.name, ln.text)
        for n, ln in enumerate(speech_lines(notes), start=1)
    ]


class AnswerError(ValueError):
    """A model's answer that is not the JSON object asked for."""


def _cites(raw: Any, known: int) -> tuple[tuple[int, ...], str | None]:
    """The cited line numbers, or why the item is dropped."""
    if not isinstance(raw, list) or not raw:
        return (), "no citation"
    cites = []
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, int | str):
            return (), "a citation that is not a line number"
        try:
            number = int(str(value).strip().lstrip("Ll"))
        except ValueError:
            return (), "a citation that is not a line number"
        if not 1 <= number <= known:
            return (), "a citation of a line that does not exist"
        cites.append(number)
    return tuple(sorted(set(cites))), None


def _text(raw: Any) -> str:
    return re.sub(r"\s+", " ", raw).strip() if isinstance(raw, str) else ""


def validate(
    answer: Any, lines: Sequence[NumberedLine], participants: Sequence[str], *, method: str = ""
) -> Digest:
    """The answer as a Digest. Raises AnswerError if it is not an object with a summary;
    drops and counts each item that cannot be trusted."""
    if not isinstance(answer, dict) or not isinstance(answer.get("summary"), str):
        raise AnswerError("the answer is not a JSON object with a summary")
    known = len(lines)
    owners = {p.casefold(): p for p in participants}
    dropped: dict[str, int] = {}

    def drop(why: str) -> None:
        dropped[why] = dropped.get(why, 0) + 1

    def entries(key: str) -> list[Any]:
        raw = answer.get(key)
        if raw is None:
            return []
        if not isinstance(raw, list):
            drop("a section that is not a list")
            return []
        return raw

    def grounded(key: str) -> list[tuple[dict[str, Any], str, tuple[int, ...]]]:
        """The section's entries that have text and cite existing lines, with both."""
        out = []
        for raw in entries(key):
            if not isinstance(raw, dict) or not _text(raw.get("text")):
                drop("an item without text")
                continue
            cites, why = _cites(raw.get("lines"), known)
            if why is not None:
                drop(why)
                continue
            out.append((raw, _text(raw["text"]), cites))
        return out

    def items(key: str) -> list[Item]:
        return [Item(text, cites) for _, text, cites in grounded(key)]

    actions = []
    for raw, text, cites in grounded("action_items"):
        owner = owners.get(_text(raw.get("owner")).lstrip("@").casefold())
        if owner is None:
            drop("an owner who was not in the meeting")
            continue
        actions.append(ActionItem(text, owner, _text(raw.get("due")), cites))
    return Digest(
        summary=_text(answer["summary"]),
        decisions=tuple(items("decisions")),
        actions=tuple(actions),
        questions=tuple(items("open_questions")),
        dropped=dropped,
        method=method,
    )


def merge(parts: Sequence[Digest], summary: str, *, method: str = "") -> Digest:
    """The digests of a long meeting's chunks as one (their line numbers are already the
    meeting's), under the combined ``summary``."""
    dropped: dict[str, int] = {}
    for part in parts:
        for why, count in part.dropped.items():
            dropped[why] = dropped.get(why, 0) + count
    return Digest(
        summary=summary,
        decisions=tuple(i for p in parts for i in p.decisions),
        actions=tuple(a for p in parts for a in p.actions),
        questions=tuple(q for p in parts for q in p.questions),
        dropped=dropped,
        method=method,
    )
