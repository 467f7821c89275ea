"""Point unmodified disnake at the simulator.

disnake builds every REST URL from the class attribute ``disnake.http.Route.BASE``
(webhooks and interaction callbacks included) and gets the gateway URL from
``GET /gateway/bot`` (adding ``?v=10&encoding=json&compress=zlib-stream``); resumes go to
READY's ``resume_gateway_url``, which the simulator points back at itself. So the API
base is all that changes. Run against disnake 2.12.2; 2.9.3's source has the same
attribute and request. The voice client is untouched: it connects to whatever endpoint
VOICE_SERVER_UPDATE names.

disnake's ``commands.InteractionBot`` (and ``Bot``) sync their application commands in a
task of their own that starts at login and may still be running when the client is
ready; :func:`logged_in` waits for it, so the commands are registered when the block
starts, as with the other libraries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from discordsim.testing import running

if TYPE_CHECKING:
    from discordsim.app import Simulator


@contextlib.contextmanager
def point_at(sim: Simulator) -> Iterator[None]:
    """Set ``disnake.http.Route.BASE`` to ``sim.api_base`` for the block; restored on exit.

    A process-wide class attribute: run one simulated client at a time.
    """
    from disnake.http import Route

    old = Route.BASE
    Route.BASE = sim.api_base
    try:
        yield
    finally:
        Route.BASE = old


async def commands_synced(client: Any, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Return once an ``InteractionBot``'s first command sync (started at login) is done;
    at once for a plain ``Client``. disnake offers no event for it: its sync task holds
    the bot's ``_sync_queued`` lock from login until the sync has finished."""
    queued = getattr(client, "_sync_queued", None)
    if queued is not None:
        async with asyncio.timeout(timeout), queued:
            pass


@contextlib.asynccontextmanager
async def logged_in(
    sim: Simulator, client: Any, *, ready_timeout: float = 20.0
) -> AsyncIterator[Any]:
    """Point disnake at ``sim``, start ``client`` with the simulator's token and wait until
    it is ready and its commands are synced; close it on exit."""
    with point_at(sim):
        async with running(client, sim.token, ready_timeout=ready_timeout):
            await commands_synced(client, ready_timeout)
            yield client
