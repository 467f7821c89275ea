"""``notetaker doctor``'s deeper checks: what the installed stack meets on today's Discord,
and (with a token) whether the token works, without ever printing it.

The live check runs the stack-check suite (:mod:`notetaker_harness.stackcheck`, the same
suite as the version matrix) against an in-process simulator. The harness and the
simulator are separate distributions, core's optional ``doctor`` extra, so the harness is
imported lazily here (the one place core reaches it); without it the doctor says how to
install it instead of failing.

Every check returns :class:`Finding` lines; the CLI prints them.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from notetaker import libraries
from notetaker.config import Settings

#: When Discord began closing voice connections without DAVE (voice-protocol.md section 3).
DAVE_ENFORCED = "2026-03-02"
#: The checks the doctor runs on the configured transport: the suite without the 10 s
#: receive check, so that it finishes in seconds (the field checks have 3 s of speech).
DOCTOR_CHECKS = (
    "dave-required-4017",
    "connect",
    "port-strip-4006",
    "stale-session-4006",
    "crash-4015",
    "failover",
    "padding",
    "op5-late",
)
TODAY = "dave-required-4017"
INSTALL_SIM = (
    "the live check needs the simulator and its harness: from a checkout, "
    "pip install ./simulator[media] ./harness"
)
#: What the checks mean when they fail, for the user (keyed by check name).
_MEANING = {
    "connect": "cannot join voice on Discord even without DAVE enforcement",
    "port-strip-4006": "strips the voice endpoint's port: Discord's non-443 voice servers "
    "close it with 4006 (reported since mid-2025)",
    "stale-session-4006": "does not recover when its voice session goes stale (4006)",
    "crash-4015": "does not come back after a voice server crash (4015)",
    "failover": "does not follow Discord to a new voice server (failover)",
    "padding": "loses audio to RTP padding or padding-only packets, which real clients send",
    "op5-late": "loses a speaker's first packets when they come before op 5 (Speaking)",
}


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's output. ``ok`` None: information, not a check."""

    ok: bool | None
    text: str


def _first_with_dave(library: str) -> str | None:
    """The first release of ``library`` whose own voice client offers DAVE (none of them
    can hand notetaker audio under DAVE)."""
    known = libraries.BY_DISTRIBUTION.get(library)
    return known.first_dave if known else None


def _has_dave(library: str, version: str) -> bool:
    known = libraries.BY_DISTRIBUTION.get(library)
    return known is not None and known.release(version).dave


def _upgrade_hint(library: str) -> str:
    first = _first_with_dave(library)
    return f" or upgrade to {library} >= {first}" if first else ""


def verdict(results: Sequence[Any], transport: str) -> list[Finding]:
    """Turn stack-check results of one transport into what the user needs to hear.

    ``results`` are :class:`notetaker_harness.stackcheck.Result` objects (read by attribute).
    """
    mine = [r for r in results if r.transport == transport]
    if not mine:
        return []
    library, version = mine[0].library, mine[0].version
    stack = f"{library} {version}" + ("" if transport == "engine" else " (its own voice client)")
    by_check = {r.check: r for r in mine}
    out: list[Finding] = []
    fix = f"use transport=engine{_upgrade_hint(library)}"
    today = by_check.get(TODAY)
    if today is not None:
        if getattr(today, "inconclusive", None):
            out.append(Finding(None, f"today's Discord: not checked: {today.cause}"))
        elif today.ok:
            out.append(
                Finding(
                    True,
                    f"{stack} joins voice on today's Discord (DAVE required since "
                    f"{DAVE_ENFORCED}): {today.cause}",
                )
            )
        elif today.code == 4017 and _has_dave(library, version):
            out.append(
                Finding(
                    False,
                    f"{library} {version} supports DAVE, but offers none here (its DAVE "
                    f"dependency is missing): Discord closes it with 4017 since "
                    f"{DAVE_ENFORCED}; pip install '{library}[voice]=={version}', or use "
                    "transport=engine",
                )
            )
        elif today.code == 4017:
            out.append(
                Finding(
                    False,
                    f"{library} {version} has no DAVE: Discord closes it with 4017 since "
                    f"{DAVE_ENFORCED}; {fix}",
                )
            )
        else:
            out.append(Finding(False, f"{stack} cannot join today's Discord: {today.cause}; {fix}"))
    link = next((r.link for r in mine if getattr(r, "link", "")), "")
    if link:
        out.append(Finding(None, f"voice link: {link}"))
    connect = by_check.get("connect")
    unreached: list[str] = []
    for name in DOCTOR_CHECKS:
        r = by_check.get(name)
        if r is None or name == TODAY:
            continue
        if r.ok:
            out.append(Finding(True, f"{name}: {r.cause}"))
        elif (
            name != "connect"
            and connect is not None
            and not connect.ok
            and r.cause == connect.cause
        ):
            unreached.append(name)  # fails for the reason connect does: say it once
        else:
            out.append(
                Finding(False, f"{name}: {_MEANING.get(name, 'fails')} ({r.label}: {r.cause})")
            )
    if unreached:
        out.append(
            Finding(False, f"{', '.join(unreached)}: not reached, it cannot connect (see connect)")
        )
    if transport == "native":
        out.append(
            Finding(
                None,
                f"{library}'s own voice client cannot hand notetaker the meeting's audio; "
                "recording needs transport=engine",
            )
        )
    return out


def _stackcheck() -> Any:
    try:
        from notetaker_harness import stackcheck
    except ImportError:
        return None
    return stackcheck


def live_report(settings: Settings, *, checks: Sequence[str] = DOCTOR_CHECKS) -> list[Finding]:
    """Run the suite live against the simulator for the configured backend and transport.

    On the native transport it also runs today's check on the engine, so the advice to
    switch is backed by evidence. Takes seconds (each check is a fresh simulator).
    """
    stackcheck = _stackcheck()
    if stackcheck is None:
        return [Finding(None, INSTALL_SIM)]
    try:
        results = asyncio.run(
            stackcheck.run_suite([settings.transport], list(checks), backend=settings.backend)
        )
        out = verdict(results, settings.transport)
        if settings.transport == "native":
            engine = asyncio.run(
                stackcheck.run_suite(["engine"], [TODAY], backend=settings.backend)
            )
            r = engine[0]
            state = "joins" if r.ok else f"does not join ({r.label}: {r.cause})"
            out.append(Finding(r.ok, f"with transport=engine it {state} today's Discord"))
        return out
    except RuntimeError as exc:  # no backend / library installed
        return [Finding(False, f"live check not run: {exc}")]


def native_libraries() -> list[Finding]:
    """libopus and davey actually load (not just: are installed)."""
    out = []
    name = ctypes.util.find_library("opus")
    try:
        if name is None:
            raise OSError("not found")
        ctypes.CDLL(name)
        out.append(Finding(True, f"libopus loads ({name})"))
    except OSError as exc:
        out.append(Finding(False, f"libopus does not load: {exc} (apt install libopus0)"))
    try:
        davey = importlib.import_module("davey")
        version = getattr(davey, "DAVE_PROTOCOL_VERSION", None)
        out.append(
            Finding(True, "davey loads" + (f" (DAVE protocol {version})" if version else ""))
        )
    except ImportError as exc:
        out.append(Finding(False, f"davey does not load: {exc} (pip install davey)"))
    return out


#: The gateway intents the bot asks for (every backend): guilds and voice states. Neither
#: is privileged, so nothing has to be switched on in the Developer Portal.
INTENTS = {"guilds": 1 << 0, "guild_voice_states": 1 << 7}
_PRIVILEGED_FLAGS = {
    "GUILD_MEMBERS": (1 << 14) | (1 << 15),
    "MESSAGE_CONTENT": (1 << 18) | (1 << 19),
    "PRESENCE": (1 << 12) | (1 << 13),
}


async def token_report(
    token: str, *, api_base: str = "https://discord.com/api/v10", limit_s: float = 10.0
) -> list[Finding]:
    """Check ``token`` against Discord's REST API (``/users/@me``, ``/applications/@me``).

    The token goes only into the Authorization header; no finding contains it.
    """
    import aiohttp

    headers = {"Authorization": f"Bot {token}", "User-Agent": "notetaker doctor"}
    out: list[Finding] = []
    try:
        async with aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=limit_s)
        ) as http:
            async with http.get(f"{api_base}/users/@me") as resp:
                if resp.status == 401:
                    return [Finding(False, "the bot token is rejected by Discord (401)")]
                if resp.status != 200:
                    return [Finding(False, f"token check: Discord answered HTTP {resp.status}")]
                me = await resp.json()
            out.append(Finding(True, f"the bot token works: logged in as {me.get('username')}"))
            async with http.get(f"{api_base}/applications/@me") as resp:
                app = await resp.json() if resp.status == 200 else {}
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [Finding(False, f"token check: cannot reach Discord ({type(exc).__name__})")]
    flags = int(app.get("flags") or 0)
    enabled = [name for name, bits in _PRIVILEGED_FLAGS.items() if flags & bits]
    out.append(
        Finding(
            True,
            "intents: " + ", ".join(INTENTS) + " (not privileged: nothing to enable in the "
            "Developer Portal)"
            + (f"; privileged enabled but unused: {', '.join(enabled)}" if enabled else ""),
        )
    )
    return out
