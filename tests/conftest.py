"""Fixtures for the suites that run in every backend's nox environment.

``NOTETAKER_TEST_BACKEND`` names the backend installed in the environment (set by the
``backend`` nox sessions); the suites below are written once and run unchanged against
each of them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BACKEND = os.environ.get("NOTETAKER_TEST_BACKEND")
MANAGE_GUILD = 1 << 5

# discordsim.testing module per backend name.
_SIM_HELPER = {"discordpy": "discordpy", "pycord": "pycord", "nextcord": "nextcord"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND is not None:
        return
    skip = pytest.mark.skip(
        reason="backend suites run in a backend's nox session (NOTETAKER_TEST_BACKEND unset)"
    )
    for item in items:
        item.add_marker(skip)


@dataclass
class Running:
    """A simulator with the backend's bot logged in to it."""

    sim: Any
    backend: Any
    organiser: Any  #: a member allowed to start notes
    guest: Any  #: a member without the permission


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    from notetaker.config import Settings

    return Settings(
        backend=BACKEND or "",
        data_dir=tmp_path / "data",
        recording_nickname_prefix="[REC] ",
        policy={"base_delay": 0.05, "max_delay": 0.2, "reset_wait": 0.05, "move_grace": 0.5},
    )


@pytest.fixture
async def running(settings: Any) -> AsyncIterator[Running]:
    from discordsim.app import Simulator
    from discordsim.world import World
    from notetaker import plugins

    world = World.default()
    organiser = world.user("alice")
    role = world.add_role("organisers", MANAGE_GUILD)
    world.give_role(organiser, role)
    guest = world.add_user("guest")
    helper = importlib.import_module(f"discordsim.testing.{_SIM_HELPER[BACKEND or '']}")
    spec = plugins.load().backend(BACKEND or "")
    async with Simulator(world) as sim:
        backend = spec.factory(settings)
        async with helper.logged_in(sim, backend.client):
            yield Running(sim, backend, organiser, guest)
