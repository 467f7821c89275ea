"""Point unmodified py-cord at the simulator.

py-cord builds every REST URL from ``discord.http.Route``'s ``base`` property and gets
the gateway URL from ``GET /gateway`` (adding ``?encoding=json&v=10&compress=zlib-stream``),
so the API base is all that changes:

* 2.7+ (checked 2.8.1): ``base`` formats the class attribute ``Route.API_BASE_URL``;
  the helper sets that attribute.
* 2.5 / 2.6 (checked 2.5.0, 2.6.1): ``base`` returns a hard-coded string; the helper
  replaces the ``base`` property on the class with one that returns the simulator's base.

The voice client is untouched: it connects to whatever endpoint VOICE_SERVER_UPDATE names.
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
    """Make ``discord.http.Route`` build URLs under ``sim.api_base`` for the block.

    A process-wide class attribute: run one simulated client at a time.
    """
    from discord.http import Route

    if "API_BASE_URL" in vars(Route):
        old = vars(Route)["API_BASE_URL"]
        Route.API_BASE_URL = sim.base_url + "/api/v{API_VERSION}"
        try:
            yield
        finally:
            Route.API_BASE_URL = old
    else:
        old_prop = vars(Route)["base"]
        api_base = sim.api_base
        Route.base = property(lambda self: api_base)  # type: ignore[assignment,method-assign]
        try:
            yield
        finally:
            Route.base = old_prop  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def logged_in(
    sim: Simulator, client: Any, *, ready_timeout: float = 20.0
) -> AsyncIterator[Any]:
    """Point py-cord at ``sim``, start ``client`` with the simulator's token and wait until
    it is ready; close it on exit."""
    with point_at(sim):
        async with running(client, sim.token, ready_timeout=ready_timeout):
            yield client
