"""Auto-record: voice channels where the bot starts notes when the first member joins and
stops them once the channel has stayed empty for a grace period.

The policy is data plus a pure :func:`decide`; :class:`AutoRecordStore` keeps the
channels (the same SQLite file as the opt-outs); :class:`AutoRecorder` turns voice state
changes into the bot's start and stop, with the grace timer on an injected clock.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS autorecord (
    guild_id INTEGER NOT NULL,
    voice_channel_id INTEGER NOT NULL,
    text_channel_id INTEGER NOT NULL,
    enabled_by INTEGER NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (guild_id, voice_channel_id)
)
"""


@dataclass(frozen=True, slots=True)
class AutoChannel:
    """A voice channel recorded automatically; notes and the consent announcement go to
    ``text_channel_id``, on behalf of the member who turned it on."""

    guild_id: int
    voice_channel_id: int
    text_channel_id: int
    enabled_by: int


class AutoRecordStore:
    """Auto-record channels per guild; owns only its own table of the file. Reads come
    from memory (every member's voice state change asks), writes go to the file too."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._cache: dict[int, list[AutoChannel]] = {}

    def enable(self, channel: AutoChannel) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO autorecord (guild_id, voice_channel_id, text_channel_id,"
                " enabled_by, since) VALUES (?, ?, ?, ?, ?)",
                (
                    channel.guild_id,
                    channel.voice_channel_id,
                    channel.text_channel_id,
                    channel.enabled_by,
                    time.time(),
                ),
            )
            self._cache.pop(channel.guild_id, None)

    def disable(self, guild_id: int, voice_channel_id: int) -> bool:
        """False if the channel was not auto-recorded."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM autorecord WHERE guild_id = ? AND voice_channel_id = ?",
                (guild_id, voice_channel_id),
            )
            self._cache.pop(guild_id, None)
            return cur.rowcount > 0

    def channels(self, guild_id: int) -> list[AutoChannel]:
        with self._lock:
            cached = self._cache.get(guild_id)
            if cached is None:
                rows = self._db.execute(
                    "SELECT guild_id, voice_channel_id, text_channel_id, enabled_by"
                    " FROM autorecord WHERE guild_id = ? ORDER BY since, voice_channel_id",
                    (guild_id,),
                ).fetchall()
                cached = self._cache[guild_id] = [AutoChannel(*map(int, row)) for row in rows]
            return list(cached)

    def get(self, guild_id: int, voice_channel_id: int) -> AutoChannel | None:
        found = [c for c in self.channels(guild_id) if c.voice_channel_id == voice_channel_id]
        return found[0] if found else None

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True, slots=True)
class AutoRecordPolicy:
    #: How long an auto-recorded channel stays empty before its notes are made: someone
    #: whose connection dropped gets back into the same meeting.
    empty_grace_s: float = 60.0


class Action(Enum):
    NOTHING = "nothing"
    START = "start"  #: join the channel and start notes
    ARM_STOP = "arm-stop"  #: the channel is empty: stop after the grace period
    DISARM_STOP = "disarm-stop"  #: someone came back within it


@dataclass(frozen=True, slots=True)
class Situation:
    """What :func:`decide` looks at, after one member's voice state changed."""

    joined: int | None  #: the channel the member is now in (None: left voice)
    left: int | None  #: the channel they were in before (None: was not in voice)
    enabled: frozenset[int]  #: the guild's auto-record channels
    recording_in: int | None  #: the channel of the guild's meeting, if one runs
    auto_meeting: bool  #: that meeting was started by auto-record
    occupied: bool  #: the meeting's channel still has members (other than the bot)
    stop_armed: bool
    first_in: bool  #: the member is alone in the channel they joined


def decide(s: Situation) -> Action:
    """What to do about one voice state change. Notes start when the first member joins
    an empty auto-record channel (not when someone joins people who chose to stop); a
    meeting someone started with /startnotes is never stopped by auto-record; no meeting
    is started while one runs."""
    if s.joined == s.left:
        return Action.NOTHING  # mute, deafen, stream: not a move
    if s.recording_in is None:
        return Action.START if s.joined in s.enabled and s.first_in else Action.NOTHING
    if not s.auto_meeting:
        return Action.NOTHING
    if s.joined == s.recording_in and s.stop_armed:
        return Action.DISARM_STOP
    if s.left == s.recording_in and not s.occupied and not s.stop_armed:
        return Action.ARM_STOP
    return Action.NOTHING


class AutoRecorder:
    """Applies :func:`decide` for one bot. ``start(channel)`` and ``stop(guild_id)`` are
    the bot's; ``members(guild_id, channel_id)`` reads the library's voice states (who,
    other than the bot, is in a channel; None if it cannot be seen)."""

    def __init__(
        self,
        store: AutoRecordStore,
        policy: AutoRecordPolicy,
        *,
        start: Callable[[AutoChannel], Awaitable[bool]],
        stop: Callable[[int], Awaitable[None]],
        members: Callable[[int, int], list[int] | None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.policy = policy
        self._start, self._stop, self._members, self._sleep = start, stop, members, sleep
        #: guild -> the voice channel its auto-started meeting records
        self.auto: dict[int, int] = {}
        self._timers: dict[int, asyncio.Task[None]] = {}
        self._starting: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def changed(
        self,
        guild_id: int,
        user_id: int,
        before: int | None,
        after: int | None,
        *,
        recording_in: int | None,
    ) -> Action:
        """One member's voice state changed (bots are not members here). Returns what
        was done, for the log and the tests."""
        if guild_id in self._starting:
            return Action.NOTHING
        enabled = frozenset(c.voice_channel_id for c in self.store.channels(guild_id))
        auto_channel = self.auto.get(guild_id)
        situation = Situation(
            joined=after,
            left=before,
            enabled=enabled,
            recording_in=recording_in,
            auto_meeting=auto_channel is not None and auto_channel == recording_in,
            occupied=recording_in is not None and bool(self._members(guild_id, recording_in)),
            stop_armed=guild_id in self._timers,
            first_in=after is not None and self._members(guild_id, after) == [user_id],
        )
        action = decide(situation)
        if action is Action.START and after is not None:
            channel = self.store.get(guild_id, after)
            if channel is not None:
                self._starting.add(guild_id)
                self._spawn(self._run_start(channel))
        elif action is Action.ARM_STOP:
            log.info(
                "auto-record: channel %s is empty; notes in %.0f s",
                recording_in,
                self.policy.empty_grace_s,
            )
            self._timers[guild_id] = asyncio.create_task(self._stop_after_grace(guild_id))
        elif action is Action.DISARM_STOP:
            log.info("auto-record: someone is back in channel %s; recording goes on", after)
            self._timers.pop(guild_id).cancel()
        return action

    def forget(self, guild_id: int) -> None:
        """The guild's meeting ended (by /stopnotes, a lost connection...)."""
        self.auto.pop(guild_id, None)
        timer = self._timers.pop(guild_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_start(self, channel: AutoChannel) -> None:
        try:
            if await self._start(channel):
                self.auto[channel.guild_id] = channel.voice_channel_id
        except Exception:
            log.exception("auto-record could not start in channel %s", channel.voice_channel_id)
        finally:
            self._starting.discard(channel.guild_id)

    async def _stop_after_grace(self, guild_id: int) -> None:
        await self._sleep(self.policy.empty_grace_s)
        self._timers.pop(guild_id, None)
        self.auto.pop(guild_id, None)
        try:
            await self._stop(guild_id)
        except Exception:
            log.exception("auto-record could not stop the meeting in guild %s", guild_id)

    async def close(self) -> None:
        for task in [*self._timers.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._timers.values(), *self._tasks, return_exceptions=True)
        self._timers.clear()
