"""The simulated Discord's shared state: one guild, its channels and members, voice states.

Both halves of the simulator work on one :class:`World`:

* the main side (REST + main gateway, :mod:`discordsim.gateway`, :mod:`discordsim.rest`)
  owns logins, dispatches and voice *states* (op 4 -> VOICE_STATE_UPDATE);
* the voice side (:mod:`discordsim.voice`) owns voice *servers*: endpoints, tokens,
  the voice gateway, UDP media and scripted participants.

They meet here: the main gateway asks the voice side for a server grant when a user
joins a voice channel, and the voice side asks the main gateway to dispatch events
(a failover's new VOICE_SERVER_UPDATE, a scripted participant's VOICE_STATE_UPDATE).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Snowflakes are plain ints here; the JSON layer turns them into strings as Discord does.
_ids = itertools.count(1_100_000_000_000_000_000)


def snowflake() -> int:
    """A new unique id, shaped like a Discord snowflake."""
    return next(_ids)


@dataclass
class User:
    id: int
    name: str
    bot: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "flags": 0,
            "public_flags": 0,
        }


@dataclass
class Channel:
    id: int
    name: str
    kind: int  #: 0 text, 2 voice, 13 stage
    position: int = 0

    def to_json(self, guild_id: int) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.kind,
            "guild_id": str(guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "parent_id": None,
            "nsfw": False,
            "flags": 0,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }
        if self.kind in (2, 13):
            data.update(bitrate=64000, user_limit=0, rtc_region=None, video_quality_mode=1)
        else:
            data.update(topic=None)
        return data


#: Channel type of a public thread (Discord's numbering); text channels are 0.
THREAD_PUBLIC = 11
#: The archive durations (minutes) Discord accepts for a thread.
ARCHIVE_DURATIONS = frozenset({60, 1440, 4320, 10080})
#: Timestamps in the simulated world: one fixed instant, as messages use.
_TIMESTAMP = "2026-01-01T00:00:00.000000+00:00"


@dataclass
class Thread:
    """A public thread started from a message. As on Discord, its id is the starter
    message's id, and it is a channel: messages are posted to and edited in its id."""

    id: int
    parent_id: int
    name: str
    owner_id: int
    auto_archive_duration: int = 1440
    rate_limit_per_user: int = 0
    #: messages sent in it (the starter message is not one of them)
    message_count: int = 0
    last_message_id: int | None = None
    #: who has joined; the creator joins on creation
    member_ids: set[int] = field(default_factory=set)

    def to_json(self, guild_id: int, *, member_id: int | None = None) -> dict[str, Any]:
        """The thread channel object; with ``member_id``, that user's thread member
        (``member``), as Discord adds for the current user where it has joined."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": THREAD_PUBLIC,
            "guild_id": str(guild_id),
            "parent_id": str(self.parent_id),
            "owner_id": str(self.owner_id),
            "name": self.name,
            "last_message_id": None if self.last_message_id is None else str(self.last_message_id),
            "rate_limit_per_user": self.rate_limit_per_user,
            "flags": 0,
            "message_count": self.message_count,
            "total_message_sent": self.message_count,
            "member_count": len(self.member_ids),
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": self.auto_archive_duration,
                "archive_timestamp": _TIMESTAMP,
                "locked": False,
                "create_timestamp": _TIMESTAMP,
            },
        }
        if member_id is not None and member_id in self.member_ids:
            data["member"] = {
                "id": str(self.id),
                "user_id": str(member_id),
                "join_timestamp": _TIMESTAMP,
                "flags": 0,
            }
        return data


# Permission bits (Discord's values) that the simulated guild hands out by default: enough to
# read and write the text channel, attach files, join and speak in voice and use commands.
PERM_ADMINISTRATOR = 1 << 3
PERM_MANAGE_GUILD = 1 << 5
PERM_VIEW_CHANNEL = 1 << 10
PERM_SEND_MESSAGES = 1 << 11
PERM_ATTACH_FILES = 1 << 15
PERM_CONNECT = 1 << 20
PERM_SPEAK = 1 << 21
PERM_MOVE_MEMBERS = 1 << 24
PERM_CHANGE_NICKNAME = 1 << 26
PERM_USE_APPLICATION_COMMANDS = 1 << 31
DEFAULT_PERMISSIONS = (
    (1 << 6)  # add reactions
    | PERM_VIEW_CHANNEL
    | PERM_SEND_MESSAGES
    | (1 << 14)  # embed links
    | PERM_ATTACH_FILES
    | (1 << 16)  # read message history
    | PERM_CONNECT
    | PERM_SPEAK
    | (1 << 25)  # use voice activity
    | PERM_CHANGE_NICKNAME
    | PERM_USE_APPLICATION_COMMANDS
)
ALL_PERMISSIONS = (1 << 50) - 1


@dataclass
class Role:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    name: str
    permissions: int = 0
    position: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class VoiceStateRec:
    """A user's voice state, as the main gateway knows it."""

    user_id: int
    channel_id: int | None
    session_id: str
    self_mute: bool = False
    self_deaf: bool = False


@dataclass(frozen=True)
class VoiceGrant:
    """What VOICE_SERVER_UPDATE carries for one (guild, user): endpoint with port, token."""

    guild_id: int
    user_id: int
    endpoint: str | None
    token: str
    #: When set, the main gateway first dispatches this grant with ``endpoint: null``
    #: ("wait for a new one") and the real endpoint this many seconds later.
    null_endpoint_for_s: float | None = None


class VoiceSide(Protocol):
    """What the main gateway needs from the voice side."""

    def grant(self, guild_id: int, user_id: int, session_id: str, channel_id: int) -> VoiceGrant:
        """Issue a fresh token for this user's new voice state; older ones stop being valid."""

    def revoke(self, guild_id: int, user_id: int) -> None:
        """The user left voice: close their voice connection if any, forget the grant."""


# A dispatcher sends one main-gateway dispatch (event name, payload) to one user's
# gateway connection (the bot). Set by the main gateway when a client identifies.
Dispatcher = Callable[[int, str, dict[str, Any]], Awaitable[None]]


@dataclass
class World:
    """One guild with text and voice channels and members."""

    guild_id: int = field(default_factory=snowflake)
    guild_name: str = "notetaker test guild"
    #: 0 means "the bot's user id", which is what Discord gives every bot made since 2016
    #: (py-cord relies on it and asks for the commands of ``bot.user.id``)
    application_id: int = 0
    bot: User = field(default_factory=lambda: User(snowflake(), "notetaker-bot", bot=True))
    users: dict[int, User] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    voice_states: dict[int, VoiceStateRec] = field(default_factory=dict)
    #: user id -> role ids
    roles: dict[int, set[int]] = field(default_factory=dict)
    voice: VoiceSide | None = None
    dispatch: Dispatcher | None = None
    #: role id -> role; always holds @everyone (id == guild_id)
    guild_roles: dict[int, Role] = field(default_factory=dict)
    #: user id -> guild nickname
    nicks: dict[int, str] = field(default_factory=dict)
    #: the guild owner (gets every permission); None means nobody in the world owns it
    owner_id: int | None = None
    #: thread id -> thread (threads are channels too, but not listed among ``channels``)
    threads: dict[int, Thread] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.application_id:
            self.application_id = self.bot.id
        if self.guild_id not in self.guild_roles:
            self.guild_roles[self.guild_id] = Role(self.guild_id, "@everyone", DEFAULT_PERMISSIONS)

    @classmethod
    def default(cls) -> World:
        """A guild with #general (text), Meeting Room (voice) and one human member."""
        w = cls()
        w.users[w.bot.id] = w.bot
        w.add_channel("general", 0)
        w.add_channel("Meeting Room", 2)
        w.add_user("alice")
        return w

    def add_channel(self, name: str, kind: int) -> Channel:
        ch = Channel(snowflake(), name, kind, position=len(self.channels))
        self.channels[ch.id] = ch
        return ch

    def add_thread(self, parent_id: int, message_id: int, name: str, owner_id: int) -> Thread:
        """Start a public thread from message ``message_id`` of channel ``parent_id``."""
        thread = Thread(message_id, parent_id, name, owner_id, member_ids={owner_id})
        self.threads[thread.id] = thread
        return thread

    def add_user(self, name: str, *, bot: bool = False) -> User:
        u = User(snowflake(), name, bot=bot)
        self.users[u.id] = u
        return u

    def add_role(self, name: str, permissions: int = 0) -> Role:
        role = Role(snowflake(), name, permissions, position=len(self.guild_roles))
        self.guild_roles[role.id] = role
        return role

    def give_role(self, user: User, role: Role) -> None:
        self.roles.setdefault(user.id, set()).add(role.id)

    def permissions_of(self, user_id: int) -> int:
        """Guild-level permissions: @everyone | the user's roles; owner and admins get all."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.guild_roles[self.guild_id].permissions
        for rid in self.roles.get(user_id, ()):
            role = self.guild_roles.get(rid)
            if role is not None:
                perms |= role.permissions
        return ALL_PERMISSIONS if perms & PERM_ADMINISTRATOR else perms

    def member_json(self, user_id: int) -> dict[str, Any]:
        """The guild member object for a user, as GUILD_CREATE and interactions carry it."""
        return {
            "user": self.users[user_id].to_json(),
            "nick": self.nicks.get(user_id),
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in sorted(self.roles.get(user_id, ()))],
            "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }

    def voice_state_json(self, rec: VoiceStateRec) -> dict[str, Any]:
        """A VOICE_STATE_UPDATE payload for one voice state (member included)."""
        return {
            "guild_id": str(self.guild_id),
            "channel_id": None if rec.channel_id is None else str(rec.channel_id),
            "user_id": str(rec.user_id),
            "member": self.member_json(rec.user_id) if rec.user_id in self.users else None,
            "session_id": rec.session_id,
            "deaf": False,
            "mute": False,
            "self_deaf": rec.self_deaf,
            "self_mute": rec.self_mute,
            "self_stream": False,
            "self_video": False,
            "suppress": False,
            "request_to_speak_timestamp": None,
        }

    def channel(self, name: str) -> Channel:
        for ch in self.channels.values():
            if ch.name == name:
                return ch
        raise KeyError(name)

    def user(self, name: str) -> User:
        for u in self.users.values():
            if u.name == name:
                return u
        raise KeyError(name)

    @property
    def text_channel(self) -> Channel:
        return next(c for c in self.channels.values() if c.kind == 0)

    @property
    def voice_channel(self) -> Channel:
        return next(c for c in self.channels.values() if c.kind == 2)
