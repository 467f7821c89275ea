"""Point unmodified nextcord at the simulator.

nextcord builds every REST URL from the class attribute ``nextcord.http.Route.BASE`` and
gets the gateway URL from ``GET /gateway`` (adding ``?encoding=json&v=10&compress=zlib-stream``),
so the API base is all that changes. Checked against nextcord 3.2.0 and 2.6.0 (same
attribute). The voice client is untouched: it connects to whatever endpoint
VOICE_SERVER_UPDATE names.
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
    """Set ``nextcord.http.Route.BASE`` to ``sim.api_base`` for the block; restored on exit.

    A process-wide class attribute: run one simulated client at a time.
    """
    from nextcord.http import Route

    old = Route.BASE
    Route.BASE = sim.api_base
    try:
        yield
    finally:
        Route.BASE = old


@contextlib.asynccontextmanager
async def logged_in(
    sim: Simulator, client: Any, *, ready_timeout: float = 20.0
) -> AsyncIterator[Any]:
    """Point nextcord at ``sim``, start ``client`` with the simulator's token and wait until
    it is ready; close it on exit."""
    with point_at(sim):
        async with running(client, sim.token, ready_timeout=ready_timeout):
            yield client
