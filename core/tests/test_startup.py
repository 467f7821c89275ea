"""Logging in while Discord may be down: the backoff and the retry loop, with the clock
and the randomness injected (the backends' translation of real library errors is in
tests/contract/test_lifecycle.py; real processes in tests/process)."""

from __future__ import annotations

import logging
import random

import pytest

from notetaker.errors import DiscordUnreachable, NotetakerError, TokenRejected
from notetaker.startup import LoginBackoff, intents_refused, login_with_retry, token_rejected


def test_the_backoff_doubles_up_to_its_cap_and_jitters_within_its_spread() -> None:
    backoff = LoginBackoff(first_s=1.0, factor=2.0, max_s=30.0, jitter=0.1)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(1, 9)]
    for n, d in enumerate(delays, start=1):
        base = min(30.0, 2.0 ** (n - 1))
        assert base * 0.9 <= d <= base * 1.1
    assert LoginBackoff(jitter=0).delay(50, rng) == 30.0


class Flaky:
    """Fails ``failures`` times with ``error``, then logs in."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.resets = 0

    async def login(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    async def reset(self) -> None:
        self.resets += 1


def _translate(exc: BaseException) -> NotetakerError | None:
    if isinstance(exc, ConnectionRefusedError):
        return DiscordUnreachable("cannot connect to 127.0.0.1:9: refused")
    if isinstance(exc, PermissionError):
        return TokenRejected(token_rejected())
    return None


async def test_an_unreachable_discord_is_retried_with_one_line_per_try(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = Flaky(3, ConnectionRefusedError(111, "refused"))
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    with caplog.at_level(logging.INFO, logger="notetaker.startup"):
        tries = await login_with_retry(
            flaky.login,
            _translate,
            reset=flaky.reset,
            where="http://127.0.0.1:9/api/v10",
            backoff=LoginBackoff(jitter=0),
            sleep=sleep,
        )
    assert tries == 4 and flaky.resets == 3
    assert slept == [1.0, 2.0, 4.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all("Discord is unreachable at http://127.0.0.1:9/api/v10" in w for w in warnings)
    assert not any(r.exc_info for r in caplog.records)  # never a traceback
    assert "after 4 tries" in caplog.records[-1].getMessage()


async def test_a_rejected_token_ends_at_once_without_the_librarys_exception() -> None:
    flaky = Flaky(5, PermissionError("401"))

    async def sleep(s: float) -> None:
        raise AssertionError("a rejected token is not retried")

    with pytest.raises(TokenRejected) as caught:
        await login_with_retry(flaky.login, _translate, reset=flaky.reset, where="x", sleep=sleep)
    assert flaky.calls == 1
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_an_error_nobody_knows_propagates_unchanged() -> None:
    flaky = Flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await login_with_retry(flaky.login, _translate, reset=flaky.reset, where="x")


def test_the_sentences_say_what_to_do() -> None:
    assert "NOTETAKER_TOKEN" in token_rejected()
    text = intents_refused(["members", "presences"])
    assert "Server Members Intent and Presence Intent" in text
    assert "Privileged Gateway Intents" in text and "members_intent" in text
