"""Counters for the receive path, per session and per user.

Every datagram fed to the pipeline is counted once in ``received`` and ends up in
exactly one of: ``ignored`` (RTCP, keepalive, discovery: classified, not drops),
``dropped`` (by reason), ``delivered`` to the sink, or still held (jitter buffers and
the unknown-SSRC queue). ``lost`` counts sequence numbers that never arrived; they were
never received, so they are not part of that sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Drop reasons the pipeline uses (others may come from a FrameDecryptor's errors).
DROP_REASONS = (
    "malformed",
    "payload_type",
    "decrypt",
    "unknown_ssrc",
    "duplicate",
    "late",
    "internal",
)


@dataclass(slots=True)
class UserStats:
    """What happened to one user's packets (those whose SSRC was mapped to them)."""

    received: int = 0
    delivered: int = 0
    lost: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return {
            "received": self.received,
            "delivered": self.delivered,
            "lost": self.lost,
            "dropped": dict(self.dropped),
        }


@dataclass(slots=True)
class ReceiveStats:
    """Session-wide counters plus :class:`UserStats` per user id."""

    received: int = 0
    decrypted: int = 0
    delivered: int = 0
    lost: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    users: dict[int, UserStats] = field(default_factory=dict)

    def user(self, user_id: int) -> UserStats:
        """The counters of ``user_id``, created on first use."""
        stats = self.users.get(user_id)
        if stats is None:
            stats = self.users[user_id] = UserStats()
        return stats

    def ignore(self, kind: str) -> None:
        """Count a datagram that is not media (``rtcp``, ``keepalive``, ``discovery``)."""
        self.ignored[kind] = self.ignored.get(kind, 0) + 1

    def drop(self, reason: str, user_id: int | None = None, count: int = 1) -> None:
        """Count ``count`` received packets dropped for ``reason``."""
        self.dropped[reason] = self.dropped.get(reason, 0) + count
        if user_id is not None:
            dropped = self.user(user_id).dropped
            dropped[reason] = dropped.get(reason, 0) + count

    @property
    def dropped_total(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.dropped.values())

    @property
    def ignored_total(self) -> int:
        """All non-media datagrams."""
        return sum(self.ignored.values())

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly copy of every counter."""
        return {
            "received": self.received,
            "decrypted": self.decrypted,
            "delivered": self.delivered,
            "lost": self.lost,
            "ignored": dict(self.ignored),
            "dropped": dict(self.dropped),
            "users": {uid: u.snapshot() for uid, u in self.users.items()},
        }

    def summary(self) -> str:
        """One line for logs, e.g. ``rx=1200 dec=1190 out=1185 lost=3 drop[...]``."""
        drops = " ".join(f"{k}={v}" for k, v in sorted(self.dropped.items()) if v)
        ignored = " ".join(f"{k}={v}" for k, v in sorted(self.ignored.items()) if v)
        return (
            f"rx={self.received} dec={self.decrypted} out={self.delivered} lost={self.lost}"
            f" users={len(self.users)} drop[{drops}] ignored[{ignored}]"
        )
