"""A transcript of everything a client did to the simulator, and what it was sent.

Tests assert on it instead of on logs. It is one append-only list of :class:`Entry`,
each with a ``kind`` string and a small dict of data. Kinds written by the main side:

``gateway.connect``  a client opened the main gateway (``conn``, ``query``)
``gateway.op``       the client sent an op (``conn``, ``op``, ``d``; Identify's token redacted)
``gateway.send``     the server sent a non-dispatch op (``conn``, ``op``, ``d``)
``gateway.dispatch`` a dispatch went out (``user_id``, ``t``, ``s``, ``d``; voice tokens redacted)
``gateway.close``    a gateway connection ended (``conn``, ``code``, ``by``: client/server)
``rest``             a REST call (``method``, ``path``, ``route``, ``status``, ``json``, ``files``)
``rest.unknown``     a REST call no route knows (answered 404, as Discord does)
``rest.rate_limited``  a REST call over its route's limit, answered 429 (``method``, ``path``,
                     ``route``, ``bucket``, ``channel_id``, ``retry_after``); rate limited
                     routes' ``rest`` entries carry ``ratelimit`` (``bucket``, ``remaining``)
``command.sync``     the application's commands changed (``scope``: global/guild id, ``names``)
``interaction``      an interaction was sent to the bot (``id``, ``name``, ``user_id``)
``interaction.response``  the bot answered one (``id``, ``via``, ``type``, ``json``, ``files``)
``message``          a message was created or edited (``channel_id``, ``content``, ``files``);
                     in a thread, ``channel_id`` is the thread's id
``thread.create``    a thread was started from a message (``id``, ``parent_id``,
                     ``message_id``, ``name``, ``owner_id``)
``member.update``    a member was edited (``user_id``, ``nick``)
``voice.state``      a voice state changed after op 4 (``user_id``, ``channel_id``, ``session_id``)

The voice side appends its own kinds (``voice.*``). Secrets never go into the record.

The ``wait_*`` methods take a ``timeout`` (10 s by default) so that a test waiting for
something that never happens fails with a message naming it instead of hanging.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Predicate = Callable[["Entry"], bool]

#: what stands in for a bot token in recorded ops (Identify, Resume)
REDACTED = "<redacted>"


def fingerprint(secret: str) -> str:
    """A short, stable stand-in for a secret, so tests can compare tokens without storing them."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Entry:
    """One thing that happened. ``seq`` orders entries; ``at`` is ``time.monotonic()``."""

    seq: int
    kind: str
    data: Mapping[str, Any]
    at: float

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def matches(self, kind: str | None, match: Mapping[str, Any]) -> bool:
        """True if the kind is ``kind`` (or ``kind`` is None) and every ``match`` item equals."""
        if kind is not None and self.kind != kind:
            return False
        return all(key in self.data and self.data[key] == want for key, want in match.items())


@dataclass
class Record:
    """The append-only transcript. Waiters are woken on every append."""

    entries: list[Entry] = field(default_factory=list)
    _changed: asyncio.Event | None = field(default=None, repr=False)

    def add(self, kind: str, **data: Any) -> Entry:
        entry = Entry(len(self.entries), kind, data, time.monotonic())
        self.entries.append(entry)
        if self._changed is not None:
            self._changed.set()
        return entry

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def of(self, kind: str | None = None, **match: Any) -> list[Entry]:
        """Every entry of this kind whose data has these items."""
        return [e for e in self.entries if e.matches(kind, match)]

    def first(self, kind: str | None = None, **match: Any) -> Entry | None:
        return next((e for e in self.entries if e.matches(kind, match)), None)

    def dispatches(self, t: str, **match: Any) -> list[Entry]:
        """Dispatches named ``t`` whose payload ``d`` has these items."""
        return [
            e
            for e in self.of("gateway.dispatch", t=t)
            if all(e["d"].get(k) == v for k, v in match.items())
        ]

    def ops(self, op: int) -> list[Entry]:
        """Ops of this number that clients sent on the main gateway."""
        return self.of("gateway.op", op=op)

    async def wait_for(
        self,
        kind: str | None = None,
        predicate: Predicate | None = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
        after: int = 0,
        **match: Any,
    ) -> Entry:
        """The first entry (from index ``after`` on) that matches; waits for one to be added.

        Raises :class:`TimeoutError` naming what it waited for.
        """
        start = after

        def scan() -> Entry | None:
            nonlocal start
            for entry in self.entries[start:]:
                if entry.matches(kind, match) and (predicate is None or predicate(entry)):
                    return entry
            start = len(self.entries)
            return None

        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = scan()
                    if found is not None:
                        return found
                    if self._changed is None:
                        self._changed = asyncio.Event()
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"no record entry kind={kind!r} match={dict(match)!r} within {timeout}s"
            ) from None

    async def wait_dispatch(self, t: str, *, timeout: float = 10.0, after: int = 0) -> Entry:  # noqa: ASYNC109
        """The first dispatch named ``t``; waits for it."""
        return await self.wait_for("gateway.dispatch", timeout=timeout, after=after, t=t)

    async def wait_op(self, op: int, *, timeout: float = 10.0, after: int = 0) -> Entry:  # noqa: ASYNC109
        """The first op ``op`` a client sent on the main gateway; waits for it."""
        return await self.wait_for("gateway.op", timeout=timeout, after=after, op=op)
