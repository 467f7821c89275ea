"""What a restarted bot does with the meetings its last process left unfinished.

A process killed mid-meeting (``kill -9``, a crash, a host reboot) leaves its meeting in
status ``recording``: the tracks on disk up to their last whole page, the transcript made
so far in the index, and a heartbeat (``alive_at``) from a few seconds before it died. A
graceful shutdown whose grace ran out leaves it ``transcribing``. On the next start each
one is either **resumed** (the bot rejoins and the same meeting goes on: same tracks, same
clock, the outage marked ``bot restarted``) or **finished** (the notes of what was
recorded are posted where the meeting was started, saying where it was cut short).

The rule is :func:`decide`, a pure function of the meeting, the time and who is in the
voice channel now, with the policy as frozen data (:class:`RecoveryPolicy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Interrupted meetings older than this are never resumed by default (seconds).
DEFAULT_RESUME_WITHIN_S = 600.0


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """``resume_within_s``: the longest outage after which a meeting still goes on (a
    meeting that was down longer is finished: people have moved on or started anew)."""

    resume_within_s: float = DEFAULT_RESUME_WITHIN_S


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A meeting the last process did not finish, as the index has it."""

    meeting_id: int
    guild_id: int
    voice_channel_id: int
    text_channel_id: int | None
    started_by: int
    status: str  #: ``recording`` (the process died) or ``transcribing`` (notes unfinished)
    started_at: float  #: time.time() at the start
    alive_at: float  #: time.time() of the last heartbeat: where the recording stops


@dataclass(frozen=True, slots=True)
class Decision:
    """``resume`` or ``finish``, and why in words for the log and the channel."""

    action: Literal["resume", "finish"]
    why: str


def decide(
    meeting: Interrupted, *, now: float, members: int | None, policy: RecoveryPolicy
) -> Decision:
    """Resume ``meeting`` or finish it. ``members``: people (not the bot) in its voice
    channel now; None when the channel cannot be seen (deleted, or the guild is gone)."""
    if meeting.status != "recording":
        return Decision("finish", "its notes were not finished before the bot stopped")
    down_s = max(0.0, now - meeting.alive_at)
    if down_s > policy.resume_within_s:
        return Decision(
            "finish",
            f"the bot was down for {_span(down_s)}, longer than resume_within_s "
            f"({_span(policy.resume_within_s)})",
        )
    if members is None:
        return Decision("finish", "its voice channel is gone")
    if members == 0:
        return Decision("finish", "nobody is in the voice channel any more")
    return Decision("resume", f"the bot was down for {_span(down_s)} and people are still there")


def _span(seconds: float) -> str:
    total = round(seconds)
    minutes, rest = divmod(total, 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"
