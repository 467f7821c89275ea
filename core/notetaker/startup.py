"""Logging in when Discord may not be there yet: what a login failure means, and how long
to wait before the next try.

Under ``restart: unless-stopped`` a bot that exits on an unreachable Discord is a crash
loop, so transient failures (DNS, refused, TLS, timeouts, 5xx) are retried here with
capped, jittered exponential backoff — one log line per try, never a traceback — while a
rejected token or a refused intent, which no retry can fix, ends the run with one sentence.

The backoff is frozen data with a pure :meth:`LoginBackoff.delay`; the loop takes its
clock (``sleep``) and randomness from the caller, so tests drive it without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from notetaker.errors import DiscordUnreachable, NotetakerError, StartupError

log = logging.getLogger(__name__)

#: Privileged intents as the Developer Portal names them (Bot -> Privileged Gateway Intents).
PRIVILEGED_INTENTS = {
    "members": "Server Members Intent",
    "presences": "Presence Intent",
    "message_content": "Message Content Intent",
}
PORTAL = "https://discord.com/developers/applications"


@dataclass(frozen=True, slots=True)
class LoginBackoff:
    """Seconds between login tries: ``first_s``, times ``factor`` per try, at most
    ``max_s``, each spread by up to ``jitter`` (a fraction) so that many bots restarted
    by one outage do not come back in step."""

    first_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.1

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait after failed try number ``attempt`` (1-based)."""
        base = min(self.max_s, self.first_s * self.factor ** max(0, attempt - 1))
        return base * (1 + self.jitter * (2 * rng.random() - 1))


def token_rejected() -> str:
    """The sentence for a 401 at login (never includes the token)."""
    return (
        "Discord rejected the bot token (401 Unauthorized): set NOTETAKER_TOKEN to the "
        f"token on your application's Bot page at {PORTAL} (Reset Token makes a new one)."
    )


def intents_refused(requested: list[str]) -> str:
    """The sentence for a 4014 close: which privileged intents, and where to enable them."""
    names = [PRIVILEGED_INTENTS.get(i, i) for i in requested] or ["a privileged intent"]
    listed = " and ".join(names)
    return (
        f"Discord refused the {listed} the bot asks for (gateway close 4014): enable it at "
        f"{PORTAL} -> your application -> Bot -> Privileged Gateway Intents, or turn it "
        "off in the config (members_intent = false)."
    )


async def login_with_retry(
    login: Callable[[], Awaitable[None]],
    translate: Callable[[BaseException], NotetakerError | None],
    *,
    reset: Callable[[], Awaitable[None]],
    where: str,
    backoff: LoginBackoff | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> int:
    """Call ``login`` until it succeeds; the number of tries it took.

    ``translate`` turns the library's exception into notetaker's: a
    :class:`DiscordUnreachable` is logged in one line and retried after the backoff (``reset``
    runs first, to drop the failed try's HTTP session); a :class:`StartupError` is raised;
    anything it does not know (None) propagates unchanged.
    """
    backoff = backoff or LoginBackoff()
    rng = rng or random.Random()
    attempt = 0
    while True:
        attempt += 1
        try:
            await login()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = translate(exc)
            if isinstance(error, StartupError):
                raise error from None
            if not isinstance(error, DiscordUnreachable):
                raise
            wait = backoff.delay(attempt, rng)
            log.warning(
                "Discord is unreachable at %s (%s); retrying in %.0f s (try %d)",
                where,
                error,
                wait,
                attempt,
            )
            await reset()
            await sleep(wait)
            continue
        if attempt > 1:
            log.info("reached Discord at %s after %d tries", where, attempt)
        return attempt
