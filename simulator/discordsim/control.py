"""The control API: how other processes drive a running ``discordsim serve``.

``serve --state FILE`` mounts it under :data:`PREFIX` on the simulator's own loopback port
and writes FILE (:func:`state_document`): where the API, the gateway and this API are, the
bot token, the CA file and the world's ids. ``discordsim invoke/messages/say/join/leave``
(:mod:`discordsim.remote`) read FILE and call these routes; so can a test
(:class:`discordsim.remote.Remote`).

Every request carries ``Authorization: Bearer <control_secret>`` from the state file: the
port is loopback-only, but other local users can reach loopback, and these routes act as
any member. JSON in and out; a refusal is a 4xx with ``{"error": "<one sentence>"}``.

=======  ==============================  ================================================
GET      /status                         scenario, whether the bot is connected and in
                                         voice, registered commands, members
POST     /interactions                   ``{"command", "user"?, "options"?, "channel"?,
                                         "wait_s"?}``: run a slash command as a member
                                         (default: the organiser); waits up to ``wait_s``
                                         for the bot to be connected and the command to be
                                         registered. Option values may be strings; they
                                         are converted to the type the command declares.
                                         201 ``{"id", "command", "user", "channel"}``.
GET      /interactions/{id}?after=N      the responses after the first N, waiting up to
         &wait_s=S                       S for one: ``{"responses": [...]}``
GET      /messages?channel=NAME          what was posted (threads included):
                                         ``{"messages": [...]}``
POST     /speeches?user=U&filename=F     the body is an audio file: U (created if
                                         missing) speaks it in the voice channel, joining
                                         first if not there; a member's speeches follow
                                         one another. 201 speech
GET      /speeches/{id}?wait_s=S         the speech, once it is over or S passed
POST     /join                           ``{"user"}``: the member sits in the voice
                                         channel (silent, like the organiser)
POST     /leave                          ``{"user"}``: the member leaves voice (a speech
                                         under way stops, one not started is dropped)
=======  ==============================  ================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from discordsim.interactions import (
    CALLBACK_DEFERRED_MESSAGE,
    CALLBACK_DEFERRED_UPDATE,
    OPT_BOOLEAN,
    OPT_CHANNEL,
    OPT_INTEGER,
    OPT_NUMBER,
    OPT_STRING,
    OPT_SUB_COMMAND,
    OPT_SUB_COMMAND_GROUP,
    OPT_USER,
    InteractionResponse,
    Invocation,
    Message,
)
from discordsim.world import PERM_MANAGE_GUILD, Channel, User, VoiceStateRec, World

if TYPE_CHECKING:
    from discordsim.app import Simulator
    from discordsim.voice import VoiceServer
    from discordsim.voice.participants import Participant

#: Where the control API is mounted; nothing of Discord's lives under it.
PREFIX = "/_discordsim"
#: Bumped when the state file or a route changes incompatibly.
STATE_VERSION = 1
#: The organiser's name: the member ``invoke`` acts as by default.
ORGANISER = "organiser"
#: Message flags (Discord's values).
_EPHEMERAL = 1 << 6
_LOADING = 1 << 7
#: The longest a long poll may hold a request.
_MAX_WAIT_S = 600.0
_MENTION = re.compile(r"<(#|@!?)(\d+)>")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlError(Exception):
    """A refusal: ``status`` and one sentence for the user."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status


def add_organiser(world: World) -> User:
    """The standalone world's organiser: Manage Server, sitting in the voice channel, so
    that ``/startnotes`` works as them without any setup. Call before the bot connects:
    its voice state then arrives in GUILD_CREATE, as a member already in a call does."""
    user = world.add_user(ORGANISER)
    world.give_role(user, world.add_role("Organisers", PERM_MANAGE_GUILD))
    voice = world.voice_channel
    world.voice_states[user.id] = VoiceStateRec(user.id, voice.id, secrets.token_hex(16))
    return user


@dataclass
class Speech:
    """One ``say``: a member speaking one file."""

    id: int
    user: User
    filename: str
    slots: list[bytes | None]
    #: the sender that says it; None while it waits behind the member's earlier speech
    participant: Participant | None = None
    #: the sender's frame count when this speech began (a sender says many speeches)
    sent0: int = 0
    #: "done" or "stopped" (the member left first), once over
    outcome: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def seconds(self) -> float:
        from discordsim.voice.participants import FRAME_S

        return round(len(self.slots) * FRAME_S, 2)


class ControlAPI:
    """The routes above, for one running simulator (main side and voice side)."""

    def __init__(self, sim: Simulator, voice: VoiceServer, secret: str, organiser: User) -> None:
        self.sim = sim
        self.voice = voice
        self.secret = secret
        self.organiser = organiser
        self.speeches: dict[int, Speech] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Uploaded audio lives here until the simulator exits.
        self._uploads = tempfile.TemporaryDirectory(prefix="discordsim-say-")

    def app(self) -> web.Application:
        """The sub-application to mount at :data:`PREFIX`."""
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/status", self.status)
        app.router.add_post("/interactions", self.invoke)
        app.router.add_get("/interactions/{id}", self.responses)
        app.router.add_get("/messages", self.messages)
        app.router.add_post("/speeches", self.say)
        app.router.add_get("/speeches/{id}", self.speech)
        app.router.add_post("/join", self.join)
        app.router.add_post("/leave", self.leave)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, _: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._uploads.cleanup()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        sent = request.headers.get("Authorization", "")
        if not secrets.compare_digest(sent.encode(), f"Bearer {self.secret}".encode()):
            return _error(401, "the control secret is missing or wrong (it is in the state file)")
        try:
            return await handler(request)
        except ControlError as exc:
            return _error(exc.status, str(exc))

    # --- status ----------------------------------------------------------------------

    def _bot_connected(self) -> bool:
        return self.sim.gateway.connection_of(self.sim.world.bot.id) is not None

    def _bot_in_voice(self) -> bool:
        bot = self.sim.world.bot.id
        return any(
            s.user_id == bot and s.live and not s.ended for s in self.voice.sessions.values()
        )

    async def status(self, request: web.Request) -> web.Response:
        w = self.sim.world
        in_voice = [
            w.users[uid].name
            for uid, rec in w.voice_states.items()
            if rec.channel_id is not None and uid in w.users and not w.users[uid].bot
        ]
        return web.json_response(
            {
                "scenario": self.voice.scenario.name,
                "bot_connected": self._bot_connected(),
                "bot_in_voice": self._bot_in_voice(),
                "commands": sorted(c["name"] for c in self.sim.commands.all()),
                "members": sorted(u.name for u in w.users.values() if not u.bot),
                "in_voice": sorted(in_voice),
            }
        )

    # --- interactions ----------------------------------------------------------------

    async def invoke(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        name = str(body.get("command") or "").strip().lstrip("/")
        if not name:
            raise ControlError(400, "name the command to run")
        user = self._member(body.get("user"))
        channel = self._text_channel(body.get("channel"))
        await self._wait_until_invocable(name, _wait_s(body.get("wait_s"), default=0.0))
        command = self.sim.commands.find(name, self.sim.world.guild_id)
        assert command is not None  # _wait_until_invocable refuses otherwise
        options = self._options(command, body.get("options") or {})
        inv = await self.sim.invoke(name, user=user, options=options, channel=channel)
        data = {"id": str(inv.id), "command": name, "user": user.name, "channel": channel.name}
        return web.json_response(data, status=201)

    async def _wait_until_invocable(self, name: str, wait_s: float) -> None:
        """Until the bot is connected and has registered ``name``, or ``wait_s`` passed:
        an interaction dispatched to nobody would simply never be answered."""
        sim = self.sim

        def invocable(_: object = None) -> bool:
            return self._bot_connected() and sim.commands.find(name, sim.world.guild_id) is not None

        if not invocable():
            # Every connect, gateway op and command sync is recorded, so each new record
            # entry is a moment to look again.
            with contextlib.suppress(TimeoutError):
                await sim.record.wait_for(None, invocable, after=len(sim.record), timeout=wait_s)
        if not self._bot_connected():
            raise ControlError(409, "no bot is connected to the simulator's gateway")
        if not invocable():
            known = sorted(c["name"] for c in sim.commands.all())
            listed = ", ".join(f"/{c}" for c in known) or "none"
            raise ControlError(404, f"the bot has not registered /{name} (registered: {listed})")

    def _options(self, command: dict[str, Any], given: Any) -> dict[str, object]:
        """Option values by name, converted to the types the command declares, as Discord's
        client would send them: it refuses what the command does not declare, a missing
        required option and a value that is not one of the choices."""
        if not isinstance(given, dict):
            raise ControlError(400, "options must be an object of name -> value")
        cname = command["name"]
        declared = {o["name"]: o for o in command.get("options") or []}
        if any(
            o.get("type") in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP) for o in declared.values()
        ):
            raise ControlError(400, f"/{cname} has subcommands, which cannot be invoked here")
        out: dict[str, object] = {}
        for key, value in given.items():
            opt = declared.get(key)
            if opt is None:
                names = ", ".join(sorted(declared)) or "none"
                raise ControlError(400, f"/{cname} has no option {key!r} (its options: {names})")
            out[key] = self._option_value(cname, opt, value)
        missing = sorted(k for k, o in declared.items() if o.get("required") and k not in out)
        if missing:
            raise ControlError(400, f"/{cname} needs the option {missing[0]!r}")
        return out

    def _option_value(self, cname: str, opt: dict[str, Any], value: Any) -> object:
        key, kind = opt["name"], opt.get("type", OPT_STRING)
        where = f"option {key!r} of /{cname}"
        converted: object
        if kind == OPT_USER:
            return self._member(value)
        if kind == OPT_CHANNEL:
            return self._channel(str(value))
        if kind == OPT_BOOLEAN:
            text = str(value).strip().lower()
            if isinstance(value, bool):
                converted = value
            elif text in _TRUE or text in _FALSE:
                converted = text in _TRUE
            else:
                raise ControlError(400, f"{where} is true or false, not {value!r}")
        elif kind in (OPT_INTEGER, OPT_NUMBER):
            try:
                converted = int(str(value)) if kind == OPT_INTEGER else float(str(value))
            except ValueError:
                what = "a whole number" if kind == OPT_INTEGER else "a number"
                raise ControlError(400, f"{where} is {what}, not {value!r}") from None
        elif kind == OPT_STRING:
            converted = str(value)
        else:
            raise ControlError(
                400, f"{where} is of a type (role, mention, attachment) not supported here"
            )
        choices = [c.get("value") for c in opt.get("choices") or []]
        if choices and converted not in choices:
            listed = ", ".join(str(c) for c in choices)
            raise ControlError(400, f"{where} is one of {listed}, not {value!r}")
        return converted

    async def responses(self, request: web.Request) -> web.Response:
        inv = self._invocation(request.match_info["id"])
        after = _int(request.query.get("after", "0"), "after")
        got = await inv.after(after, timeout=_wait_s(request.query.get("wait_s"), default=0.0))
        return web.json_response({"responses": [self._response_json(r) for r in got]})

    def _invocation(self, raw: str) -> Invocation:
        for inv in self.sim.invocations.values():
            if str(inv.id) == raw:
                return inv
        raise ControlError(404, f"no interaction {raw} was run here")

    def _response_json(self, r: InteractionResponse) -> dict[str, Any]:
        """One response: how it came (``via``, callback ``type``) and, where it made or
        changed a message, that message as it stands now. A deferral carries none."""
        out: dict[str, Any] = {
            "via": r.via,
            "type": r.type,
            "deferred": r.via == "callback"
            and r.type in (CALLBACK_DEFERRED_MESSAGE, CALLBACK_DEFERRED_UPDATE),
        }
        if r.message is not None:
            out["message"] = self._message_json(r.message)
        return out

    # --- messages --------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.Response:
        wanted = request.query.get("channel")
        ids = self._channel_ids(wanted) if wanted else None
        shown = [
            self._message_json(m)
            for m in self.sim.messages
            if not m.deleted and (ids is None or m.channel_id in ids)
        ]
        return web.json_response({"messages": shown})

    def _channel_ids(self, name: str) -> set[int]:
        """The channel or thread called ``name``; a channel brings its threads along."""
        w = self.sim.world
        name = name.lstrip("#")
        ids = {c.id for c in w.channels.values() if c.name == name or str(c.id) == name}
        ids |= {
            t.id
            for t in w.threads.values()
            if t.name == name or str(t.id) == name or t.parent_id in ids
        }
        if not ids:
            raise ControlError(404, f"there is no channel or thread called {name!r}")
        return ids

    def _message_json(self, m: Message) -> dict[str, Any]:
        w = self.sim.world
        thread = w.threads.get(m.channel_id)
        channel = w.channels.get(thread.parent_id if thread else m.channel_id)
        author = w.users.get(m.author_id)
        return {
            "id": str(m.id),
            "channel": channel.name if channel else str(m.channel_id),
            "thread": thread.name if thread else None,
            "channel_id": str(m.channel_id),
            "author": author.name if author else str(m.author_id),
            "content": m.content,
            # As a Discord client shows it: <#id> and <@id> by name, for people reading it.
            "readable": self._readable(m.content),
            "embeds": m.embeds,
            "attachments": [a.filename for a in m.attachments],
            "ephemeral": bool(m.flags & _EPHEMERAL),
            "loading": bool(m.flags & _LOADING),
            "edited": m.edited,
            "interaction": self._interaction_name(m.interaction_id),
        }

    def _readable(self, text: str) -> str:
        w = self.sim.world

        def name(match: re.Match[str]) -> str:
            kind, raw = match.group(1), int(match.group(2))
            if kind == "#":
                found = w.channels.get(raw) or w.threads.get(raw)
                return f"#{found.name}" if found else match.group(0)
            user = w.users.get(raw)
            return f"@{w.nicks.get(raw) or user.name}" if user else match.group(0)

        return _MENTION.sub(name, text)

    def _interaction_name(self, interaction_id: int | None) -> str | None:
        if interaction_id is None:
            return None
        for inv in self.sim.invocations.values():
            if inv.id == interaction_id:
                return inv.name
        return None

    # --- voice -----------------------------------------------------------------------

    async def say(self, request: web.Request) -> web.Response:
        from discordsim.voice.participants import ParticipantSpec, prepare

        name = request.query.get("user", "").strip()
        if not name:
            raise ControlError(400, "name the member who speaks")
        w = self.sim.world
        try:
            user = w.user(name)
        except KeyError:
            user = w.add_user(name)  # as a participants script does
        if user.bot:
            raise ControlError(400, "the bot cannot act as a member here")
        filename = Path(request.query.get("filename") or "audio").name
        folder = Path(self._uploads.name) / secrets.token_hex(4)
        folder.mkdir()
        path = folder / filename
        await asyncio.to_thread(path.write_bytes, await request.read())
        try:
            slots = await asyncio.to_thread(prepare, ParticipantSpec(name, path))
        except Exception as exc:  # PyAV's errors name the problem; missing av is one too
            raise ControlError(400, f"cannot play {filename}: {exc}") from None
        before = [s for s in self.speeches.values() if s.user.id == user.id and not s.done.is_set()]
        speech = Speech(len(self.speeches) + 1, user, filename, slots)
        self.speeches[speech.id] = speech
        task = asyncio.create_task(self._deliver(speech, path, before[-1] if before else None))
        speech.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(self._speech_json(speech), status=201)

    async def _deliver(self, speech: Speech, path: Path, before: Speech | None) -> None:
        """Say it: after the member's earlier speech, as the member's sender if they are
        in the call already (same SSRC, as one connected client), else by joining."""
        from discordsim.voice.participants import ParticipantSpec

        try:
            if before is not None:
                await before.done.wait()
            p = self._sender(speech.user)
            if p is not None and not p.done.is_set():
                await p.done.wait()  # its participants script runs first
                p = self._sender(speech.user)
            if p is not None and p.in_channel:
                speech.participant, speech.sent0 = p, p.sent
                await p.speak(speech.slots)
            else:
                p = self.voice.add_participant(
                    ParticipantSpec(speech.user.name, path), slots=speech.slots
                )
                speech.participant = p
                await p.done.wait()
            speech.outcome = "stopped" if p.withdrawn else "done"
        finally:
            if speech.outcome is None:
                speech.outcome = "stopped"
            speech.done.set()

    def _sender(self, user: User) -> Participant | None:
        """The member's scripted sender that has not left the call, if any."""
        for p in reversed(self.voice.participants):
            if p.user_id == user.id and not p.withdrawn and (p.in_channel or not p.done.is_set()):
                return p
        return None

    async def speech(self, request: web.Request) -> web.Response:
        sid = _int(request.match_info["id"], "speech id")
        s = self.speeches.get(sid)
        if s is None:
            raise ControlError(404, f"no speech {sid} was started here")
        wait_s = _wait_s(request.query.get("wait_s"), default=0.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(s.done.wait()), wait_s)
        return web.json_response(self._speech_json(s))

    def _speech_json(self, s: Speech) -> dict[str, Any]:
        p = s.participant
        if s.outcome is not None:
            state = s.outcome
        elif p is None:
            state = "queued behind an earlier speech"
        elif not p.started:
            # Scripted speakers start with the first live voice session (the bot's).
            state = "waiting for the bot to join voice"
        elif not p.in_channel:
            state = "joining"
        else:
            state = "speaking"
        return {
            "id": s.id,
            "user": s.user.name,
            "file": s.filename,
            "seconds": s.seconds,
            "voice_channel": self.sim.world.voice_channel.name,
            "state": state,
            "frames_sent": 0 if p is None else p.sent - s.sent0,
            "bot_in_voice": self._bot_in_voice(),
        }

    async def join(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        user = self._member(body.get("user"))
        w = self.sim.world
        rec = w.voice_states.get(user.id)
        already = rec is not None and rec.channel_id == w.voice_channel.id
        if not already:
            await self.sim.set_voice_state(user, w.voice_channel)
        return web.json_response({"user": user.name, "joined": not already})

    async def leave(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        user = self._member(body.get("user"))
        w = self.sim.world
        was_in = w.voice_states.get(user.id) is not None
        # What the member had still to say is never said: speeches under way or queued
        # end as "stopped", and a sender waiting for the bot never joins.
        pending = [
            s.task
            for s in self.speeches.values()
            if s.user.id == user.id and s.task is not None and not s.done.is_set()
        ]
        senders = [p for p in self.voice.participants if p.user_id == user.id]
        for p in senders:
            p.withdraw()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        speaking = [p for p in senders if p.in_channel]
        if speaking:
            # A scripted speaker leaves the way its script would: the voice sessions
            # hear op 13 and the bot a VOICE_STATE_UPDATE.
            for p in speaking:
                await self.voice.participant_leave(p)
        elif was_in:
            await self.sim.set_voice_state(user, None)
        return web.json_response({"user": user.name, "left": was_in})

    # --- lookups ---------------------------------------------------------------------

    def _member(self, who: Any) -> User:
        """A member by name or id; None means the organiser."""
        if who is None or who == "":
            return self.organiser
        w = self.sim.world
        for u in w.users.values():
            if u.name == str(who) or str(u.id) == str(who):
                if u.bot:
                    raise ControlError(400, "the bot cannot act as a member here")
                return u
        names = ", ".join(sorted(u.name for u in w.users.values() if not u.bot))
        raise ControlError(404, f"there is no member called {who!r} (members: {names})")

    def _channel(self, name: str) -> Channel:
        w = self.sim.world
        for c in w.channels.values():
            if c.name == name.lstrip("#") or str(c.id) == name:
                return c
        raise ControlError(404, f"there is no channel called {name!r}")

    def _text_channel(self, name: Any) -> Channel:
        if name is None or name == "":
            return self.sim.world.text_channel
        channel = self._channel(str(name))
        if channel.kind != 0:
            raise ControlError(400, f"#{channel.name} is not a text channel")
        return channel


def _error(status: int, sentence: str) -> web.Response:
    return web.json_response({"error": sentence}, status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ControlError(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "the request body must be a JSON object")
    return body


def _int(raw: str, what: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ControlError(400, f"{what} must be an integer, not {raw!r}") from None


def _wait_s(raw: Any, *, default: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ControlError(400, f"wait_s must be a number of seconds, not {raw!r}") from None
    return min(max(value, 0.0), _MAX_WAIT_S)


# --- the state file ------------------------------------------------------------------


def state_document(
    sim: Simulator, voice: VoiceServer, *, secret: str, ca_file: Path, organiser: User
) -> dict[str, Any]:
    """What ``serve --state`` writes: enough to point a bot at the simulator and to drive
    it. Ids are strings, as Discord's JSON has them."""
    w = sim.world

    def channel(c: Channel) -> dict[str, Any]:
        return {"id": str(c.id), "name": c.name, "type": c.kind}

    def member(u: User) -> dict[str, Any]:
        return {"id": str(u.id), "name": u.name, "bot": u.bot}

    return {
        "version": STATE_VERSION,
        "pid": os.getpid(),
        "scenario": voice.scenario.name,
        "api_base": sim.api_base,
        "gateway_url": sim.gateway_url,
        "token": sim.token,
        "ca_file": str(ca_file),
        "voice_endpoint": voice.endpoint,
        "control_url": sim.base_url + PREFIX,
        "control_secret": secret,
        "application_id": str(w.application_id),
        "guild_id": str(w.guild_id),
        "text_channel": channel(w.text_channel),
        "voice_channel": channel(w.voice_channel),
        "channels": [channel(c) for c in w.channels.values()],
        "bot": member(w.bot),
        "organiser": member(organiser),
        "members": [member(u) for u in w.users.values()],
    }


def write_state(path: Path, document: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file) and private to this user
    (mkstemp makes it 0600): it holds the bot token and the control secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_state(path: Path, secret: str) -> None:
    """Remove the state file if it is still this simulator's (another ``serve`` may have
    taken the path over since)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("control_secret") == secret:
            path.unlink()
