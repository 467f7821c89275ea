"""The notes of one meeting, built from transcribed segments and the recorder's gaps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from notetaker.notes.summary import extractive_summary
from notetaker.transcript import Segment

if TYPE_CHECKING:
    from notetaker.notes.digest import Digest

#: Missing audio shorter than this is summarised as a count, not shown inline: a single
#: lost 20 ms packet is not worth a line in the transcript.
INLINE_MIN_SECONDS = 1.0
#: Missing spans of one speaker closer than this are merged into one.
MERGE_WITHIN_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class MissingSpan:
    """Audio of ``user_id`` missing from ``start`` to ``end`` (meeting seconds).

    ``reason``: ``loss`` (packets never arrived), ``decrypt`` (frames failed to decrypt),
    ``reconnect`` (the voice connection was down), ``restart`` (the bot's process was
    down: it restarted and rejoined).
    """

    user_id: int
    start: float
    end: float
    reason: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Participant:
    user_id: int
    name: str
    talk_time: float  #: seconds of recognised speech
    short_gaps: int = 0  #: missing spans too short to show inline
    short_gap_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the merged transcript: speech, or a marked hole in the audio."""

    start: float
    end: float
    user_id: int
    name: str
    text: str = ""
    missing: MissingSpan | None = None


@dataclass(frozen=True)
class Notes:
    """Everything a renderer needs; renderers are pure functions of this."""

    title: str
    started_at: datetime
    duration: float
    participants: tuple[Participant, ...]
    lines: tuple[Line, ...]
    summary: tuple[Line, ...]
    opted_out: tuple[str, ...] = ()
    missing: tuple[MissingSpan, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    #: Sentences about the meeting as a whole, shown first (a recording cut short).
    notices: tuple[str, ...] = ()
    #: The summarizer's summary, decisions, action items and open questions; None: the
    #: extractive ``summary`` is all there is.
    digest: Digest | None = None

    def name_of(self, user_id: int) -> str:
        for p in self.participants:
            if p.user_id == user_id:
                return p.name
        return str(user_id)


def merge_spans(spans: Iterable[MissingSpan]) -> list[MissingSpan]:
    """Merge each speaker's overlapping or near spans (same reason) into one."""
    out: list[MissingSpan] = []
    for span in sorted(spans, key=lambda s: (s.user_id, s.reason, s.start)):
        last = out[-1] if out else None
        if (
            last is not None
            and last.user_id == span.user_id
            and last.reason == span.reason
            and span.start - last.end <= MERGE_WITHIN_SECONDS
        ):
            out[-1] = MissingSpan(last.user_id, last.start, max(last.end, span.end), last.reason)
        else:
            out.append(span)
    return sorted(out, key=lambda s: (s.start, s.user_id))


def build_notes(
    *,
    title: str,
    started_at: datetime,
    duration: float,
    names: dict[int, str],
    segments: Sequence[Segment],
    missing: Iterable[MissingSpan] = (),
    opted_out: Sequence[str] = (),
    summary_lines: int = 5,
    meta: dict[str, str] | None = None,
    notices: Sequence[str] = (),
) -> Notes:
    """Merge segments of every speaker by time and place missing audio inline."""
    spans = merge_spans(missing)
    shown = [s for s in spans if s.duration >= INLINE_MIN_SECONDS]
    speech = [
        Line(s.start, s.end, s.user_id, names.get(s.user_id, str(s.user_id)), s.text.strip())
        for s in segments
        if s.text.strip()
    ]
    holes = [
        Line(s.start, s.end, s.user_id, names.get(s.user_id, str(s.user_id)), missing=s)
        for s in shown
    ]
    lines = tuple(sorted(speech + holes, key=lambda ln: (ln.start, ln.missing is None, ln.user_id)))

    participants = []
    for user_id, name in names.items():
        talk = sum(ln.end - ln.start for ln in speech if ln.user_id == user_id)
        short = [s for s in spans if s.user_id == user_id and s.duration < INLINE_MIN_SECONDS]
        participants.append(
            Participant(user_id, name, talk, len(short), sum(s.duration for s in short))
        )
    participants.sort(key=lambda p: (-p.talk_time, p.name))
    return Notes(
        title=title,
        started_at=started_at,
        duration=duration,
        participants=tuple(participants),
        lines=lines,
        summary=tuple(extractive_summary(speech, summary_lines)),
        opted_out=tuple(opted_out),
        missing=tuple(spans),
        meta=dict(meta or {}),
        notices=tuple(notices),
    )
