"""The simulator's REST subset, driven by plain HTTP: login, commands, interactions, messages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from discordsim.app import Simulator
from discordsim.interactions import Invocation
from discordsim.testing.rawgateway import RawGateway


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(lifetime=60) as s:
        yield s


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {sim.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, **kw: Any
) -> tuple[int, Any]:
    async with http.request(method, sim.api_base + path, **kw) as resp:
        if resp.status == 204:
            return 204, None
        assert resp.headers["Content-Type"] == "application/json"
        return resp.status, await resp.json()


def multipart(payload: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(payload), content_type="application/json")
    for field, (filename, data) in files.items():
        form.add_field(field, data, filename=filename, content_type="application/octet-stream")
    return form


async def test_login_routes(sim: Simulator, http: aiohttp.ClientSession) -> None:
    status, me = await call(http, sim, "GET", "/users/@me")
    assert status == 200 and me["id"] == str(sim.world.bot.id) and me["bot"] is True
    _, gw = await call(http, sim, "GET", "/gateway/bot")
    assert gw["url"] == sim.gateway_url and gw["shards"] == 1
    _, app = await call(http, sim, "GET", "/oauth2/applications/@me")
    assert app["id"] == str(sim.world.application_id) == str(sim.world.bot.id)

    bad = {"Authorization": "Bot x"}
    async with (
        aiohttp.ClientSession() as anon,
        anon.get(sim.api_base + "/users/@me", headers=bad) as r,
    ):
        assert r.status == 401
        assert (await r.json())["message"] == "401: Unauthorized"
    # The token is shaped like Discord's: its first part is the bot's id in base64.
    assert sim.token.count(".") == 2


async def test_unknown_route_is_404_and_recorded(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, body = await call(http, sim, "GET", "/guilds/1/emojis/nothing")
    assert status == 404 and body == {"message": "404: Not Found", "code": 0}
    assert sim.record.first("rest.unknown", path="/guilds/1/emojis/nothing") is not None


async def test_command_sync_keeps_ids_by_name(sim: Simulator, http: aiohttp.ClientSession) -> None:
    app = sim.world.application_id
    cmds = [
        {"name": "startnotes", "description": "Start", "type": 1},
        {"name": "stopnotes", "description": "Stop", "type": 1},
    ]
    status, first = await call(http, sim, "PUT", f"/applications/{app}/commands", json=cmds)
    assert status == 200 and [c["name"] for c in first] == ["startnotes", "stopnotes"]
    ids = {c["name"]: c["id"] for c in first}

    _, second = await call(http, sim, "PUT", f"/applications/{app}/commands", json=cmds[:1])
    assert [(c["name"], c["id"]) for c in second] == [("startnotes", ids["startnotes"])]

    status, created = await call(
        http,
        sim,
        "POST",
        f"/applications/{app}/commands",
        json={"name": "ping", "description": "p"},
    )
    assert status == 201
    _, edited = await call(
        http,
        sim,
        "PATCH",
        f"/applications/{app}/commands/{created['id']}",
        json={"description": "pong"},
    )
    assert edited["description"] == "pong" and edited["id"] == created["id"]
    status, _ = await call(http, sim, "DELETE", f"/applications/{app}/commands/{created['id']}")
    assert status == 204
    _, listed = await call(http, sim, "GET", f"/applications/{app}/commands")
    assert [c["name"] for c in listed] == ["startnotes"]

    g = sim.world.guild_id
    path = f"/applications/{app}/guilds/{g}/commands"
    _, guild_cmds = await call(http, sim, "PUT", path, json=[{"name": "g", "description": "d"}])
    assert guild_cmds[0]["guild_id"] == str(g)
    status, _ = await call(http, sim, "GET", f"/applications/{app + 1}/commands")
    assert status == 403
    scopes = [e["scope"] for e in sim.record.of("command.sync")]
    assert scopes == ["global", "global", "global", "global", "global", g]


async def register(sim: Simulator, http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
    app = sim.world.application_id
    status, _ = await call(http, sim, "PUT", f"/applications/{app}/commands", json=[body])
    assert status == 200


async def test_invoke_sends_interaction_create(sim: Simulator, http: aiohttp.ClientSession) -> None:
    w = sim.world
    await register(
        sim,
        http,
        {
            "name": "startnotes",
            "description": "Start",
            "options": [
                {"name": "title", "type": 3, "description": "t"},
                {"name": "minutes", "type": 4, "description": "m"},
                {"name": "who", "type": 6, "description": "w"},
                {"name": "room", "type": 7, "description": "r"},
            ],
        },
    )
    gw = await RawGateway.open(http, sim)
    await gw.identify(sim.token)
    alice = w.user("alice")
    role = w.add_role("Note takers", permissions=1 << 24)
    w.give_role(alice, role)
    inv = await sim.invoke(
        "startnotes",
        user=alice,
        options={"title": "standup", "minutes": 15, "who": alice, "room": w.voice_channel},
    )
    d = await gw.recv_dispatch("INTERACTION_CREATE")
    assert d == inv.payload
    assert d["type"] == 2 and d["application_id"] == str(w.application_id)
    assert d["guild_id"] == str(w.guild_id) and d["channel_id"] == str(w.text_channel.id)
    assert d["member"]["user"]["username"] == "alice"
    assert d["member"]["roles"] == [str(role.id)]
    assert int(d["member"]["permissions"]) & (1 << 24)  # from the role
    assert int(d["member"]["permissions"]) & (1 << 20)  # CONNECT, from @everyone
    cmd = sim.commands.find("startnotes")
    assert cmd is not None and d["data"]["id"] == cmd["id"]
    assert d["data"]["options"] == [
        {"name": "title", "type": 3, "value": "standup"},
        {"name": "minutes", "type": 4, "value": 15},
        {"name": "who", "type": 6, "value": str(alice.id)},
        {"name": "room", "type": 7, "value": str(w.voice_channel.id)},
    ]
    assert d["data"]["resolved"]["users"][str(alice.id)]["username"] == "alice"
    assert d["data"]["resolved"]["channels"][str(w.voice_channel.id)]["type"] == 2

    with pytest.raises(LookupError, match="stopnotes"):
        await sim.invoke("stopnotes", user=alice)


async def invocation(sim: Simulator, http: aiohttp.ClientSession) -> Invocation:
    await register(sim, http, {"name": "startnotes", "description": "Start"})
    return await sim.invoke("startnotes", user=sim.world.user("alice"))


async def test_defer_then_followup_with_file(sim: Simulator, http: aiohttp.ClientSession) -> None:
    inv = await invocation(sim, http)
    app = sim.world.application_id
    hook = f"/webhooks/{app}/{inv.token}"

    status, body = await call(http, sim, "POST", hook, json={"content": "too early"})
    assert (status, body["code"]) == (404, 10015)

    status, body = await call(
        http,
        sim,
        "POST",
        f"/interactions/{inv.id}/{inv.token}/callback",
        params={"with_response": "true"},
        json={"type": 5, "data": {}},
    )
    assert status == 200
    assert body["interaction"]["response_message_loading"] is True
    assert body["resource"]["type"] == 5
    assert (await inv.callback()).type == 5

    status, body = await call(
        http, sim, "POST", f"/interactions/{inv.id}/{inv.token}/callback", json={"type": 4}
    )
    assert (status, body["code"]) == (400, 40060)

    notes = b"# Meeting notes\n- decided things\n"
    form = multipart(
        {"content": "here are the notes", "attachments": [{"id": 0, "filename": "notes.md"}]},
        {"files[0]": ("notes.md", notes)},
    )
    status, msg = await call(http, sim, "POST", hook, params={"wait": "true"}, data=form)
    assert status == 200 and msg["content"] == "here are the notes"
    assert msg["webhook_id"] == str(app)
    [att] = msg["attachments"]
    assert (att["filename"], att["size"]) == ("notes.md", len(notes))
    async with http.get(att["url"]) as resp:
        assert await resp.read() == notes

    followup = await inv.followup()
    assert followup.message is not None and followup.message.attachments[0].data == notes
    assert sim.record.first("interaction.response", via="followup")["files"] == [
        ("notes.md", len(notes))
    ]

    status, edited = await call(
        http, sim, "PATCH", f"{hook}/messages/@original", json={"content": "done"}
    )
    assert status == 200 and edited["content"] == "done" and edited["flags"] & (1 << 7) == 0
    assert inv.original is not None and inv.original.content == "done"


async def test_message_callback_and_urlencoded_payload(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """py-cord sends a file-less callback as a urlencoded form with payload_json."""
    inv = await invocation(sim, http)
    form = aiohttp.FormData({"payload_json": json.dumps({"type": 4, "data": {"content": "hi"}})})
    status, _ = await call(
        http, sim, "POST", f"/interactions/{inv.id}/{inv.token}/callback", data=form
    )
    assert status == 204
    reply = await inv.reply()
    assert reply.content == "hi"


async def test_channel_messages_with_attachments(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    ch = sim.world.text_channel
    path = f"/channels/{ch.id}/messages"
    status, body = await call(http, sim, "POST", path, json={"content": ""})
    assert (status, body["code"]) == (400, 50006)

    form = multipart(
        {"content": "transcript"}, {"files[0]": ("a.srt", b"1\n"), "files[1]": ("b.vtt", b"WEBVTT")}
    )
    status, msg = await call(http, sim, "POST", path, data=form)
    assert status == 200
    assert [a["filename"] for a in msg["attachments"]] == ["a.srt", "b.vtt"]
    entry = sim.record.first("message", via="channel")
    assert entry is not None and entry["files"] == [("a.srt", 2), ("b.vtt", 6)]
    _, got = await call(http, sim, "GET", f"{path}/{msg['id']}")
    assert got["content"] == "transcript"
    status, _ = await call(http, sim, "POST", "/channels/1/messages", json={"content": "x"})
    assert status == 404


async def test_nickname_edit(sim: Simulator, http: aiohttp.ClientSession) -> None:
    g = sim.world.guild_id
    status, member = await call(
        http, sim, "PATCH", f"/guilds/{g}/members/@me", json={"nick": "🔴 Recording"}
    )
    assert status == 200 and member["nick"] == "🔴 Recording"
    assert sim.world.nicks[sim.world.bot.id] == "🔴 Recording"
    assert sim.record.first("member.update", nick="🔴 Recording") is not None
    _, member = await call(http, sim, "PATCH", f"/guilds/{g}/members/@me", json={"nick": None})
    assert member["nick"] is None


async def test_message_callback_with_a_file(sim: Simulator, http: aiohttp.ClientSession) -> None:
    inv = await invocation(sim, http)
    data = {"content": "notes", "attachments": [{"id": 0, "filename": "n.md"}]}
    form = multipart({"type": 4, "data": data}, {"files[0]": ("n.md", b"# n")})
    status, body = await call(
        http,
        sim,
        "POST",
        f"/interactions/{inv.id}/{inv.token}/callback",
        params={"with_response": "1"},
        data=form,
    )
    assert status == 200 and body["resource"]["message"]["attachments"][0]["size"] == 3
    reply = await inv.reply()
    assert (reply.content, reply.attachments[0].data) == ("notes", b"# n")
    _, original = await call(
        http, sim, "GET", f"/webhooks/{sim.world.application_id}/{inv.token}/messages/@original"
    )
    assert original["id"] == body["resource"]["message"]["id"]
