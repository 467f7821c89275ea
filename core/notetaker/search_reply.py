"""What /notessearch answers: the matching lines as one ephemeral Discord message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from notetaker.commands import MESSAGE_LIMIT
from notetaker.notes.render import clock
from notetaker.recorder.search import SearchHit

#: Lines asked of the index for one answer.
REPLY_HITS: Final = 10
MAX_LINE_CHARS: Final = 300


def _line(hit: SearchHit) -> str:
    text = hit.marked if len(hit.marked) <= MAX_LINE_CHARS else hit.text[: MAX_LINE_CHARS - 1] + "…"
    who = hit.speaker or f"<@{hit.user_id}>"
    # <t:...:d> shows the date in each reader's own time zone.
    when = f"<t:{int(hit.started_at)}:d> [{clock(hit.start_s)}]"
    return f"• meeting {hit.meeting_id}, {when} {who}: {text}"


def search_reply(query: str, hits: Sequence[SearchHit], *, more: bool = False) -> str:
    """The answer to ``/notessearch query:``; ``more``: the index had further matches."""
    shown = query.strip()
    if not hits:
        return f"Nothing said in this server's meetings matches “{shown}”."
    head = f"Lines matching “{shown}”, best first:"
    lines = [head]
    used = len(head)
    for n, hit in enumerate(hits):
        line = _line(hit)
        left = len(hits) - n
        tail = f"… and {left}{'+' if more else ''} more: add words to narrow it."
        if used + 1 + len(line) + 1 + len(tail) > MESSAGE_LIMIT:
            lines.append(tail)
            break
        lines.append(line)
        used += 1 + len(line)
    else:
        if more:
            lines.append("… and more: add words to narrow it.")
    return "\n".join(lines)
