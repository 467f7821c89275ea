"""Point unmodified discord.py (2.x) at the simulator.

discord.py builds every REST URL from the class attribute ``discord.http.Route.BASE``
(webhooks and interaction callbacks included), and a non-sharded ``Client`` opens the
gateway at ``DiscordWebSocket.DEFAULT_GATEWAY`` without asking ``GET /gateway/bot``;
resumes go to READY's ``resume_gateway_url``, which the simulator points back at itself.
So those two class attributes are all that changes. The voice client is untouched: it
connects to whatever endpoint VOICE_SERVER_UPDATE names.

Checked against discord.py 2.7.1 and 2.3.2 (same two attributes).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from discordsim.testing import running

if TYPE_CHECKING:
    from discordsim.app import Simulator


@contextlib.contextmanager
def point_at(sim: Simulator) -> Iterator[None]:
    """Set ``Route.BASE`` to ``sim.api_base`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` to
    ``sim.gateway_url`` for the duration of the block; the old values come back on exit.

    These are process-wide class attributes: run one simulated client at a time.
    """
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = sim.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sim.gateway_url + "/")
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


@contextlib.asynccontextmanager
async def logged_in(
    sim: Simulator, client: Any, *, ready_timeout: float = 20.0
) -> AsyncIterator[Any]:
    """Point discord.py at ``sim``, start ``client`` with the simulator's token and wait until
    it is ready (READY and GUILD_CREATE processed); close it on exit."""
    with point_at(sim):
        async with running(client, sim.token, ready_timeout=ready_timeout):
            yield client
