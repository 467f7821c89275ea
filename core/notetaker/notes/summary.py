"""An extractive summary: sentences quoted verbatim from the transcript, never generated.

Each line is scored by how many of the meeting's frequent content words it contains
(normalised by length, so long rambles do not win); the top lines are returned in
meeting order. It is deliberately simple and says so in the notes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notetaker.notes.model import Line

_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]+")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just let me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own really right same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would yeah yes you your yours
    yourself okay ok oh um uh like well also going get got gonna""".split()  # noqa: SIM905
)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in STOPWORDS]


def extractive_summary(lines: Sequence[Line], count: int) -> list[Line]:
    """Up to ``count`` lines that carry the meeting's most frequent content words."""
    if count <= 0:
        return []
    freq = Counter(w for ln in lines for w in _words(ln.text))
    if not freq:
        return []

    def score(ln: Line) -> float:
        words = _words(ln.text)
        if len(words) < 3:  # a bare "sounds good" is not a summary
            return 0.0
        return sum(freq[w] for w in set(words)) / math.sqrt(len(words))

    ranked = sorted((ln for ln in lines if score(ln) > 0), key=score, reverse=True)[:count]
    return sorted(ranked, key=lambda ln: ln.start)
