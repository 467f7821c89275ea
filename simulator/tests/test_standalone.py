"""A standalone ``discordsim serve --state FILE`` driven from "another terminal".

Each test runs a real serve process and the CLI subcommands as a person would type them
(``invoke``, ``messages``, ``say``, ``join``, ``leave``, ``state``). The bot is one with no
library (the main gateway and REST by hand, :mod:`discordsim.testing.rawgateway`), plus the
tests' own voice client where it must hear a member speak; test_login_discordpy.py has
the same with discord.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import ssl
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from standalone import Served, cli, serve
from voiceclient import XCHACHA, VoiceClient, best_correlation, decode_by_timestamp

from discordsim.control import STATE_VERSION
from discordsim.remote import Remote, RemoteError
from discordsim.testing.rawgateway import RawGateway
from discordsim.voice.participants import write_tone
from discordsim.world import PERM_MANAGE_GUILD

pytestmark = pytest.mark.slow

STARTNOTES = {
    "name": "startnotes",
    "description": "Start taking notes",
    "type": 1,
    "options": [
        {"name": "captions", "description": "live captions", "type": 5},
        {"name": "language", "description": "a language code", "type": 3},
    ],
}

Handler = Callable[["RawBot", dict[str, Any]], Awaitable[None]]


@dataclass
class RawBot:
    """A bot with no Discord library: it logs in with the state file's token and URLs,
    registers commands by REST and answers each interaction with ``handler``."""

    state: dict[str, Any]
    http: aiohttp.ClientSession
    gateway: RawGateway
    interactions: list[dict[str, Any]] = field(default_factory=list)
    dispatches: asyncio.Queue[tuple[str, dict[str, Any]]] = field(default_factory=asyncio.Queue)

    @property
    def api(self) -> str:
        return str(self.state["api_base"])

    async def register(self, *commands: dict[str, Any]) -> None:
        s = self.state
        url = f"{self.api}/applications/{s['application_id']}/guilds/{s['guild_id']}/commands"
        async with self.http.put(url, json=list(commands)) as resp:
            assert resp.status == 200, await resp.text()

    async def serve(self, handler: Handler) -> None:
        while True:
            payload = await self.gateway.recv(timeout=300)
            if payload["op"] != 0:
                continue
            if payload["t"] == "INTERACTION_CREATE":
                self.interactions.append(payload["d"])
                await handler(self, payload["d"])
            else:
                self.dispatches.put_nowait((payload["t"], payload["d"]))

    async def dispatch(self, name: str) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                t, d = await self.dispatches.get()
                if t == name:
                    return d

    async def defer_then_edit(self, d: dict[str, Any], content: str) -> None:
        base, token = self.api, d["token"]
        async with self.http.post(
            f"{base}/interactions/{d['id']}/{token}/callback", json={"type": 5}
        ) as resp:
            assert resp.status in (200, 204), await resp.text()
        async with self.http.patch(
            f"{base}/webhooks/{d['application_id']}/{token}/messages/@original",
            json={"content": content},
        ) as resp:
            assert resp.status == 200, await resp.text()

    async def post(self, channel_id: str, content: str, files: dict[str, bytes]) -> None:
        form = aiohttp.FormData()
        form.add_field("payload_json", json.dumps({"content": content}))
        for i, (name, data) in enumerate(files.items()):
            form.add_field(f"files[{i}]", data, filename=name, content_type="text/plain")
        async with self.http.post(f"{self.api}/channels/{channel_id}/messages", data=form) as resp:
            assert resp.status == 200, await resp.text()


@contextlib.asynccontextmanager
async def raw_bot(state: dict[str, Any], handler: Handler) -> AsyncIterator[RawBot]:
    headers = {"Authorization": f"Bot {state['token']}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        ws = await http.ws_connect(state["gateway_url"] + "?v=10&encoding=json")
        gateway = RawGateway(ws, zlib_stream=False)
        ready = await gateway.identify(state["token"])
        assert ready["user"]["id"] == state["bot"]["id"]
        bot = RawBot(state, http, gateway)
        task = asyncio.create_task(bot.serve(handler))
        try:
            yield bot
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
            await ws.close()


async def answer_startnotes(bot: RawBot, d: dict[str, Any]) -> None:
    """Defer, then say who started it with which options; post notes with a file."""
    opts = {o["name"]: o["value"] for o in d["data"].get("options", [])}
    who = d["member"]["user"]["username"]
    voice = bot.state["voice_channel"]["id"]
    await bot.defer_then_edit(
        d, f"Recording started by {who} in <#{voice}> options={json.dumps(opts)}"
    )
    await bot.post(d["channel_id"], "Notes of the meeting", {"notes.md": b"# Notes\n"})


def opts(d: dict[str, Any]) -> dict[str, Any]:
    return {o["name"]: o["value"] for o in d["data"].get("options", [])}


async def test_serve_writes_a_private_state_file_and_removes_it_on_exit(tmp_path: Path) -> None:
    async with serve(tmp_path, "--scenario", "today") as sim:
        s = sim.state
        assert stat.S_IMODE(sim.path.stat().st_mode) == 0o600
        assert s["version"] == STATE_VERSION and s["scenario"] == "today"
        assert s["api_base"].startswith("http://127.0.0.1:") and s["api_base"].endswith("/api/v10")
        assert s["gateway_url"].startswith("ws://127.0.0.1:")
        assert s["token"] and s["control_secret"]
        ca = Path(s["ca_file"])
        assert ca.is_absolute() and b"BEGIN CERTIFICATE" in _read(ca)
        assert s["guild_id"] and s["text_channel"]["name"] == "general"
        assert s["voice_channel"]["name"] == "Meeting Room"
        assert s["organiser"]["name"] == "organiser"
        # The token and the control secret stay in the file, out of the terminal.
        assert s["token"] not in sim.banner and s["control_secret"] not in sim.banner
        shown = await cli("state", "--state", str(sim.path))
        assert (
            shown.rc == 0 and s["token"] not in shown.out and s["control_secret"] not in shown.out
        )
        assert json.loads(shown.out)["api_base"] == s["api_base"]
        one = await cli("state", "token", "--state", str(sim.path))
        assert one.rc == 0 and one.out.strip() == s["token"]
        channel = await cli("state", "voice_channel.id", "--state", str(sim.path))
        assert channel.out.strip() == s["voice_channel"]["id"]

        async with Remote.load(sim.path) as remote:
            status = await remote.status()
        # The organiser sits in the voice channel from the start; nobody else does.
        assert status["in_voice"] == ["organiser"] and status["bot_connected"] is False

        # A second simulator does not take over a state file that is still in use.
        second = await cli("serve", "--state", str(sim.path), "--lifetime", "5", "--no-listen-443")
        assert second.rc == 2 and "still running" in second.err and "Traceback" not in second.err
        assert json.loads(sim.path.read_text())["pid"] == s["pid"]

        assert await sim.stop() == 0
    assert not _exists(sim.path) and not _exists(ca)
    assert s["token"] not in sim.stderr.read_text()


async def test_cli_refusals_are_one_sentence_with_exit_status(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    r = await cli("invoke", "startnotes", "--state", str(missing))
    assert r.rc == 1 and "there is no state file" in r.err and "serve --state" in r.err
    assert "Traceback" not in r.err

    async with serve(tmp_path) as sim:
        s = sim.state
        # No bot has connected: refused, not left hanging.
        r = await cli("invoke", "startnotes", "--bot-timeout", "0", "--state", str(sim.path))
        assert r.rc == 1 and "no bot is connected" in r.err
        r = await cli("messages", "--state", str(sim.path))
        assert r.rc == 0 and "no messages" in r.out
        r = await cli("leave", "nobody", "--state", str(sim.path))
        assert r.rc == 1 and "no member called 'nobody'" in r.err and "organiser" in r.err
        # Usage errors: 2.
        r = await cli("invoke", "startnotes", "--option", "captions", "--state", str(sim.path))
        assert r.rc == 2 and "NAME=VALUE" in r.err
        r = await cli("say", "alice", "--state", str(sim.path))
        assert r.rc == 2
        # A wrong secret (a state file from another run at the same address).
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps({**s, "control_secret": "wrong"}))
        r = await cli("messages", "--state", str(forged))
        assert r.rc == 1 and "control secret" in r.err

        # The simulator's process is gone: the state file it left is stale.
        dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await dead.wait()
        stale = tmp_path / "stale.json"
        stale.write_text(json.dumps({**s, "pid": dead.pid}))
        r = await cli("messages", "--state", str(stale))
        assert r.rc == 1 and "stale" in r.err and str(dead.pid) in r.err

    # Alive process, but nothing listens where the state file points.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    gone = tmp_path / "gone.json"
    gone.write_text(
        json.dumps({**s, "pid": os.getpid(), "control_url": f"http://127.0.0.1:{port}/_discordsim"})
    )
    r = await cli("messages", "--state", str(gone))
    assert r.rc == 1 and "not answering" in r.err and "Traceback" not in r.err
    with pytest.raises(RemoteError, match="not answering"):
        async with Remote.load(gone) as remote:
            await remote.messages()


async def test_a_bot_answers_invoke_and_messages_lists_what_it_posted(tmp_path: Path) -> None:
    async with (
        serve(tmp_path, "--scenario", "today") as sim,
        raw_bot(sim.state, answer_startnotes) as bot,
    ):
        state = ["--state", str(sim.path)]
        voice_id = sim.state["voice_channel"]["id"]
        # Not registered yet: refused, naming what is.
        r = await cli("invoke", "startnotes", "--bot-timeout", "0", *state)
        assert r.rc == 1 and "has not registered /startnotes (registered: none)" in r.err
        await bot.register(STARTNOTES)

        r = await cli(
            "invoke",
            "/startnotes",
            "-o",
            "captions=true",
            "-o",
            "language=de",
            "--linger",
            "0.3",
            *state,
        )
        assert r.rc == 0, r.err
        lines = r.out.splitlines()
        assert lines[0] == "/startnotes as organiser in #general"
        assert lines[1] == "deferred: the bot is thinking"
        # Mentions as a client shows them.
        assert lines[2].startswith(
            "reply: Recording started by organiser in #Meeting Room options="
        )
        # What the bot received: the organiser, with Manage Server, and typed options.
        d = bot.interactions[-1]
        assert d["member"]["user"]["id"] == sim.state["organiser"]["id"]
        assert int(d["member"]["permissions"]) & PERM_MANAGE_GUILD
        assert opts(d) == {"captions": True, "language": "de"}

        r = await cli("invoke", "startnotes", "--as", "alice", "--json", "--linger", "0.3", *state)
        assert r.rc == 0, r.err
        run = json.loads(r.out)
        assert run["user"] == "alice" and run["command"] == "startnotes"
        assert [x["via"] for x in run["responses"]] == ["callback", "edit_original"]
        assert run["responses"][0]["deferred"] is True
        reply = run["responses"][1]["message"]
        assert reply["content"].startswith(f"Recording started by alice in <#{voice_id}>")
        assert reply["readable"].startswith("Recording started by alice in #Meeting Room")
        assert opts(bot.interactions[-1]) == {}

        for bad, sentence in [
            (["nope"], "has not registered /nope (registered: /startnotes)"),
            (["startnotes", "-o", "title=x"], "has no option 'title'"),
            (["startnotes", "-o", "captions=maybe"], "is true or false"),
            (["startnotes", "--as", "notetaker-bot"], "the bot cannot act as a member"),
        ]:
            r = await cli("invoke", *bad, "--bot-timeout", "0", *state)
            assert r.rc == 1 and sentence in r.err, (bad, r.err)
        assert len(bot.interactions) == 2  # refusals never reach the bot

        r = await cli("messages", *state)
        assert r.rc == 0
        assert "#general  notetaker-bot (/startnotes): Recording started by organiser" in r.out
        assert "#general  notetaker-bot: Notes of the meeting" in r.out
        assert "  attachments: notes.md" in r.out
        r = await cli("messages", "--channel", "general", "--json", *state)
        posted = json.loads(r.out)
        assert [m["attachments"] for m in posted if m["interaction"] is None] == [["notes.md"]] * 2
        r = await cli("messages", "--channel", "nowhere", *state)
        assert r.rc == 1 and "no channel or thread called 'nowhere'" in r.err


async def ignore(bot: RawBot, d: dict[str, Any]) -> None:
    """A bot that never answers."""


async def defer_only(bot: RawBot, d: dict[str, Any]) -> None:
    """A bot that says it is thinking, and never more."""
    url = f"{bot.api}/interactions/{d['id']}/{d['token']}/callback"
    async with bot.http.post(url, json={"type": 5}) as resp:
        assert resp.status in (200, 204)


@pytest.mark.parametrize(
    ("handler", "sentence"),
    [(ignore, "the bot did not answer"), (defer_only, "the bot deferred it but did not answer")],
)
async def test_invoke_gives_up_on_a_bot_that_never_answers(
    tmp_path: Path, handler: Handler, sentence: str
) -> None:
    async with serve(tmp_path) as sim, raw_bot(sim.state, handler) as bot:
        await bot.register(STARTNOTES)
        r = await cli("invoke", "startnotes", "--timeout", "1", "--state", str(sim.path))
        assert r.rc == 1 and f"{sentence} /startnotes within 1 s" in r.err, r.err
        assert len(bot.interactions) == 1
        r = await cli("messages", "--state", str(sim.path))
        if handler is defer_only:
            assert "#general  notetaker-bot (/startnotes): (thinking…" in r.out
        else:
            assert r.out.strip() == "no messages"


async def join_voice(bot: RawBot, ca_file: str) -> VoiceClient:
    """The bot joins the voice channel: op 4, then the voice gateway and UDP."""
    s = bot.state
    await bot.gateway.send(
        4,
        {
            "guild_id": s["guild_id"],
            "channel_id": s["voice_channel"]["id"],
            "self_mute": False,
            "self_deaf": False,
        },
    )
    state = await bot.dispatch("VOICE_STATE_UPDATE")
    server = await bot.dispatch("VOICE_SERVER_UPDATE")

    @dataclass
    class Grant:
        guild_id: str
        user_id: str
        token: str

    client = VoiceClient(ssl.create_default_context(cafile=ca_file))
    await client.connect(server["endpoint"])
    ready = await client.identify(
        Grant(s["guild_id"], s["bot"]["id"], server["token"]), state["session_id"], dave=0
    )
    await client.select(XCHACHA, await client.discover(ready))
    return client


async def test_say_plays_a_real_audio_file_to_the_bot_in_voice(tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone.wav", hz=440.0, seconds=1.0)
    again = write_tone(tmp_path / "again.wav", hz=660.0, seconds=0.4)
    long = write_tone(tmp_path / "long.wav", hz=330.0, seconds=20.0)
    async with serve(tmp_path) as sim, raw_bot(sim.state, ignore) as bot:
        state = ["--state", str(sim.path)]
        voice = await join_voice(bot, sim.state["ca_file"])
        try:
            r = await cli("say", "alice", str(tone), *state)
            assert r.rc == 0, r.err
            assert r.out.splitlines() == [
                "alice speaks tone.wav (1 s) in Meeting Room",
                "alice said tone.wav (50 packets sent)",
            ]
            alice = await _member_id(sim, "alice")
            ssrc = await _ssrc_of(voice, alice)
            await voice.wait_packets(50)
            first = [p for p in voice.received if p.ssrc == ssrc]
            assert len(first) == 50
            reference = _mono(tone)
            assert best_correlation(reference, decode_by_timestamp(first)) > 0.9

            # Alice speaks again: the same sender (SSRC), sequence and RTP clock go on.
            r = await cli("say", "alice", str(again), *state)
            assert r.rc == 0 and "alice said again.wav (20 packets sent)" in r.out, r.out
            await voice.wait_packets(70)
            second = [p for p in voice.received if p.ssrc == ssrc][50:]
            assert len(second) == 20
            assert second[0].seq == (first[-1].seq + 1) & 0xFFFF
            assert second[0].timestamp > first[-1].timestamp + 960

            # A member who leaves stops mid-sentence, and the bot hears them go.
            speaking = asyncio.create_task(cli("say", "alice", str(long), *state))
            await voice.wait_packets(80)
            r = await cli("leave", "alice", *state)
            assert r.rc == 0 and r.out.strip() == "alice left voice"
            said = await speaking
            assert said.rc == 1 and "alice left voice before finishing long.wav" in said.err
            gone = await voice.recv(13)
            assert gone["d"]["user_id"] == alice
            async with Remote.load(sim.path) as remote:
                assert "alice" not in (await remote.status())["in_voice"]
                # join puts a member back, silent; leave takes the organiser out too.
                assert (await remote.join("alice"))["joined"] is True
                assert (await remote.leave("organiser"))["left"] is True
                assert (await remote.status())["in_voice"] == ["alice"]
        finally:
            await voice.aclose()


async def test_say_before_the_bot_joins_waits_for_it(tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone.wav", seconds=0.4)
    async with serve(tmp_path) as sim, raw_bot(sim.state, ignore) as bot:
        r = await cli("say", "bob", str(tone), "--no-wait", "--state", str(sim.path))
        assert r.rc == 0, r.err
        assert "the bot is not in the voice channel yet: bob speaks once it joins" in r.out
        async with Remote.load(sim.path) as remote:
            assert (await remote.speech(1))["state"] == "waiting for the bot to join voice"
            voice = await join_voice(bot, sim.state["ca_file"])
            try:
                done = await remote.speech(1, wait_s=30)
                assert done["state"] == "done" and done["frames_sent"] == 20
                await voice.wait_packets(20)
            finally:
                await voice.aclose()
        r = await cli("say", "bob", str(tmp_path / "missing.wav"), "--state", str(sim.path))
        assert r.rc == 1 and "cannot read" in r.err
        junk = tmp_path / "junk.wav"
        junk.write_bytes(secrets.token_bytes(2000))
        r = await cli("say", "bob", str(junk), "--state", str(sim.path))
        assert r.rc == 1 and "cannot play junk.wav" in r.err


async def _member_id(sim: Served, name: str) -> str:
    # Members made by `say` are not in the state file (written at start): ask the bot's
    # view, the guild member list.
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bot {sim.state['token']}"}
    ) as http:
        url = f"{sim.state['api_base']}/guilds/{sim.state['guild_id']}/members?limit=1000"
        async with http.get(url) as resp:
            members = await resp.json()
    return next(str(m["user"]["id"]) for m in members if m["user"]["username"] == name)


async def _ssrc_of(voice: VoiceClient, user_id: str) -> int:
    async with asyncio.timeout(10):
        while True:
            op5 = await voice.recv(5)
            if op5["d"]["user_id"] == user_id:
                return int(op5["d"]["ssrc"])


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _exists(path: Path) -> bool:
    return path.exists()


def _mono(path: Path) -> Any:
    from discordsim.voice.participants import decode_pcm

    return decode_pcm(path).astype("float64").mean(axis=1)
