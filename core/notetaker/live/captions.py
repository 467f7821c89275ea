"""Live captions: finished utterances posted in a thread as ``[mm:ss] Name: text``.

Lines arrive whenever the transcriber finishes an utterance; the poster batches what has
arrived into one message and never posts more often than Discord allows in a channel
(5 messages per 5 s: one send per ``min_interval_s``). When Discord still answers 429
(:class:`~notetaker.errors.RateLimited`, after the library's own retries) the poster waits
what it was told, keeps the lines and tries again; after repeated other failures it gives
up on captions. Nothing here can touch the recording: the worst a caption failure does is
stop the captions, with a line in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from notetaker.commands import MESSAGE_LIMIT
from notetaker.errors import NotetakerError, RateLimited
from notetaker.notes.render import clock

if TYPE_CHECKING:
    from notetaker.bot import Platform

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CaptionLine:
    """One caption; ``ended_at`` is when its utterance ended (event-loop clock)."""

    start_s: float
    user_id: int
    name: str
    text: str
    ended_at: float

    def render(self) -> str:
        return f"[{clock(self.start_s)}] {self.name}: {self.text}"


@dataclass(frozen=True, slots=True)
class CaptionPacing:
    """How often captions may be posted; seconds."""

    min_interval_s: float = 1.0
    max_chars: int = MESSAGE_LIMIT
    failure_backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    give_up_after: int = 5  #: consecutive failures that are not rate limits


@dataclass
class _Posted:
    message_id: int
    lines: list[CaptionLine]


@dataclass
class CaptionPoster:
    """Posts captions into ``thread_id`` from :meth:`run` (a task on the event loop)."""

    platform: Platform
    thread_id: int
    pacing: CaptionPacing = field(default_factory=CaptionPacing)
    clock: Callable[[], float] | None = None
    pending: list[CaptionLine] = field(default_factory=list)
    posted: list[_Posted] = field(default_factory=list)
    #: seconds from an utterance's end to its caption being posted, per line
    latencies: list[float] = field(default_factory=list)
    rate_limited: int = 0
    failures: int = 0
    given_up: bool = False
    _edits: set[int] = field(default_factory=set)  #: indexes into ``posted`` to rewrite
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False

    def add(self, lines: Sequence[CaptionLine]) -> None:
        """Queue lines (call on the event loop)."""
        if self.given_up or not lines:
            return
        self.pending.extend(lines)
        self._wake.set()

    def remove_user(self, user_id: int) -> None:
        """An opt-out: their pending lines go, and posted messages with their lines are
        rewritten without them."""
        self.pending = [ln for ln in self.pending if ln.user_id != user_id]
        for i, msg in enumerate(self.posted):
            if any(ln.user_id == user_id for ln in msg.lines):
                msg.lines = [ln for ln in msg.lines if ln.user_id != user_id]
                self._edits.add(i)
        self._wake.set()

    async def run(self) -> None:
        """Post until :meth:`close`; returns once everything queued is out."""
        now = self._now
        next_send = now()
        backoff = self.pacing.failure_backoff_s
        while True:
            if not (self.pending or self._edits):
                if self._closing or self.given_up:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = next_send - now()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self._send_one()
            except RateLimited as exc:
                self.rate_limited += 1
                next_send = now() + max(exc.retry_after, self.pacing.min_interval_s)
                continue
            except NotetakerError as exc:
                self.failures += 1
                log.warning("a caption could not be posted (%s/%s): %s",
                            self.failures, self.pacing.give_up_after, exc)  # fmt: skip
                if self.failures >= self.pacing.give_up_after:
                    log.warning("live captions stopped after %s failures", self.failures)
                    self.given_up = True
                    self.pending.clear()
                    self._edits.clear()
                    return
                next_send = now() + backoff
                backoff = min(backoff * 2, self.pacing.max_backoff_s)
                continue
            self.failures = 0
            backoff = self.pacing.failure_backoff_s
            next_send = now() + self.pacing.min_interval_s

    def close(self) -> None:
        """Let :meth:`run` post what is queued, then return."""
        self._closing = True
        self._wake.set()

    async def _send_one(self) -> None:
        """One Discord call: a pending rewrite first (opt-outs), else a batch of lines."""
        if self._edits:
            index = min(self._edits)
            msg = self.posted[index]
            text = "\n".join(ln.render() for ln in msg.lines) or "(removed)"
            await self.platform.edit_message(self.thread_id, msg.message_id, text)
            self._edits.discard(index)
            return
        batch: list[CaptionLine] = []
        size = 0
        for line in self.pending:
            text = _fit(line.render(), self.pacing.max_chars)
            if batch and size + 1 + len(text) > self.pacing.max_chars:
                break
            batch.append(line)
            size += len(text) + (1 if size else 0)
        body = "\n".join(_fit(ln.render(), self.pacing.max_chars) for ln in batch)
        message_id = await self.platform.send_message(self.thread_id, body)
        del self.pending[: len(batch)]
        posted_at = self._now()
        self.latencies.extend(posted_at - ln.ended_at for ln in batch)
        if message_id is not None:
            self.posted.append(_Posted(message_id, list(batch)))

    def _now(self) -> float:
        if self.clock is not None:
            return self.clock()
        return asyncio.get_running_loop().time()


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def stop_captions(poster: CaptionPoster, task: asyncio.Task[None], timeout: float) -> None:  # noqa: ASYNC109
    """Close ``poster`` and wait up to ``timeout`` s for its last lines; then cancel it."""
    poster.close()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        log.warning("live captions still had %s line(s) to post; dropped", len(poster.pending))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    except Exception as exc:  # a caption failure never affects the notes
        log.warning("live captions ended with an error: %s", exc)
