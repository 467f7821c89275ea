"""Who may see what on the meeting page.

The operator's access token is made when ``notetaker web`` starts and printed with its
URL; opening that URL sets it as an HttpOnly cookie. A signed link opens one meeting
only, until it expires: ``<expires>.<HMAC-SHA256 of "meeting:<id>:<expires>">`` under a
secret kept in the data directory (``web-secret``, created once, readable by its owner
only), which the bot uses to sign the links it posts. Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

SECRET_FILE: Final = "web-secret"  # noqa: S105 - a file name
TOKEN_COOKIE: Final = "notetaker_token"  # noqa: S105 - a cookie name


def link_cookie(meeting_id: int) -> str:
    return f"notetaker_meeting_{meeting_id}"


def load_secret(data_dir: Path) -> bytes:
    """The data directory's signing secret, created (0600) the first time."""
    path = Path(data_dir) / SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()  # another process made it first
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


def new_token() -> str:
    return secrets.token_urlsafe(24)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _mac(secret: bytes, meeting_id: int, expires: int) -> str:
    digest = hmac.new(secret, f"meeting:{meeting_id}:{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def sign_link(secret: bytes, meeting_id: int, expires: int) -> str:
    """The ``link`` value that opens ``meeting_id`` until ``expires`` (a UNIX time)."""
    return f"{int(expires)}.{_mac(secret, meeting_id, int(expires))}"


def link_opens(secret: bytes, meeting_id: int, value: str, now: float) -> bool:
    """Whether ``value`` is a link for ``meeting_id`` that has not expired."""
    expires_text, _, mac = value.partition(".")
    if not expires_text.isdigit() or not mac:
        return False
    expires = int(expires_text)
    return same(mac, _mac(secret, meeting_id, expires)) and now < expires


def meeting_link(base_url: str, secret: bytes, meeting_id: int, expires: int) -> str:
    """The address that opens ``meeting_id``'s page until ``expires``."""
    link = sign_link(secret, meeting_id, expires)
    return f"{base_url.rstrip('/')}/meetings/{meeting_id}?link={link}"
