"""The token never reaches a log line, at any level, from any logger, in any form."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from notetaker import logs

BOT_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GaBcDe.abcdefghijklmnopqrstuvwxyz012345"
VOICE_TOKEN = (
    "f4c1e0d9b8a7c6b5"  # voice tokens are short hex strings: only registration catches them
)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logs.setup_logging("DEBUG", "text", stream)
    logs.register_secret(BOT_TOKEN)
    logs.register_secret(VOICE_TOKEN)
    yield stream
    logging.getLogger().removeHandler(handler)
    logs.forget_secrets()


def _emit_everything(logger: logging.Logger) -> None:
    logger.debug("login with %s", BOT_TOKEN)
    logger.info("voice identify %s", {"server_id": "1", "token": VOICE_TOKEN, "session_id": "abc"})
    logger.warning("raw frame: " + json.dumps({"op": 0, "d": {"token": "unregistered-voice-tok"}}))
    logger.error("f-string leak Bot %s", BOT_TOKEN, extra={"header": f"Bot {BOT_TOKEN}"})
    try:
        raise RuntimeError(f"handshake failed for token {VOICE_TOKEN}")
    except RuntimeError:
        logger.exception("voice crash")
    logger.debug("stack", stack_info=True)
    logger.info("bad format %s %s", BOT_TOKEN)  # wrong arg count must not leak either


@pytest.mark.parametrize("name", ["notetaker.voice", "discord.gateway", "nextcord.voice_client"])
def test_no_secret_in_any_line_at_debug(captured: io.StringIO, name: str) -> None:
    _emit_everything(logging.getLogger(name))
    out = captured.getvalue()
    assert BOT_TOKEN not in out
    assert VOICE_TOKEN not in out
    assert "unregistered-voice-tok" not in out
    assert out.count(logs.REDACTED) >= 6
    assert "voice crash" in out and "RuntimeError" in out  # the traceback itself survives


def test_json_format_is_redacted_too() -> None:
    stream = io.StringIO()
    handler = logs.setup_logging("DEBUG", "json", stream)
    try:
        logging.getLogger("notetaker").info("token %s", BOT_TOKEN, extra={"guild": 5})
        record = json.loads(stream.getvalue().splitlines()[-1])
        assert BOT_TOKEN not in stream.getvalue()
        assert record["guild"] == 5 and record["level"] == "INFO"
    finally:
        logging.getLogger().removeHandler(handler)


def test_without_the_filter_the_token_would_leak() -> None:
    """Guards the test above: the same records through a handler without the filter leak."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    logger = logging.getLogger("unfiltered")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.debug("login with %s", BOT_TOKEN)
        assert BOT_TOKEN in stream.getvalue()
    finally:
        logger.removeHandler(handler)


def test_every_installed_handler_carries_the_filter() -> None:
    handler = logs.setup_logging("INFO")
    try:
        assert any(isinstance(f, logs.RedactingFilter) for f in handler.filters)
    finally:
        logging.getLogger().removeHandler(handler)
