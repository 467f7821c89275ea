"""Application commands the bot registered, and interactions the simulator sends it.

:class:`CommandStore` answers the application-command REST routes (each library syncs
differently: discord.py bulk-overwrites on ``tree.sync()``, py-cord reads then
overwrites/creates, nextcord reads then upserts). :class:`Invocation` is one
INTERACTION_CREATE and everything the bot answered to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from discordsim.world import Channel, User, World, snowflake

# Application command option types (Discord's numbering).
OPT_SUB_COMMAND = 1
OPT_SUB_COMMAND_GROUP = 2
OPT_STRING = 3
OPT_INTEGER = 4
OPT_BOOLEAN = 5
OPT_USER = 6
OPT_CHANNEL = 7
OPT_ROLE = 8
OPT_NUMBER = 10

# Interaction callback types.
CALLBACK_PONG = 1
CALLBACK_MESSAGE = 4
CALLBACK_DEFERRED_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE = 6
CALLBACK_UPDATE = 7


class CommandStore:
    """Commands per scope: ``None`` is global, an int is a guild id."""

    def __init__(self, application_id: int) -> None:
        self.application_id = application_id
        self._by_scope: dict[int | None, dict[int, dict[str, Any]]] = {}

    def in_scope(self, scope: int | None) -> list[dict[str, Any]]:
        return list(self._by_scope.get(scope, {}).values())

    def all(self) -> list[dict[str, Any]]:
        return [c for cmds in self._by_scope.values() for c in cmds.values()]

    def get(self, scope: int | None, command_id: int) -> dict[str, Any] | None:
        return self._by_scope.get(scope, {}).get(command_id)

    def find(self, name: str, guild_id: int | None = None) -> dict[str, Any] | None:
        """A chat-input command by name: the guild's first, then global ones."""
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for cmd in self._by_scope.get(scope, {}).values():
                if cmd["name"] == name and cmd.get("type", 1) == 1:
                    return cmd
        return None

    def _complete(self, scope: int | None, body: Mapping[str, Any], cid: int) -> dict[str, Any]:
        cmd: dict[str, Any] = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "integration_types": [0],
            "contexts": None,
            "name_localizations": None,
            "description_localizations": None,
        }
        cmd.update({k: v for k, v in body.items() if k != "id"})
        cmd["id"] = str(cid)
        cmd["application_id"] = str(self.application_id)
        cmd["version"] = str(snowflake())
        if scope is not None:
            cmd["guild_id"] = str(scope)
        return cmd

    def upsert(self, scope: int | None, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create, or overwrite the one with the same name and type; True if created."""
        cmds = self._by_scope.setdefault(scope, {})
        for cid, old in cmds.items():
            if old["name"] == body.get("name") and old.get("type", 1) == body.get("type", 1):
                cmds[cid] = self._complete(scope, body, cid)
                return cmds[cid], False
        cid = snowflake()
        cmds[cid] = self._complete(scope, body, cid)
        return cmds[cid], True

    def overwrite(self, scope: int | None, bodies: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Bulk overwrite: commands keep their ids where the name and type match."""
        old = {(c["name"], c.get("type", 1)): int(c["id"]) for c in self.in_scope(scope)}
        new: dict[int, dict[str, Any]] = {}
        for body in bodies:
            cid = old.get((body.get("name"), body.get("type", 1))) or snowflake()
            new[cid] = self._complete(scope, body, cid)
        self._by_scope[scope] = new
        return list(new.values())

    def edit(
        self, scope: int | None, command_id: int, body: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        old = self.get(scope, command_id)
        if old is None:
            return None
        merged = {**old, **body}
        self._by_scope[scope][command_id] = self._complete(scope, merged, command_id)
        return self._by_scope[scope][command_id]

    def delete(self, scope: int | None, command_id: int) -> bool:
        return self._by_scope.get(scope, {}).pop(command_id, None) is not None


@dataclass
class Attachment:
    """A file the bot uploaded, kept in memory so tests can read it back."""

    id: int
    filename: str
    content_type: str
    data: bytes
    description: str | None = None

    def to_json(self, base_url: str) -> dict[str, Any]:
        url = f"{base_url}/attachments/{self.id}/{self.filename}"
        return {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": url,
            "proxy_url": url,
            "content_type": self.content_type,
            "description": self.description,
        }


@dataclass
class Message:
    """A message the bot created (channel message, interaction response or followup)."""

    id: int
    channel_id: int
    author_id: int
    content: str
    attachments: list[Attachment] = field(default_factory=list)
    embeds: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    webhook_id: int | None = None
    interaction_id: int | None = None
    edited: bool = False
    deleted: bool = False

    def to_json(self, world: World, base_url: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": 0 if self.interaction_id is None else 20,
            "channel_id": str(self.channel_id),
            "guild_id": str(world.guild_id),
            "author": world.users[self.author_id].to_json(),
            "content": self.content,
            "timestamp": "2026-01-01T00:00:00.000000+00:00",
            "edited_timestamp": "2026-01-01T00:00:01.000000+00:00" if self.edited else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.to_json(base_url) for a in self.attachments],
            "embeds": self.embeds,
            "pinned": False,
            "flags": self.flags,
            "components": [],
        }
        thread = world.threads.get(self.id)
        if thread is not None:
            # A thread started from this message: Discord embeds the thread channel.
            data["thread"] = thread.to_json(world.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.interaction_id is not None:
            data["application_id"] = str(world.application_id)
        return data


@dataclass
class InteractionResponse:
    """One answer from the bot: ``via`` is callback, followup, edit_original, edit_followup,
    delete_original or delete_followup; ``type`` is the callback type for callbacks."""

    via: str
    type: int | None
    json: dict[str, Any]
    message: Message | None


class Invocation:
    """One APPLICATION_COMMAND interaction sent to the bot, and its answers as they arrive."""

    def __init__(self, payload: dict[str, Any], user: User, channel: Channel) -> None:
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.name: str = payload["data"]["name"]
        self.user = user
        self.channel = channel
        self.responses: list[InteractionResponse] = []
        self.original: Message | None = None
        self._changed = asyncio.Event()

    @property
    def acknowledged(self) -> bool:
        return any(r.via == "callback" for r in self.responses)

    def add(self, response: InteractionResponse) -> None:
        self.responses.append(response)
        self._changed.set()

    async def wait(
        self,
        predicate: Callable[[InteractionResponse], bool],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> InteractionResponse:
        """The first response that satisfies ``predicate``; waits for it."""
        seen = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for r in self.responses[seen:]:
                        if predicate(r):
                            return r
                    seen = len(self.responses)
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            got = [(r.via, r.type) for r in self.responses]
            raise TimeoutError(
                f"interaction /{self.name}: no matching response in {timeout}s (got {got})"
            ) from None

    async def after(self, count: int, *, timeout: float) -> list[InteractionResponse]:  # noqa: ASYNC109
        """The responses after the first ``count``; waits up to ``timeout`` for one to
        arrive, and returns ``[]`` if none did (a long poll, for the control API)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(self.responses) <= count:
                    self._changed.clear()
                    await self._changed.wait()
        return self.responses[count:]

    async def callback(self, *, timeout: float = 10.0) -> InteractionResponse:  # noqa: ASYNC109
        """The initial response (type 4 message, 5 deferred, ...)."""
        return await self.wait(lambda r: r.via == "callback", timeout=timeout)

    async def followup(self, *, timeout: float = 10.0) -> InteractionResponse:  # noqa: ASYNC109
        """The first followup message."""
        return await self.wait(lambda r: r.via == "followup", timeout=timeout)

    async def reply(self, *, timeout: float = 10.0) -> Message:  # noqa: ASYNC109
        """The first visible message: a type-4 callback, an edit of @original or a followup."""
        r = await self.wait(lambda r: r.message is not None, timeout=timeout)
        assert r.message is not None
        return r.message


def new_token() -> str:
    """An interaction token: opaque and long, like Discord's."""
    return "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)


def _option_type(value: object) -> int:
    if isinstance(value, bool):
        return OPT_BOOLEAN
    if isinstance(value, int):
        return OPT_INTEGER
    if isinstance(value, float):
        return OPT_NUMBER
    if isinstance(value, User):
        return OPT_USER
    if isinstance(value, Channel):
        return OPT_CHANNEL
    return OPT_STRING


def build_options(
    world: World,
    declared: list[dict[str, Any]],
    given: Mapping[str, object],
    resolved: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Option values as Discord sends them; users and channels also fill ``resolved``."""
    types = {o["name"]: o.get("type", OPT_STRING) for o in declared}
    out: list[dict[str, Any]] = []
    for name, value in given.items():
        kind = types.get(name, _option_type(value))
        if kind in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP):
            sub = next((o for o in declared if o["name"] == name), {})
            inner = value if isinstance(value, Mapping) else {}
            out.append(
                {
                    "name": name,
                    "type": kind,
                    "options": build_options(world, sub.get("options") or [], inner, resolved),
                }
            )
            continue
        if isinstance(value, User):
            resolved.setdefault("users", {})[str(value.id)] = value.to_json()
            member = world.member_json(value.id)
            member.pop("user")
            member["permissions"] = str(world.permissions_of(value.id))
            resolved.setdefault("members", {})[str(value.id)] = member
            value = str(value.id)
        elif isinstance(value, Channel):
            ch = value.to_json(world.guild_id)
            ch["permissions"] = str(world.permissions_of(world.bot.id))
            resolved.setdefault("channels", {})[str(value.id)] = ch
            value = str(value.id)
        out.append({"name": name, "type": kind, "value": value})
    return out


def interaction_payload(
    world: World,
    command: dict[str, Any],
    user: User,
    channel: Channel,
    options: Mapping[str, object],
) -> dict[str, Any]:
    """An INTERACTION_CREATE (type 2, APPLICATION_COMMAND) for a member in the guild."""
    resolved: dict[str, dict[str, Any]] = {}
    opts = build_options(world, command.get("options") or [], options, resolved)
    data: dict[str, Any] = {
        "id": command["id"],
        "name": command["name"],
        "type": command.get("type", 1),
    }
    if opts:
        data["options"] = opts
    if resolved:
        data["resolved"] = resolved
    if "guild_id" in command:
        data["guild_id"] = command["guild_id"]
    member = world.member_json(user.id)
    member["permissions"] = str(world.permissions_of(user.id))
    chan = channel.to_json(world.guild_id)
    app_perms = str(world.permissions_of(world.bot.id))
    return {
        "id": str(snowflake()),
        "application_id": str(world.application_id),
        "type": 2,
        "data": data,
        "guild_id": str(world.guild_id),
        "guild": {"id": str(world.guild_id), "locale": "en-US", "features": []},
        "channel_id": str(channel.id),
        "channel": {**chan, "permissions": str(world.permissions_of(user.id))},
        "member": member,
        "token": new_token(),
        "version": 1,
        "app_permissions": app_perms,
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(world.guild_id)},
        "context": 0,
        "attachment_size_limit": 10 * 1024 * 1024,
    }
