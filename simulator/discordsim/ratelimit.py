"""Discord's per-route rate limits, for the routes where a bot meets them in practice:
creating messages and editing them, 5 per 5 s per channel, each its own bucket.

A bucket is a route's hash plus its major parameter (the channel id). Its window opens
with the first request and lasts ``per`` seconds; within it, ``limit`` requests pass and
the rest are refused with a 429 until the window closes. Every answer of a limited route
carries the headers the libraries pace themselves by::

    X-RateLimit-Limit        5
    X-RateLimit-Remaining    requests left in this window
    X-RateLimit-Reset        epoch seconds when the window closes
    X-RateLimit-Reset-After  seconds until then
    X-RateLimit-Bucket       the route's hash (the same for every channel, as on Discord)

Reset times are rounded up to the millisecond, so a client that waits what it was told
never arrives early.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Discord's per-channel message limit: 5 messages per 5 seconds.
MESSAGE_LIMIT = 5
MESSAGE_PER_S = 5.0


def bucket_hash(name: str) -> str:
    """A stable, Discord-shaped (32 hex digits) hash for the bucket called ``name``."""
    return hashlib.sha256(f"discordsim:{name}".encode()).hexdigest()[:32]


def _ceil_ms(seconds: float) -> float:
    return math.ceil(max(seconds, 0.0) * 1000) / 1000


@dataclass
class _Window:
    closes_at: float  #: on the monotonic clock
    used: int = 0


@dataclass(frozen=True)
class Verdict:
    """What one request got: let through or refused, and the headers to answer with."""

    allowed: bool
    bucket: str
    remaining: int
    reset_after: float
    headers: dict[str, str]

    @property
    def retry_after(self) -> float:
        """How long a refused request must wait (the window's rest)."""
        return self.reset_after


class RateLimits:
    """The simulator's buckets. ``enabled`` switches limiting off (no headers, no 429s);
    ``limit`` and ``per`` apply to every limited route."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        limit: int = MESSAGE_LIMIT,
        per: float = MESSAGE_PER_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = enabled
        self.limit = limit
        self.per = per
        self._clock = clock
        self._wall = wall
        self._windows: dict[tuple[str, str], _Window] = {}

    def take(self, bucket: str, major: str) -> Verdict:
        """Count one request against ``bucket`` for major parameter ``major``; a refused
        request does not count."""
        now = self._clock()
        key = (bucket, major)
        window = self._windows.get(key)
        if window is None or now >= window.closes_at:
            window = self._windows[key] = _Window(now + self.per)
        allowed = window.used < self.limit
        if allowed:
            window.used += 1
        remaining = self.limit - window.used
        reset_after = _ceil_ms(window.closes_at - now)
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{_ceil_ms(self._wall() + reset_after):.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }
        return Verdict(allowed, bucket, remaining, reset_after, headers)
