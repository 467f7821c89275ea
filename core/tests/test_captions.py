"""Live captions: batched, paced under Discord's limit, patient with 429s, never fatal,
and rewritten when someone opts out.

The platform here is a recording stand-in behind the Platform seam; the real one (each
library against the simulator, which enforces Discord's rate limits) is exercised by the
backend contract suite and the end-to-end meeting.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path

from notetaker.bot import Platform
from notetaker.errors import PlatformError, RateLimited
from notetaker.live.captions import CaptionLine, CaptionPacing, CaptionPoster, stop_captions
from notetaker.session import VoiceSession

THREAD = 77


class Recording(Platform):
    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []
        self.edits: list[tuple[int, str]] = []
        self.failures: list[Exception] = []
        self.next_id = 1000
        self.posted = asyncio.Event()

    def open_voice(self, guild_id: int) -> VoiceSession:
        raise NotImplementedError

    async def send_message(
        self, channel_id: int, text: str, files: Sequence[Path] = ()
    ) -> int | None:
        assert channel_id == THREAD
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((asyncio.get_running_loop().time(), text))
        self.posted.set()
        self.next_id += 1
        return self.next_id

    async def edit_message(self, channel_id: int, message_id: int, text: str) -> None:
        self.edits.append((message_id, text))

    async def create_thread(self, channel_id: int, message_id: int, name: str) -> int:
        return THREAD

    async def set_nickname(self, guild_id: int, nickname: str | None) -> bool:
        return True

    def display_name(self, guild_id: int, user_id: int) -> str:
        return str(user_id)


def line(n: int, user: int = 1, text: str | None = None) -> CaptionLine:
    return CaptionLine(n * 2.0, user, f"user{user}", text or f"line {n}", 0.0)


async def _run(poster: CaptionPoster) -> asyncio.Task[None]:
    return asyncio.create_task(poster.run())


async def test_lines_are_batched_and_never_posted_faster_than_the_pacing() -> None:
    platform = Recording()
    poster = CaptionPoster(platform, THREAD, CaptionPacing(min_interval_s=0.05))
    task = await _run(poster)
    for n in range(12):
        poster.add([line(n)])
        await asyncio.sleep(0.01)  # lines come in over time, as utterances end
    await stop_captions(poster, task, 5)
    texts = [t for _, t in platform.sent]
    assert "\n".join(texts).splitlines() == [f"[00:{2 * n:02d}] user1: line {n}" for n in range(12)]
    assert len(texts) < 12  # batched
    times = [t for t, _ in platform.sent]
    assert all(b - a >= 0.05 for a, b in itertools.pairwise(times))


async def test_a_429_is_waited_out_and_the_lines_are_kept() -> None:
    platform = Recording()
    platform.failures = [RateLimited("slow down", retry_after=0.2)]
    poster = CaptionPoster(platform, THREAD, CaptionPacing(min_interval_s=0.01))
    task = await _run(poster)
    started = asyncio.get_running_loop().time()
    poster.add([line(1), line(2)])
    await stop_captions(poster, task, 5)
    assert [t for _, t in platform.sent] == ["[00:02] user1: line 1\n[00:04] user1: line 2"]
    assert platform.sent[0][0] - started >= 0.2
    assert poster.rate_limited == 1


async def test_captions_give_up_after_repeated_failures_without_raising() -> None:
    platform = Recording()
    platform.failures = [PlatformError("Missing Access", 403) for _ in range(10)]
    pacing = CaptionPacing(min_interval_s=0.0, failure_backoff_s=0.001, give_up_after=3)
    poster = CaptionPoster(platform, THREAD, pacing)
    task = await _run(poster)
    poster.add([line(1)])
    await asyncio.wait_for(task, 5)
    assert poster.given_up and poster.failures == 3 and platform.sent == []
    poster.add([line(2)])  # ignored from now on
    assert poster.pending == []


async def test_an_opt_out_removes_pending_lines_and_rewrites_posted_ones() -> None:
    platform = Recording()
    poster = CaptionPoster(platform, THREAD, CaptionPacing(min_interval_s=0.0))
    task = await _run(poster)
    poster.add([line(1, user=1), line(2, user=2)])
    await platform.posted.wait()
    assert len(platform.sent) == 1
    poster.remove_user(2)
    poster.add([line(3, user=2), line(4, user=1)])
    poster.remove_user(2)
    await stop_captions(poster, task, 5)
    assert platform.edits == [(1001, "[00:02] user1: line 1")]
    assert all("user2" not in t for _, t in platform.sent[1:])
    assert "line 4" in platform.sent[-1][1]


async def test_long_captions_are_split_under_discords_message_limit() -> None:
    platform = Recording()
    poster = CaptionPoster(platform, THREAD, CaptionPacing(min_interval_s=0.0))
    task = await _run(poster)
    poster.add([line(n, text="word " * 150) for n in range(10)])  # ~760 chars each
    await stop_captions(poster, task, 5)
    assert all(len(t) <= 2000 for _, t in platform.sent)
    assert sum(t.count("user1:") for _, t in platform.sent) == 10
