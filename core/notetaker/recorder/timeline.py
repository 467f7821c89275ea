"""What happened during a meeting, on the meeting clock (ms since the meeting start)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Event kinds the index accepts.
#:
#: ``join``: a speaker's first packet; ``gap``: packets that never came (``detail`` is
#: the :class:`~notetaker.sink.Gap` reason, ``count`` how many); ``reanchor``: a track's
#: RTP clock was re-anchored on arrival time (``detail`` says why, ``count`` is the
#: silence inserted in ms); ``reconnect``: the voice connection dropped and came back
#: (``count`` is its length in ms); ``opt_out``: a speaker withdrew consent; ``error``:
#: a track could not be opened (``detail`` says why); ``stopped``: a track could not be
#: written any more and stopped for good at ``at_ms``, where the audio on disk ends
#: (``detail`` is the cause, e.g. ``disk full``); ``restart``: the bot's process stopped
#: at ``at_ms`` and the recording went on ``count`` ms later (``detail`` says why, e.g.
#: ``bot restarted``); ``close``: capture ended.
EVENT_KINDS: Final = frozenset(
    {"join", "gap", "reanchor", "reconnect", "opt_out", "error", "stopped", "restart", "close"}
)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One thing that happened. ``at_ms`` is None when the time is unknown."""

    kind: str
    user_id: int | None
    at_ms: int | None
    count: int = 0
    detail: str = ""
