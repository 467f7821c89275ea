"""``timeline.png``: one lane per speaker across the meeting clock, speech as bars and
missing audio coloured by its cause.

The lanes come from :class:`~notetaker.notes.model.Notes` alone, the same participants,
transcript lines and missing spans the Markdown's coverage section is written from, so
the picture and the text cannot disagree. Members who opted out have no lane: nothing of
them is kept, their name included; the caption counts them.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
state), so it can run on a worker thread while the event loop goes on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

from notetaker.notes.model import MissingSpan, Notes
from notetaker.notes.render import REASONS, clock

#: Speech bars.
SPEECH_COLOUR: Final = "#4c72b0"
#: Missing audio, by MissingSpan.reason; anything else (a full disk's reason) is OTHER.
REASON_COLOURS: Final = {
    "loss": "#ff9f1c",
    "decrypt": "#9b5de5",
    "reconnect": "#e63946",
    "restart": "#264653",
    "transcription": "#f4d35e",
}
OTHER_COLOUR: Final = "#8d99ae"
#: The shortest span drawn, as a share of the meeting: a lost packet stays visible.
MIN_WIDTH_SHARE: Final = 0.002


@dataclass(frozen=True, slots=True)
class Lane:
    """One speaker's row: when they spoke and where their audio is missing."""

    user_id: int
    name: str
    speech: tuple[tuple[float, float], ...]
    missing: tuple[MissingSpan, ...]


def lanes(notes: Notes) -> list[Lane]:
    """A lane per participant, in the notes' order, from the notes' lines and spans."""
    out = []
    for p in notes.participants:
        speech = tuple(
            (ln.start, ln.end)
            for ln in notes.lines
            if ln.user_id == p.user_id and ln.missing is None and ln.text
        )
        missing = tuple(s for s in notes.missing if s.user_id == p.user_id)
        out.append(Lane(p.user_id, p.name, speech, missing))
    return out


def colour_of(reason: str) -> str:
    return REASON_COLOURS.get(reason, OTHER_COLOUR)


def label_of(reason: str) -> str:
    if reason == "transcription":
        return "not transcribed"
    return REASONS.get(reason, reason or "other")


def render_png(notes: Notes) -> bytes:
    """The picture as PNG bytes."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    rows = lanes(notes)
    end = max(
        [notes.duration, *(e for r in rows for _, e in r.speech), *(s.end for s in notes.missing)]
    )
    end = max(end, 1.0)
    least = end * MIN_WIDTH_SHARE
    figure = Figure(figsize=(10, 1.4 + 0.4 * max(1, len(rows))), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    seen: dict[str, str] = {}
    for y, row in enumerate(reversed(rows)):
        bars = [(s, max(e - s, least)) for s, e in row.speech]
        axes.broken_barh(bars, (y - 0.3, 0.6), facecolors=SPEECH_COLOUR, linewidth=0)
        for span in row.missing:
            colour = colour_of(span.reason)
            seen.setdefault(label_of(span.reason), colour)
            width = max(span.duration, least)
            axes.broken_barh(
                [(span.start, width)], (y - 0.42, 0.84), facecolors=colour, linewidth=0
            )
    axes.set_yticks(range(len(rows)), [r.name for r in reversed(rows)])
    axes.set_ylim(-0.6, max(1, len(rows)) - 0.4)
    axes.set_xlim(0, end)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: clock(x)))
    axes.grid(axis="x", alpha=0.3)
    handles = [Patch(color=SPEECH_COLOUR, label="speech")]
    handles += [
        Patch(color=c, label=f"{label} (no audio)" if label != "not transcribed" else label)
        for label, c in seen.items()
    ]
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 4),
        frameon=False,
        fontsize="small",
    )
    title = f"{notes.started_at:%Y-%m-%d %H:%M} UTC, {clock(notes.duration)}"
    if notes.opted_out:
        title += f" · {len(notes.opted_out)} opted out (not shown)"
    axes.set_title(title, fontsize="medium")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
