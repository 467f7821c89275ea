"""Structured logging with a redaction filter.

Every handler notetaker installs carries :class:`RedactingFilter`, so no log line at any
level, from notetaker or from a Discord library, contains a bot token or a voice token:

* secrets registered with :func:`register_secret` (the configured bot token; every voice
  token the engine receives) are replaced wherever they appear;
* anything shaped like a Discord bot token, and the value of any ``"token"`` key in a
  logged JSON payload, is replaced too, so a token nobody registered is still hidden.

The filter rewrites the record itself (message, arguments, traceback text), so formatters
and handlers downstream only ever see the redacted text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

REDACTED = "[REDACTED]"

# Bot tokens: base64 user id . timestamp . HMAC (the shape Discord documents and issues).
_BOT_TOKEN = re.compile(r"[MNO][A-Za-z0-9_-]{20,30}\.[A-Za-z0-9_-]{5,7}\.[A-Za-z0-9_-]{25,45}")
# "token": "..." / 'token': '...' / token=... in payload dumps and reprs.
_TOKEN_FIELD = re.compile(
    r"""(?P<key>["']?(?:token|secret_key|authorization)["']?\s*[:=]\s*)(?P<q>["']?)(?P<val>[^"',\s}]+)(?P=q)""",
    re.IGNORECASE,
)

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Never log ``secret`` (ignored if empty or too short to be a token)."""
    if secret and len(secret) >= 8:
        with _lock:
            _secrets.add(secret)


def forget_secrets() -> None:
    """Drop every registered secret (for tests)."""
    with _lock:
        _secrets.clear()


def redact(text: str) -> str:
    """``text`` with every known or token-shaped secret replaced by ``[REDACTED]``."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _BOT_TOKEN.sub(REDACTED, text)
    return _TOKEN_FIELD.sub(lambda m: f"{m['key']}{m['q']}{REDACTED}{m['q']}", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record so that no secret survives into any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not leak its arguments either
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        # The traceback is now text; drop the live exception so no formatter re-renders it.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """``2026-11-24T10:00:00Z INFO notetaker.voice msg key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{ts}Z {record.levelname:<7} {record.name} {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, default=str)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


def setup_logging(
    level: str = "INFO", fmt: str = "text", stream: Any = None, *, path: Path | None = None
) -> logging.Handler:
    """Install one redacting handler on the root logger (replacing ours if present):
    to ``path`` (a file, truncated) if given, else to ``stream`` (default stderr)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_notetaker", False):
            root.removeHandler(h)
            h.close()  # a file handler closes its file; a stream handler leaves stderr open
    handler: logging.Handler = (
        logging.FileHandler(path, mode="w", encoding="utf-8")
        if path is not None
        else logging.StreamHandler(stream or sys.stderr)
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    handler._notetaker = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler
