"""The backend contract, part 4: what live captions need from the platform — slash command
options, message ids, threads under a message, edits, Discord's per-channel rate limit,
and the library's HTTP errors as core's errors.

Runs unchanged against every backend (NOTETAKER_TEST_BACKEND) and the simulator.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from notetaker.bot import COMMANDS
from notetaker.bridge import translate_http_error
from notetaker.commands import CommandContext, CommandInvocation
from notetaker.errors import PlatformError, RateLimited

#: Discord's option types for core's option kinds.
OPTION_TYPES = {"boolean": 5, "string": 3}
#: The module each backend's library installs.
LIBRARY_MODULE = {
    "pycord": "discord",
    "discordpy": "discord",
    "nextcord": "nextcord",
    "disnake": "disnake",
}


def _library() -> Any:
    return importlib.import_module(LIBRARY_MODULE[os.environ["NOTETAKER_TEST_BACKEND"]])


@dataclass
class FakeResponse:
    """What the libraries' HTTPException reads from an aiohttp response."""

    status: int
    reason: str = "Too Many Requests"
    headers: dict[str, str] = field(default_factory=dict)


def _spy_invocations(running: Any, monkeypatch: pytest.MonkeyPatch) -> list[CommandInvocation]:
    """Every invocation the bot is handed, as the backend built it from the interaction."""
    seen: list[CommandInvocation] = []
    handle = running.bot.handle

    async def spy(ctx: CommandContext) -> None:
        seen.append(ctx.invocation)
        await handle(ctx)

    monkeypatch.setattr(running.bot, "handle", spy)
    return seen


# --- slash command options -------------------------------------------------------------


async def test_every_commands_options_are_registered_optional_with_their_types(
    running: Any,
) -> None:
    for spec in COMMANDS:
        registered = running.sim.commands.find(spec.name, running.sim.world.guild_id)
        assert registered is not None
        got = {o["name"]: o for o in registered.get("options") or []}
        assert sorted(got) == sorted(o.name for o in spec.options), spec.name
        for option in spec.options:
            sent = got[option.name]
            assert sent["type"] == OPTION_TYPES[option.kind]
            assert sent["description"] == option.description
            assert not sent.get("required", False)  # Discord's default is optional
            assert sent.get("max_length") == option.max_length


@pytest.mark.parametrize(
    ("given", "expected_payload"),
    [
        (
            {"captions": True, "language": "de"},
            [
                {"name": "captions", "type": 5, "value": True},
                {"name": "language", "type": 3, "value": "de"},
            ],
        ),
        ({"captions": False}, [{"name": "captions", "type": 5, "value": False}]),
        ({}, None),
    ],
    ids=["both", "false-is-given", "none"],
)
async def test_given_options_reach_the_bot_and_only_those(
    running: Any,
    monkeypatch: pytest.MonkeyPatch,
    given: dict[str, Any],
    expected_payload: list[dict[str, Any]] | None,
) -> None:
    seen = _spy_invocations(running, monkeypatch)
    # The guest is refused at once: options are read before permissions are checked,
    # and no voice connection is needed to see them arrive.
    inv = await running.sim.invoke("startnotes", user=running.guest, options=given)
    assert inv.payload["data"].get("options") == expected_payload
    await inv.callback()
    assert seen == [CommandInvocation("startnotes", given)]


# --- messages, threads, edits ----------------------------------------------------------


async def test_thread_under_a_posted_message_takes_messages_and_edits(running: Any) -> None:
    sim, platform = running.sim, running.bot.platform
    channel = sim.world.text_channel.id
    announcement = await platform.send_message(channel, "Recording started by alice")
    posted = sim.record.first("message", via="channel", content="Recording started by alice")
    assert posted is not None and announcement == posted["id"]

    thread_id = await platform.create_thread(channel, announcement, "Live captions")
    created = sim.record.first("thread.create")
    assert created is not None
    assert (created["id"], created["parent_id"], created["message_id"], created["name"]) == (
        thread_id,
        channel,
        announcement,
        "Live captions",
    )
    caption = await platform.send_message(thread_id, "[00:01] alice: hello")
    assert caption is not None
    await platform.edit_message(thread_id, caption, "[00:01] alice: hello there")
    await platform.edit_message(channel, announcement, "Recording started by alice (captions)")

    in_thread = [
        (e["via"], e["id"], e["content"])
        for e in sim.record.of("message")
        if e["channel_id"] == thread_id
    ]
    assert in_thread == [
        ("channel", caption, "[00:01] alice: hello"),
        ("channel.edit", caption, "[00:01] alice: hello there"),
    ]
    edited = sim.record.first("message", via="channel.edit", id=announcement)
    assert edited is not None and edited["channel_id"] == channel


async def test_a_thread_takes_messages_before_the_library_has_cached_it(
    running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, platform, client = running.sim, running.bot.platform, running.backend.client
    channel = sim.world.text_channel.id
    announcement = await platform.send_message(channel, "Recording started")
    thread_id = await platform.create_thread(channel, announcement, "Live captions")
    # As if THREAD_CREATE had not been processed yet: the library knows no such channel.
    lookup = client.get_channel
    monkeypatch.setattr(
        client, "get_channel", lambda cid: None if cid == thread_id else lookup(cid)
    )
    caption = await platform.send_message(thread_id, "first caption")
    entry = sim.record.first("message", id=caption)
    assert entry is not None and entry["channel_id"] == thread_id
    # The thread object kept from create_thread was used: no GET /channels/{thread}.
    assert sim.record.of("rest", method="GET", path=f"/channels/{thread_id}") == []


async def test_twelve_quick_messages_arrive_in_order_without_a_429(running: Any) -> None:
    sim, platform = running.sim, running.bot.platform
    channel = sim.world.text_channel.id
    lines = [f"[00:{i:02d}] alice: line {i}" for i in range(12)]
    for line in lines:
        await platform.send_message(channel, line)
    assert [e["content"] for e in sim.record.of("message", channel_id=channel)] == lines
    # 12 messages at 5 per 5 s: the bucket ran dry, so the library had to wait...
    remaining = [
        e["ratelimit"]["remaining"]
        for e in sim.record.of("rest", method="POST", route="/channels/{channel_id}/messages")
    ]
    assert remaining.count(0) >= 2
    # ...and every library waits from the headers, before a 429: discord.py sleeps
    # X-RateLimit-Reset-After once Remaining hits 0 (Ratelimit._refresh on release),
    # py-cord holds the bucket's lock for Reset-After when Remaining is "0", nextcord
    # blocks the bucket until its reset task (Reset-After of the window's first answer).
    assert sim.record.of("rest.rate_limited") == []


async def test_a_429_is_waited_out_and_the_message_still_arrives_once(running: Any) -> None:
    sim, platform = running.sim, running.bot.platform
    channel = sim.world.text_channel.id
    # Another process of the same bot spends the channel's bucket; this client's library
    # has not seen the headers and walks into the 429.
    headers = {"Authorization": f"Bot {sim.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for i in range(5):
            url = f"{sim.api_base}/channels/{channel}/messages"
            async with http.post(url, json={"content": f"elsewhere {i}"}) as resp:
                assert resp.status == 200
    message_id = await platform.send_message(channel, "after the limit")
    # All three retry a 429 themselves, after waiting: discord.py and py-cord sleep the
    # body's retry_after; nextcord takes Remaining 0 / Reset-After from the 429's
    # headers and blocks the bucket until then. One 429, then the message, once.
    [limited] = sim.record.of("rest.rate_limited")
    assert limited["channel_id"] == channel
    [arrived] = sim.record.of("message", content="after the limit")
    assert arrived["id"] == message_id and arrived.seq > limited.seq


async def test_discords_refusals_reach_core_as_platform_errors(running: Any) -> None:
    sim, platform = running.sim, running.bot.platform
    channel = sim.world.text_channel.id
    with pytest.raises(PlatformError) as unknown_channel:
        await platform.send_message(1, "nowhere")
    assert unknown_channel.value.status == 404
    with pytest.raises(PlatformError) as unknown_message:
        await platform.edit_message(channel, 1, "nothing to edit")
    assert unknown_message.value.status == 404
    announcement = await platform.send_message(channel, "Recording started")
    assert announcement is not None
    await platform.create_thread(channel, announcement, "Live captions")
    with pytest.raises(PlatformError) as twice:
        await platform.create_thread(channel, announcement, "Live captions again")
    assert twice.value.status == 400 and "already been created" in str(twice.value)
    for error in (unknown_channel.value, unknown_message.value, twice.value):
        assert not isinstance(error, RateLimited)
        assert sim.token not in str(error)


# --- translating the library's exceptions ----------------------------------------------


def test_an_exception_with_status_429_becomes_rate_limited() -> None:
    class Limited(Exception):
        status = 429
        retry_after = 2.5
        text = "You are being rate limited."

    error = translate_http_error(Limited(), "send a message")
    assert isinstance(error, RateLimited)
    assert (error.status, error.retry_after) == (429, 2.5)
    assert "rate limited" in str(error) and "send a message" in str(error)


def test_the_librarys_429_http_exception_becomes_rate_limited_with_the_wait() -> None:
    lib = _library()
    response = FakeResponse(429, headers={"Retry-After": "3", "X-RateLimit-Reset-After": "2.750"})
    body = {"message": "You are being rate limited.", "retry_after": 2.75, "global": False}
    error = translate_http_error(lib.HTTPException(response, body), "send a message")
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0 and error.status == 429


def test_discordpys_rate_limited_without_a_status_is_rate_limited_too() -> None:
    limited = getattr(_library(), "RateLimited", None)
    if limited is None:
        pytest.skip("this library raises no exception of its own for a long rate limit")
    error = translate_http_error(limited(42.0), "edit a message")
    assert isinstance(error, RateLimited) and error.retry_after == 42.0


def test_other_http_statuses_become_platform_errors_and_others_pass() -> None:
    lib = _library()
    body = {"message": "Missing Permissions", "code": 50013}
    error = translate_http_error(
        lib.Forbidden(FakeResponse(403, "Forbidden"), body), "start a thread"
    )
    assert type(error) is PlatformError and error.status == 403
    assert "Missing Permissions" in str(error) and "start a thread" in str(error)
    assert translate_http_error(ValueError("not HTTP"), "send a message") is None


def test_no_token_reaches_an_error_message() -> None:
    lib = _library()
    token = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.U2ltdWxhdG9y.c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
    text = f"Invalid Form Body: Bot {token} at /webhooks/1/aW50ZXJhY3Rpb246abcdef/messages"
    exc = lib.HTTPException(FakeResponse(400, "Bad Request"), {"message": text, "code": 50035})
    error = translate_http_error(exc, "send a message", secrets=["c2VjcmV0"])
    assert error is not None
    message = str(error)
    assert token not in message and "c2VjcmV0" not in message
    assert "aW50ZXJhY3Rpb246abcdef" not in message and "<redacted>" in message
