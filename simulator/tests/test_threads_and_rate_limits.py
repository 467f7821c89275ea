"""Threads started from messages and the per-channel message rate limits, by plain HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from discordsim.app import Simulator
from discordsim.ratelimit import RateLimits, bucket_hash
from discordsim.testing.rawgateway import RawGateway

HAS_THREAD = 1 << 5


class FakeClock:
    """A monotonic clock the test moves by hand, so windows close without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(lifetime=60) as s:
        yield s


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {sim.token}"}) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, **kw: Any
) -> tuple[int, Any, dict[str, str]]:
    async with http.request(method, sim.api_base + path, **kw) as resp:
        body = None if resp.status == 204 else json.loads(await resp.read())
        return resp.status, body, dict(resp.headers)


async def post(
    http: aiohttp.ClientSession, sim: Simulator, channel_id: int | str, text: str
) -> tuple[int, Any, dict[str, str]]:
    return await call(http, sim, "POST", f"/channels/{channel_id}/messages", json={"content": text})


# --- threads -----------------------------------------------------------------------------


async def test_thread_from_message_is_a_channel_for_posts_and_edits(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    w = sim.world
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    _, starter, _ = await post(http, sim, w.text_channel.id, "Recording started")

    status, thread, _ = await call(
        http,
        sim,
        "POST",
        f"/channels/{w.text_channel.id}/messages/{starter['id']}/threads",
        json={"name": "Live captions", "auto_archive_duration": 60},
    )
    assert status == 201
    # Discord's thread channel: the starter message's id, parent, owner, metadata, and
    # the creator's own thread membership.
    assert thread["id"] == starter["id"] and thread["type"] == 11
    assert thread["parent_id"] == str(w.text_channel.id)
    assert thread["owner_id"] == str(w.bot.id) and thread["guild_id"] == str(w.guild_id)
    assert (thread["member_count"], thread["message_count"]) == (1, 0)
    assert thread["thread_metadata"]["auto_archive_duration"] == 60
    assert thread["thread_metadata"]["archived"] is False
    assert "create_timestamp" in thread["thread_metadata"]
    assert thread["member"]["user_id"] == str(w.bot.id)

    created = await gw.recv_dispatch("THREAD_CREATE")
    assert created["newly_created"] is True and created["id"] == thread["id"]
    updated = await gw.recv_dispatch("MESSAGE_UPDATE")
    assert updated["id"] == starter["id"] and updated["flags"] & HAS_THREAD
    assert updated["thread"]["id"] == thread["id"]
    entry = sim.record.first("thread.create")
    assert entry is not None and entry["parent_id"] == w.text_channel.id
    assert entry["message_id"] == int(starter["id"]) and entry["name"] == "Live captions"

    status, caption, _ = await post(http, sim, thread["id"], "[00:03] alice: hello")
    assert status == 200 and caption["channel_id"] == thread["id"]
    status, edited, _ = await call(
        http,
        sim,
        "PATCH",
        f"/channels/{thread['id']}/messages/{caption['id']}",
        json={"content": "[00:03] alice: hello there"},
    )
    assert status == 200 and edited["content"] == "[00:03] alice: hello there"
    in_thread = [
        (e["via"], e["content"]) for e in sim.record.of("message", channel_id=int(thread["id"]))
    ]
    assert in_thread == [
        ("channel", "[00:03] alice: hello"),
        ("channel.edit", "[00:03] alice: hello there"),
    ]
    _, fetched, _ = await call(http, sim, "GET", f"/channels/{thread['id']}")
    assert fetched["type"] == 11 and fetched["message_count"] == 1
    assert fetched["last_message_id"] == caption["id"]
    # The thread is a channel of the guild for a client that logs in later.
    assert [t["id"] for t in sim.gateway.guild_create()["threads"]] == [thread["id"]]
    assert thread["id"] not in [c["id"] for c in sim.gateway.guild_create()["channels"]]


async def test_thread_refusals(sim: Simulator, http: aiohttp.ClientSession) -> None:
    w = sim.world
    _, starter, _ = await post(http, sim, w.text_channel.id, "announcement")
    path = f"/channels/{w.text_channel.id}/messages/{starter['id']}/threads"

    status, body, _ = await call(http, sim, "POST", path, json={"name": ""})
    assert (status, body["code"]) == (400, 50035)
    status, body, _ = await call(
        http, sim, "POST", path, json={"name": "x", "auto_archive_duration": 5}
    )
    assert (status, body["code"]) == (400, 50035)
    status, body, _ = await call(
        http, sim, "POST", f"/channels/{w.text_channel.id}/messages/1/threads", json={"name": "x"}
    )
    assert (status, body["code"]) == (404, 10008)

    status, thread, _ = await call(http, sim, "POST", path, json={"name": "captions"})
    assert status == 201
    status, body, _ = await call(http, sim, "POST", path, json={"name": "again"})
    assert (status, body["code"]) == (400, 160004)
    _, inner, _ = await post(http, sim, thread["id"], "in the thread")
    status, body, _ = await call(
        http,
        sim,
        "POST",
        f"/channels/{thread['id']}/messages/{inner['id']}/threads",
        json={"name": "nested"},
    )
    assert (status, body["code"]) == (400, 50024)
    assert len(sim.record.of("thread.create")) == 1


# --- rate limits -------------------------------------------------------------------------


async def test_sixth_message_in_five_seconds_is_429_with_discords_body_and_headers(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    sim.rate_limits = RateLimits(clock=clock)
    channel = sim.world.text_channel.id
    remaining = []
    for i in range(5):
        status, _, headers = await post(http, sim, channel, f"line {i}")
        assert status == 200
        assert headers["X-RateLimit-Limit"] == "5"
        assert headers["X-RateLimit-Bucket"] == bucket_hash("messages.create")
        assert float(headers["X-RateLimit-Reset-After"]) == 5.0
        assert float(headers["X-RateLimit-Reset"]) > 0
        remaining.append(int(headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]

    clock.now += 1.5
    status, body, headers = await post(http, sim, channel, "line 5")
    assert status == 429
    assert body == {"message": "You are being rate limited.", "retry_after": 3.5, "global": False}
    assert headers["Retry-After"] == "4"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert float(headers["X-RateLimit-Reset-After"]) == 3.5
    assert headers["Via"]  # the libraries treat a 429 without it as a Cloudflare ban
    [limited] = sim.record.of("rest.rate_limited")
    assert limited["channel_id"] == channel and limited["retry_after"] == 3.5
    assert limited["route"] == "/channels/{channel_id}/messages"
    assert [e["content"] for e in sim.record.of("message")] == [f"line {i}" for i in range(5)]

    # Refused requests do not count; the window closes on time and a new one opens.
    clock.now += 3.5
    status, _, headers = await post(http, sim, channel, "line 5")
    assert status == 200 and headers["X-RateLimit-Remaining"] == "4"


async def test_buckets_are_per_channel_and_edits_have_their_own(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.rate_limits = RateLimits(clock=FakeClock())
    w = sim.world
    other = w.add_channel("minutes", 0)
    ids = []
    for i in range(5):
        _, msg, _ = await post(http, sim, w.text_channel.id, f"line {i}")
        ids.append(msg["id"])
    status, _, headers = await post(http, sim, other.id, "elsewhere")
    assert status == 200 and headers["X-RateLimit-Remaining"] == "4"
    # Same route, same hash on every channel; the channel id is the major parameter.
    assert headers["X-RateLimit-Bucket"] == bucket_hash("messages.create")

    edit = f"/channels/{w.text_channel.id}/messages/{ids[0]}"
    for n in range(5):
        status, _, headers = await call(http, sim, "PATCH", edit, json={"content": f"v{n}"})
        assert status == 200 and headers["X-RateLimit-Remaining"] == str(4 - n)
    assert headers["X-RateLimit-Bucket"] == bucket_hash("messages.edit")
    status, body, _ = await call(http, sim, "PATCH", edit, json={"content": "v5"})
    assert status == 429 and body["retry_after"] == 5.0
    kinds = [e["route"] for e in sim.record.of("rest.rate_limited")]
    assert kinds == ["/channels/{channel_id}/messages/{message_id}"]


async def test_unlimited_routes_carry_no_rate_limit_headers(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, _, headers = await call(http, sim, "GET", "/users/@me")
    assert status == 200 and "X-RateLimit-Bucket" not in headers


async def test_rate_limits_can_be_switched_off() -> None:
    async with (
        Simulator(lifetime=60, rate_limits=False) as sim,
        aiohttp.ClientSession(headers={"Authorization": f"Bot {sim.token}"}) as http,
    ):
        for i in range(8):
            status, _, headers = await post(http, sim, sim.world.text_channel.id, f"line {i}")
            assert status == 200 and "X-RateLimit-Remaining" not in headers
        assert sim.record.of("rest.rate_limited") == []


def test_window_opens_with_the_first_request_and_rounds_reset_up() -> None:
    clock = FakeClock()
    limits = RateLimits(limit=2, per=1.0, clock=clock, wall=lambda: 50.0)
    first = limits.take("b", "1")
    assert first.allowed and first.remaining == 1 and first.headers["X-RateLimit-Reset"] == "51.000"
    clock.now += 0.0004
    second = limits.take("b", "1")
    # 0.9996 s left is announced as 1.000: a client that waits what it is told is never early.
    assert second.allowed and second.remaining == 0 and second.reset_after == 1.0
    third = limits.take("b", "1")
    assert not third.allowed and third.retry_after == 1.0
    assert limits.take("b", "2").allowed  # another channel
    clock.now += 1.0
    assert limits.take("b", "1").remaining == 1
