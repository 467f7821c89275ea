"""The REST subset (``/api/v{n}/...``) that the three libraries use to log in and to
answer slash commands: users, gateway, application, commands, interactions, webhooks,
channel messages (with attachments), threads started from messages, guild members.

Every call is recorded (kind ``rest``); a call no route knows is recorded as
``rest.unknown`` and answered 404 the way Discord does, so a missing route shows up in
the record instead of as a mystery. Creating and editing channel messages are rate
limited per channel as on Discord (:mod:`discordsim.ratelimit`); each refusal is a 429,
recorded as ``rest.rate_limited``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from discordsim.interactions import (
    CALLBACK_DEFERRED_MESSAGE,
    CALLBACK_DEFERRED_UPDATE,
    CALLBACK_MESSAGE,
    CALLBACK_UPDATE,
    Attachment,
    InteractionResponse,
    Invocation,
    Message,
)
from discordsim.ratelimit import Verdict, bucket_hash
from discordsim.world import ARCHIVE_DURATIONS, snowflake

if TYPE_CHECKING:
    from discordsim.app import Simulator

FLAG_HAS_THREAD = 1 << 5
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
#: Gateway intents of the dispatches sent here.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
#: What every API answer says it came through; the libraries take a 429 without it
#: for a Cloudflare ban and stop retrying.
VIA = "1.1 google"


@dataclass
class UploadedFile:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class RestRequest:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    files: list[UploadedFile] = field(default_factory=list)

    def snowflake(self, name: str) -> int:
        return int(self.params[name])


@dataclass
class RestReply:
    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class RestError(Exception):
    """Answer with a Discord-shaped JSON error."""

    def __init__(self, status: int, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


Handler = Callable[[RestRequest], Awaitable[RestReply]]


@dataclass
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    #: the rate limit bucket's hash, for the routes that have one (major parameter:
    #: the channel id)
    bucket: str | None = None


def _compile(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{regex}$")


def _ok(data: Any = None, status: int = 200) -> RestReply:
    return RestReply(status=status if data is not None else 204, json=data)


class Rest:
    """Routes and their handlers; state lives on the :class:`Simulator`."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.routes: list[_Route] = []
        r = self._route
        # Login.
        r("GET", "/users/@me", self.get_me)
        r("PATCH", "/users/@me", self.get_me)
        r("GET", "/users/{user_id}", self.get_user)
        r("GET", "/gateway", self.get_gateway, auth=False)
        r("GET", "/gateway/bot", self.get_gateway_bot)
        r("GET", "/oauth2/applications/@me", self.get_application)
        r("GET", "/applications/@me", self.get_application)
        # Application commands, global and per guild.
        for prefix in ("/applications/{app}", "/applications/{app}/guilds/{guild_id}"):
            r("GET", prefix + "/commands", self.list_commands)
            r("PUT", prefix + "/commands", self.overwrite_commands)
            r("POST", prefix + "/commands", self.create_command)
            r("GET", prefix + "/commands/{command_id}", self.get_command)
            r("PATCH", prefix + "/commands/{command_id}", self.edit_command)
            r("DELETE", prefix + "/commands/{command_id}", self.delete_command)
        r("GET", "/applications/{app}/guilds/{guild_id}/commands/permissions", self.no_permissions)
        # Interactions and their webhooks (authorised by the interaction token alone).
        r("POST", "/interactions/{interaction_id}/{token}/callback", self.callback, auth=False)
        r("POST", "/webhooks/{app}/{token}", self.followup, auth=False)
        msg = "/webhooks/{app}/{token}/messages/{message_id}"
        r("GET", msg, self.get_webhook_message, auth=False)
        r("PATCH", msg, self.edit_webhook_message, auth=False)
        r("DELETE", msg, self.delete_webhook_message, auth=False)
        # Channels and messages.
        r("GET", "/channels/{channel_id}", self.get_channel)
        r("POST", "/channels/{channel_id}/messages", self.create_message, bucket="messages.create")
        r("GET", "/channels/{channel_id}/messages", self.list_messages)
        r("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message)
        r(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            self.edit_message,
            bucket="messages.edit",
        )
        r("POST", "/channels/{channel_id}/messages/{message_id}/threads", self.start_thread)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message)
        r("POST", "/channels/{channel_id}/typing", self.typing)
        # Guild.
        r("GET", "/soundboard-default-sounds", self.empty_list)
        r("GET", "/guilds/{guild_id}", self.get_guild)
        r("GET", "/guilds/{guild_id}/soundboard-sounds", self.no_items)
        r("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        r("GET", "/guilds/{guild_id}/roles", self.get_roles)
        r("GET", "/guilds/{guild_id}/members", self.list_members)
        r("PATCH", "/guilds/{guild_id}/members/@me", self.edit_me)
        r("PATCH", "/guilds/{guild_id}/members/@me/nick", self.edit_me)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)
        r("PATCH", "/guilds/{guild_id}/members/{user_id}", self.edit_member)

    def _route(
        self,
        method: str,
        template: str,
        handler: Handler,
        *,
        auth: bool = True,
        bucket: str | None = None,
    ) -> None:
        hashed = None if bucket is None else bucket_hash(bucket)
        self.routes.append(_Route(method, template, _compile(template), handler, auth, hashed))

    # --- plumbing --------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method
        route, params = self._match(method, path)
        body_json, files = await self._read_body(request)
        req = RestRequest(
            method, path, params, dict(request.query), dict(request.headers), body_json, files
        )
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "route": None if route is None else route.template,
            "query": dict(request.query),
            "json": body_json,
            "files": [(f.filename, len(f.data)) for f in files],
        }
        try:
            if route is None:
                self.sim.record.add("rest.unknown", **entry)
                raise RestError(404, "404: Not Found")
            if route.auth and request.headers.get("Authorization") != f"Bot {self.sim.token}":
                raise RestError(401, "401: Unauthorized")
            verdict = self._rate_limit(route, params)
            if verdict is not None and not verdict.allowed:
                reply = self._rate_limited(verdict, entry, params)
            else:
                reply = await self._run(route, req)
            if verdict is not None:
                reply.headers.update(verdict.headers)
                entry["ratelimit"] = {"bucket": verdict.bucket, "remaining": verdict.remaining}
        except RestError as exc:
            reply = RestReply(exc.status, {"message": exc.message, "code": exc.code})
        self.sim.record.add("rest", status=reply.status, **entry)
        headers = {"Via": VIA, **reply.headers}
        if reply.status == 204 or reply.json is None:
            return web.Response(status=204, headers=headers)
        # The libraries compare the content type exactly, so no "; charset=" suffix.
        return web.Response(
            status=reply.status,
            body=json.dumps(reply.json).encode(),
            headers={**headers, "Content-Type": "application/json"},
        )

    async def _run(self, route: _Route, req: RestRequest) -> RestReply:
        # A handler's refusal still answers with the bucket's headers, as Discord's do.
        try:
            return await route.handler(req)
        except RestError as exc:
            return RestReply(exc.status, {"message": exc.message, "code": exc.code})

    def _rate_limit(self, route: _Route, params: dict[str, str]) -> Verdict | None:
        limits = self.sim.rate_limits
        if route.bucket is None or not limits.enabled:
            return None
        return limits.take(route.bucket, params["channel_id"])

    def _rate_limited(
        self, verdict: Verdict, entry: dict[str, Any], params: dict[str, str]
    ) -> RestReply:
        """Discord's answer to a request over a route's limit: the body says how long to
        wait (``retry_after``, seconds as a float), so does ``Retry-After`` (whole seconds)."""
        retry_after = verdict.retry_after
        self.sim.record.add(
            "rest.rate_limited",
            method=entry["method"],
            path=entry["path"],
            route=entry["route"],
            bucket=verdict.bucket,
            channel_id=int(params["channel_id"]),
            retry_after=retry_after,
        )
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": False,
        }
        headers = {"Retry-After": str(max(1, math.ceil(retry_after))), "X-RateLimit-Scope": "user"}
        return RestReply(429, body, headers)

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self.routes:
            if route.method != method:
                continue
            m = route.pattern.match(path)
            if m:
                return route, m.groupdict()
        return None, {}

    async def _read_body(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if not request.can_read_body:
            return None, []
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            return await self._read_multipart(request)
        if ctype == "application/x-www-form-urlencoded":
            # aiohttp sends a FormData without files this way (py-cord's payload_json-only
            # interaction callbacks); Discord accepts it too.
            form = await request.post()
            raw_json = form.get("payload_json")
            return (json.loads(raw_json) if isinstance(raw_json, str) else dict(form)), []
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode("utf-8", "replace"), []

    async def _read_multipart(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        body: Any = None
        files: list[UploadedFile] = []
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read()
            name = part.name or ""
            if name == "payload_json":
                body = json.loads(data)
            elif part.filename is not None:
                ctype = part.headers.get("Content-Type", "application/octet-stream")
                files.append(UploadedFile(name, part.filename, ctype, bytes(data)))
        return body, files

    # --- login -----------------------------------------------------------------------

    async def get_me(self, req: RestRequest) -> RestReply:
        me = self.sim.world.bot.to_json()
        me.update(verified=True, mfa_enabled=False, email=None, locale="en-US")
        return _ok(me)

    async def get_user(self, req: RestRequest) -> RestReply:
        user = self.sim.world.users.get(req.snowflake("user_id"))
        if user is None:
            raise RestError(404, "Unknown User", 10013)
        return _ok(user.to_json())

    async def get_gateway(self, req: RestRequest) -> RestReply:
        return _ok({"url": self.sim.gateway_url})

    async def get_gateway_bot(self, req: RestRequest) -> RestReply:
        return _ok(
            {
                "url": self.sim.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def get_application(self, req: RestRequest) -> RestReply:
        w = self.sim.world
        owner = next((u for u in w.users.values() if not u.bot), w.bot)
        return _ok(
            {
                "id": str(w.application_id),
                "name": w.bot.name,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": owner.to_json(),
                "team": None,
                "bot": w.bot.to_json(),
                "rpc_origins": [],
                "tags": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "approximate_guild_count": 1,
                "integration_types_config": {"0": {}},
            }
        )

    # --- commands --------------------------------------------------------------------

    def _scope(self, req: RestRequest) -> int | None:
        if int(req.params["app"]) != self.sim.world.application_id:
            raise RestError(403, "Missing Access", 50001)
        if "guild_id" not in req.params:
            return None
        guild_id = req.snowflake("guild_id")
        if guild_id != self.sim.world.guild_id:
            raise RestError(403, "Missing Access", 50001)
        return guild_id

    def _synced(self, scope: int | None) -> None:
        names = sorted(c["name"] for c in self.sim.commands.in_scope(scope))
        self.sim.record.add("command.sync", scope="global" if scope is None else scope, names=names)

    async def list_commands(self, req: RestRequest) -> RestReply:
        return _ok(self.sim.commands.in_scope(self._scope(req)))

    async def overwrite_commands(self, req: RestRequest) -> RestReply:
        scope = self._scope(req)
        if not isinstance(req.json, list):
            raise RestError(400, "Invalid Form Body", 50035)
        cmds = self.sim.commands.overwrite(scope, req.json)
        self._synced(scope)
        return _ok(cmds)

    async def create_command(self, req: RestRequest) -> RestReply:
        scope = self._scope(req)
        if not isinstance(req.json, dict) or "name" not in req.json:
            raise RestError(400, "Invalid Form Body", 50035)
        cmd, created = self.sim.commands.upsert(scope, req.json)
        self._synced(scope)
        return _ok(cmd, 201 if created else 200)

    async def get_command(self, req: RestRequest) -> RestReply:
        cmd = self.sim.commands.get(self._scope(req), req.snowflake("command_id"))
        if cmd is None:
            raise RestError(404, "Unknown application command", 10063)
        return _ok(cmd)

    async def edit_command(self, req: RestRequest) -> RestReply:
        scope = self._scope(req)
        cmd = self.sim.commands.edit(scope, req.snowflake("command_id"), req.json or {})
        if cmd is None:
            raise RestError(404, "Unknown application command", 10063)
        self._synced(scope)
        return _ok(cmd)

    async def delete_command(self, req: RestRequest) -> RestReply:
        scope = self._scope(req)
        if not self.sim.commands.delete(scope, req.snowflake("command_id")):
            raise RestError(404, "Unknown application command", 10063)
        self._synced(scope)
        return _ok()

    async def no_permissions(self, req: RestRequest) -> RestReply:
        self._scope(req)
        return _ok([])

    # --- interactions ----------------------------------------------------------------

    def _new_message(self, channel_id: int, body: Any, files: list[UploadedFile]) -> Message:
        msg = Message(snowflake(), channel_id, self.sim.world.bot.id, "")
        self._apply(msg, body, files)
        self.sim.messages.append(msg)
        return msg

    def _apply(self, msg: Message, body: Any, files: list[UploadedFile]) -> None:
        """Apply a message create/edit body, attachments included, to ``msg``."""
        body = body if isinstance(body, dict) else {}
        if "content" in body:
            msg.content = body["content"] or ""
        if "embeds" in body:
            msg.embeds = list(body["embeds"] or [])
        if "flags" in body and body["flags"] is not None:
            msg.flags = int(body["flags"]) | (msg.flags & FLAG_EPHEMERAL)
        if files or "attachments" in body:
            msg.attachments = self._attachments(msg, body.get("attachments"), files)

    def _attachments(
        self, msg: Message, declared: Any, files: list[UploadedFile]
    ) -> list[Attachment]:
        # "attachments" lists what the message keeps: existing ones by id, new uploads by
        # their index into files[n]. Without it, every uploaded file is attached.
        kept = {str(a.id): a for a in msg.attachments}
        uploads = {f.field: f for f in files}
        out: list[Attachment] = []
        used: set[str] = set()
        for item in declared if isinstance(declared, list) else []:
            key = str(item.get("id"))
            if key in kept:
                out.append(kept[key])
                continue
            f = uploads.get(f"files[{key}]")
            if f is None:
                continue
            used.add(f.field)
            out.append(self._store(f, item.get("filename"), item.get("description")))
        for f in files:
            if f.field not in used:
                out.append(self._store(f, None, None))
        return out

    def _store(self, f: UploadedFile, filename: str | None, description: str | None) -> Attachment:
        att = Attachment(snowflake(), filename or f.filename, f.content_type, f.data, description)
        self.sim.attachments[att.id] = att
        return att

    def _message_json(self, msg: Message) -> dict[str, Any]:
        return msg.to_json(self.sim.world, self.sim.base_url)

    def _record_message(self, msg: Message, via: str) -> None:
        self.sim.record.add(
            "message",
            via=via,
            id=msg.id,
            channel_id=msg.channel_id,
            content=msg.content,
            files=[(a.filename, len(a.data)) for a in msg.attachments],
        )

    def _invocation(self, token: str, app: str | None = None) -> Invocation:
        inv = self.sim.invocations.get(token)
        if inv is None or (app is not None and int(app) != self.sim.world.application_id):
            raise RestError(404, "Unknown Webhook", 10015)
        return inv

    def _answer(
        self, inv: Invocation, via: str, type_: int | None, req: RestRequest, msg: Message | None
    ) -> None:
        self.sim.record.add(
            "interaction.response",
            id=inv.id,
            name=inv.name,
            via=via,
            type=type_,
            json=req.json,
            files=[(f.filename, len(f.data)) for f in req.files],
        )
        inv.add(
            InteractionResponse(via, type_, req.json if isinstance(req.json, dict) else {}, msg)
        )

    async def callback(self, req: RestRequest) -> RestReply:
        inv = self._invocation(req.params["token"])
        if inv.id != req.snowflake("interaction_id"):
            raise RestError(404, "Unknown interaction", 10062)
        if inv.acknowledged:
            raise RestError(400, "Interaction has already been acknowledged.", 40060)
        body = req.json if isinstance(req.json, dict) else {}
        type_ = int(body.get("type", 0))
        data = body.get("data") or {}
        msg: Message | None = None
        if type_ in (CALLBACK_MESSAGE, CALLBACK_DEFERRED_MESSAGE):
            msg = Message(
                snowflake(),
                inv.channel.id,
                self.sim.world.bot.id,
                "",
                webhook_id=self.sim.world.application_id,
                interaction_id=inv.id,
            )
            self._apply(msg, data, req.files)
            if type_ == CALLBACK_DEFERRED_MESSAGE:
                msg.flags |= FLAG_LOADING
            msg.flags |= int(data.get("flags") or 0) & FLAG_EPHEMERAL
            inv.original = msg
            self.sim.messages.append(msg)
            self._record_message(msg, "interaction.callback")
        elif type_ not in (CALLBACK_DEFERRED_UPDATE, CALLBACK_UPDATE, 1, 8, 9, 12):
            raise RestError(400, "Invalid Form Body", 50035)
        # A deferred response is not yet a message anyone can see.
        visible = msg if type_ == CALLBACK_MESSAGE else None
        self._answer(inv, "callback", type_, req, visible)
        if req.query.get("with_response") not in ("1", "true", "True"):
            return _ok()
        interaction: dict[str, Any] = {
            "id": str(inv.id),
            "type": 2,
            "activity_instance_id": None,
            "response_message_id": None if msg is None else str(msg.id),
            "response_message_loading": type_ == CALLBACK_DEFERRED_MESSAGE,
            "response_message_ephemeral": bool(msg is not None and msg.flags & FLAG_EPHEMERAL),
        }
        resource: dict[str, Any] = {"type": type_}
        if msg is not None and type_ == CALLBACK_MESSAGE:
            resource["message"] = self._message_json(msg)
        return _ok({"interaction": interaction, "resource": resource})

    async def followup(self, req: RestRequest) -> RestReply:
        inv = self._invocation(req.params["token"], req.params["app"])
        if not inv.acknowledged:
            # Discord only knows the interaction's webhook once the interaction is answered.
            raise RestError(404, "Unknown Webhook", 10015)
        msg = Message(
            snowflake(),
            inv.channel.id,
            self.sim.world.bot.id,
            "",
            webhook_id=self.sim.world.application_id,
            interaction_id=inv.id,
        )
        self._apply(msg, req.json, req.files)
        body = req.json if isinstance(req.json, dict) else {}
        msg.flags |= int(body.get("flags") or 0) & FLAG_EPHEMERAL
        self.sim.messages.append(msg)
        self._record_message(msg, "interaction.followup")
        self._answer(inv, "followup", None, req, msg)
        if req.query.get("wait", "true").lower() in ("false", "0"):
            return _ok()
        return _ok(self._message_json(msg))

    def _webhook_message(self, inv: Invocation, message_id: str) -> Message:
        if message_id == "@original":
            if inv.original is None:
                raise RestError(404, "Unknown Message", 10008)
            return inv.original
        for msg in self.sim.messages:
            if str(msg.id) == message_id and msg.interaction_id == inv.id and not msg.deleted:
                return msg
        raise RestError(404, "Unknown Message", 10008)

    async def get_webhook_message(self, req: RestRequest) -> RestReply:
        inv = self._invocation(req.params["token"], req.params["app"])
        return _ok(self._message_json(self._webhook_message(inv, req.params["message_id"])))

    async def edit_webhook_message(self, req: RestRequest) -> RestReply:
        inv = self._invocation(req.params["token"], req.params["app"])
        msg = self._webhook_message(inv, req.params["message_id"])
        self._apply(msg, req.json, req.files)
        msg.flags &= ~FLAG_LOADING
        msg.edited = True
        original = req.params["message_id"] == "@original"
        via = "edit_original" if original else "edit_followup"
        self._record_message(msg, "interaction." + via)
        self._answer(inv, via, None, req, msg)
        return _ok(self._message_json(msg))

    async def delete_webhook_message(self, req: RestRequest) -> RestReply:
        inv = self._invocation(req.params["token"], req.params["app"])
        msg = self._webhook_message(inv, req.params["message_id"])
        msg.deleted = True
        original = req.params["message_id"] == "@original"
        self._answer(inv, "delete_original" if original else "delete_followup", None, req, None)
        return _ok()

    # --- channels --------------------------------------------------------------------

    def _channel(self, req: RestRequest) -> int:
        """The channel (or thread) of the path; 404 if the world has none by that id."""
        channel_id = req.snowflake("channel_id")
        w = self.sim.world
        if channel_id not in w.channels and channel_id not in w.threads:
            raise RestError(404, "Unknown Channel", 10003)
        return channel_id

    async def get_channel(self, req: RestRequest) -> RestReply:
        w = self.sim.world
        channel_id = self._channel(req)
        thread = w.threads.get(channel_id)
        if thread is not None:
            return _ok(thread.to_json(w.guild_id, member_id=w.bot.id))
        return _ok(w.channels[channel_id].to_json(w.guild_id))

    async def create_message(self, req: RestRequest) -> RestReply:
        channel_id = self._channel(req)
        body = req.json if isinstance(req.json, dict) else {}
        if not (body.get("content") or body.get("embeds") or req.files or body.get("sticker_ids")):
            raise RestError(400, "Cannot send an empty message", 50006)
        msg = self._new_message(channel_id, body, req.files)
        thread = self.sim.world.threads.get(channel_id)
        if thread is not None:
            thread.message_count += 1
            thread.last_message_id = msg.id
        self._record_message(msg, "channel")
        data = self._message_json(msg)
        await self.sim.gateway.dispatch(
            self.sim.world.bot.id, "MESSAGE_CREATE", data, intent=INTENT_GUILD_MESSAGES
        )
        return _ok(data)

    def _channel_message(self, req: RestRequest) -> Message:
        channel_id = self._channel(req)
        for msg in self.sim.messages:
            if (
                str(msg.id) == req.params["message_id"]
                and msg.channel_id == channel_id
                and not msg.deleted
            ):
                return msg
        raise RestError(404, "Unknown Message", 10008)

    async def list_messages(self, req: RestRequest) -> RestReply:
        channel_id = self._channel(req)
        msgs = [m for m in self.sim.messages if m.channel_id == channel_id and not m.deleted]
        limit = int(req.query.get("limit", "50"))
        return _ok([self._message_json(m) for m in reversed(msgs)][:limit])

    async def get_message(self, req: RestRequest) -> RestReply:
        return _ok(self._message_json(self._channel_message(req)))

    async def edit_message(self, req: RestRequest) -> RestReply:
        msg = self._channel_message(req)
        self._apply(msg, req.json, req.files)
        msg.edited = True
        self._record_message(msg, "channel.edit")
        return _ok(self._message_json(msg))

    async def delete_message(self, req: RestRequest) -> RestReply:
        self._channel_message(req).deleted = True
        return _ok()

    async def start_thread(self, req: RestRequest) -> RestReply:
        """Start Thread from Message: a public thread whose id is the message's id. The
        bot (its creator) joins it; THREAD_CREATE (``newly_created``) and the starter
        message's MESSAGE_UPDATE go out, as Discord sends them."""
        w = self.sim.world
        channel_id = self._channel(req)
        if channel_id in w.threads or w.channels[channel_id].kind != 0:
            raise RestError(400, "Cannot execute action on this channel type", 50024)
        msg = self._channel_message(req)
        if msg.id in w.threads:
            raise RestError(400, "A thread has already been created for this message", 160004)
        body = req.json if isinstance(req.json, dict) else {}
        name = body.get("name")
        duration = body.get("auto_archive_duration") or 1440
        slowmode = body.get("rate_limit_per_user") or 0
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise RestError(400, "Invalid Form Body", 50035)
        if duration not in ARCHIVE_DURATIONS or not 0 <= int(slowmode) <= 21600:
            raise RestError(400, "Invalid Form Body", 50035)
        thread = w.add_thread(channel_id, msg.id, name, w.bot.id)
        thread.auto_archive_duration = int(duration)
        thread.rate_limit_per_user = int(slowmode)
        msg.flags |= FLAG_HAS_THREAD
        self.sim.record.add(
            "thread.create",
            id=thread.id,
            parent_id=channel_id,
            message_id=msg.id,
            name=name,
            owner_id=thread.owner_id,
        )
        data = thread.to_json(w.guild_id, member_id=w.bot.id)
        await self.sim.gateway.dispatch(
            w.bot.id, "THREAD_CREATE", {**data, "newly_created": True}, intent=INTENT_GUILDS
        )
        await self.sim.gateway.dispatch(
            w.bot.id, "MESSAGE_UPDATE", self._message_json(msg), intent=INTENT_GUILD_MESSAGES
        )
        return _ok(data, 201)

    async def typing(self, req: RestRequest) -> RestReply:
        self._channel(req)
        return _ok()

    # --- guild -----------------------------------------------------------------------

    def _guild(self, req: RestRequest) -> None:
        if req.snowflake("guild_id") != self.sim.world.guild_id:
            raise RestError(404, "Unknown Guild", 10004)

    async def empty_list(self, req: RestRequest) -> RestReply:
        return _ok([])

    async def no_items(self, req: RestRequest) -> RestReply:
        self._guild(req)
        return _ok({"items": []})

    async def get_guild(self, req: RestRequest) -> RestReply:
        self._guild(req)
        data = self.sim.gateway.guild_create()
        for key in ("channels", "members", "voice_states", "threads", "presences", "joined_at"):
            data.pop(key, None)
        return _ok(data)

    async def get_guild_channels(self, req: RestRequest) -> RestReply:
        self._guild(req)
        w = self.sim.world
        return _ok([c.to_json(w.guild_id) for c in w.channels.values()])

    async def get_roles(self, req: RestRequest) -> RestReply:
        self._guild(req)
        return _ok([r.to_json() for r in self.sim.world.guild_roles.values()])

    async def list_members(self, req: RestRequest) -> RestReply:
        self._guild(req)
        w = self.sim.world
        return _ok([w.member_json(uid) for uid in w.users])

    async def get_member(self, req: RestRequest) -> RestReply:
        self._guild(req)
        user_id = req.snowflake("user_id")
        if user_id not in self.sim.world.users:
            raise RestError(404, "Unknown Member", 10007)
        return _ok(self.sim.world.member_json(user_id))

    async def edit_me(self, req: RestRequest) -> RestReply:
        self._guild(req)
        return await self._edit_member(self.sim.world.bot.id, req)

    async def edit_member(self, req: RestRequest) -> RestReply:
        self._guild(req)
        user_id = req.snowflake("user_id")
        if user_id not in self.sim.world.users:
            raise RestError(404, "Unknown Member", 10007)
        return await self._edit_member(user_id, req)

    async def _edit_member(self, user_id: int, req: RestRequest) -> RestReply:
        w = self.sim.world
        body = req.json if isinstance(req.json, dict) else {}
        if "nick" in body:
            if body["nick"]:
                w.nicks[user_id] = str(body["nick"])
            else:
                w.nicks.pop(user_id, None)
        self.sim.record.add("member.update", user_id=user_id, nick=w.nicks.get(user_id), json=body)
        member = w.member_json(user_id)
        await self.sim.gateway.dispatch(
            w.bot.id,
            "GUILD_MEMBER_UPDATE",
            {**member, "guild_id": str(w.guild_id)},
            intent=1 << 1,
        )
        if "channel_id" in body:
            # Moving or disconnecting a member changes their voice state (Discord's 4014
            # for the bot's own voice connection comes from the voice side's revoke).
            target = body["channel_id"]
            await self.sim.gateway.set_voice_state(user_id, None if target is None else int(target))
        return _ok(member)


def bot_token_for(user_id: int, secret: str) -> str:
    """A token shaped like Discord's: base64(user id) . timestamp part . secret part."""
    head = base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")
    return f"{head}.U2ltdWxhdG9y.{secret}"
