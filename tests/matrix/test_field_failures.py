"""The field failures, reproduced with the installed library's own voice client.

Which releases strip the voice endpoint's port was read in each library's source
(``voice_client.py``: ``endpoint.rpartition(':')`` / ``_strip_port``) and matches the
trackers: py-cord before 2.7 (#2827, fixed by #2833), discord.py before 2.6 (#10207,
fixed by PR #10210), nextcord before 3.1.1 (#1262, fixed by #1264), disnake before
2.10 (its 2.9.3 ``rpartition(':')``); :mod:`notetaker.libraries` holds the releases. On
Discord since mid-2025 they reach port 443 and are closed with 4006; the others keep the
port.

The ``field`` nox session runs this file on py-cord 2.6.1, the release users were told to
"downgrade to", which strips the port; the backend sessions run it on the newest releases,
which do not.
"""

from __future__ import annotations

import os
from importlib import metadata

from notetaker import libraries
from notetaker_harness.stackcheck import SUITE_BY_NAME, run_check

BACKEND = os.environ.get("NOTETAKER_TEST_BACKEND") or ""
LIBRARY = libraries.BY_BACKEND[BACKEND].distribution if BACKEND else ""


async def test_port_stripping_releases_are_closed_with_4006_as_in_the_field() -> None:
    version = metadata.version(LIBRARY)
    result = await run_check(SUITE_BY_NAME["port-strip-4006"], BACKEND, "native", LIBRARY, version)
    assert result.inconclusive is None, result.inconclusive
    listeners = {entry.get("listener") for entry in result.trace if entry.get("kind") == "connect"}
    if not libraries.release(LIBRARY, version).keeps_port:
        assert (result.outcome, result.code) == ("closed", 4006), result.cause
        assert "443" in result.cause
    else:
        assert result.code != 4006, result.cause
        assert "443" not in str(listeners)
