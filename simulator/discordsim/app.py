"""The simulator process: REST and main gateway on one loopback port, around one World.

Use it as an async context manager::

    async with Simulator() as sim:
        ...  # point a library at sim.api_base / sim.gateway_url (discordsim.testing)
        inv = await sim.invoke("startnotes", user=sim.world.user("alice"))
        await inv.callback()

It only ever listens on a loopback address, and it stops by itself after ``lifetime``
seconds even if nobody stops it, so a crashed test cannot leave it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from discordsim.gateway import Gateway
from discordsim.interactions import (
    Attachment,
    CommandStore,
    Invocation,
    Message,
    interaction_payload,
)
from discordsim.ratelimit import RateLimits
from discordsim.record import Record
from discordsim.rest import Rest, bot_token_for
from discordsim.world import Channel, User, VoiceStateRec, World

log = logging.getLogger(__name__)

API_VERSION = 10


class Simulator:
    """REST + main gateway for one :class:`World`, with a :class:`Record` of the session.

    Attributes tests use: ``world``, ``record``, ``token`` (the bot's test token),
    ``commands`` (registered application commands), ``messages`` (everything the bot
    posted), ``invocations`` (by interaction token), ``gateway``, ``rate_limits``
    (Discord's per-channel message limits: on unless ``rate_limits=False``; switch them
    with ``sim.rate_limits.enabled``), and the URLs ``base_url``, ``api_base`` and
    ``gateway_url``.
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        heartbeat_interval_ms: int = 41250,
        lifetime: float | None = 600.0,
        rate_limits: bool = True,
        privileged_intents: frozenset[str] = frozenset(),
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the simulator only listens on loopback, not {host}")
        self.world = world if world is not None else World.default()
        if self.world.bot.id not in self.world.users:
            self.world.users[self.world.bot.id] = self.world.bot
        self.host = host
        self.port = port
        self.token = token or bot_token_for(self.world.bot.id, secrets.token_urlsafe(27))
        self.lifetime = lifetime
        self.record = Record()
        self.commands = CommandStore(self.world.application_id)
        self.messages: list[Message] = []
        self.attachments: dict[int, Attachment] = {}
        self.invocations: dict[str, Invocation] = {}
        self.rate_limits = RateLimits(enabled=rate_limits)
        self.gateway = Gateway(
            self.world,
            self.record,
            token=self.token,
            url=lambda: self.gateway_url,
            heartbeat_interval_ms=heartbeat_interval_ms,
            privileged_intents=privileged_intents,
        )
        self.rest = Rest(self)
        self._mounts: list[tuple[str, web.Application]] = []
        self._runner: web.AppRunner | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.stopped = asyncio.Event()

    # --- addresses -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: attachments are served under it."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What the libraries call the API base: ``http://127.0.0.1:PORT/api/v10``."""
        return f"{self.base_url}/api/v{API_VERSION}"

    @property
    def gateway_url(self) -> str:
        """The main gateway, as GET /gateway answers it (no query string)."""
        return f"ws://{self.host}:{self.port}/gateway"

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", r"/api/v{version:\d+}/{tail:.*}", self.rest.handle)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway/", self.gateway.handle)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/attachments/{id}/{filename}", self._attachment)
        for prefix, sub in self._mounts:
            app.add_subapp(prefix, sub)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        # Bind the socket ourselves so an ephemeral port is known before anyone connects.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        if self.lifetime is not None:
            self._watchdog = asyncio.create_task(self._expire(self.lifetime))
        log.info("discordsim listening on %s", self.base_url)

    def mount(self, prefix: str, sub: web.Application) -> None:
        """Serve ``sub`` under ``prefix`` on the same port (call before :meth:`start`):
        :mod:`discordsim.control` lives there, beside the API it drives."""
        if self._runner is not None:
            raise RuntimeError("mount() must come before start()")
        self._mounts.append((prefix, sub))

    async def _expire(self, after: float) -> None:
        await asyncio.sleep(after)
        log.warning("discordsim stopping itself after %.0fs", after)
        self.record.add("sim.expired", after=after)
        await self._shutdown()

    async def stop(self) -> None:
        """Close every connection and the listening socket; idempotent."""
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self._shutdown()

    async def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await self.gateway.close_all()
        await runner.cleanup()
        self.stopped.set()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _attachment(self, request: web.Request) -> web.StreamResponse:
        att = self.attachments.get(int(request.match_info["id"]))
        if att is None:
            raise web.HTTPNotFound()
        return web.Response(body=att.data, content_type=att.content_type.split(";")[0])

    # --- driving the bot -------------------------------------------------------------

    async def wait_ready(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Wait until a client has identified and been sent READY and GUILD_CREATE."""
        async with asyncio.timeout(timeout):
            await self.gateway.ready.wait()

    async def wait_command(self, name: str, timeout: float = 15.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait until the bot has registered a command called ``name``; return it."""

        def registered(_: object) -> bool:
            return self.commands.find(name, self.world.guild_id) is not None

        if not registered(None):
            await self.record.wait_for("command.sync", registered, timeout=timeout)
        cmd = self.commands.find(name, self.world.guild_id)
        assert cmd is not None
        return cmd

    async def invoke(
        self,
        name: str,
        *,
        user: User,
        options: Mapping[str, object] | None = None,
        channel: Channel | None = None,
    ) -> Invocation:
        """Send INTERACTION_CREATE for the registered command ``name``, as ``user`` typed it.

        ``options`` maps option names to values (str, int, float, bool, or a world
        :class:`User` / :class:`Channel` for user and channel options; a dict for a
        subcommand). Returns the :class:`Invocation`, whose responses can be awaited.
        """
        cmd = self.commands.find(name, self.world.guild_id)
        if cmd is None:
            known = sorted(c["name"] for c in self.commands.all())
            raise LookupError(f"no command /{name} registered (registered: {known})")
        channel = channel or self.world.text_channel
        payload = interaction_payload(self.world, cmd, user, channel, options or {})
        inv = Invocation(payload, user, channel)
        self.invocations[inv.token] = inv
        self.record.add("interaction", id=inv.id, name=name, user_id=user.id)
        await self.gateway.dispatch(self.world.bot.id, "INTERACTION_CREATE", payload)
        return inv

    async def dispatch(self, user_id: int, event: str, payload: dict[str, Any]) -> None:
        """Send a dispatch to the user's gateway session(s); the same as ``world.dispatch``."""
        await self.gateway.dispatch(user_id, event, payload)

    async def set_voice_state(
        self, user: User, channel: Channel | None, *, self_mute: bool = False
    ) -> VoiceStateRec:
        """Move a (simulated) member into or out of a voice channel; the bot is told."""
        return await self.gateway.set_voice_state(
            user.id, None if channel is None else channel.id, self_mute=self_mute
        )

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close the bot's gateway connection with ``code``; its session stays resumable."""
        conn = self.gateway.connection_of(self.world.bot.id)
        if conn is not None:
            await self.gateway.close(conn, code, b"dropped by the simulator")

    async def request_reconnect(self) -> None:
        """Send op 7 Reconnect to the bot."""
        await self.gateway.request_reconnect(self.world.bot.id)
