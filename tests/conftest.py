"""Fixtures for the suites that run in every backend's nox environment.

``NOTETAKER_TEST_BACKEND`` names the backend installed in the environment (set by the
``backend`` nox sessions); the suites are written once and run unchanged against each.
A test picks the simulator's scenario with ``@pytest.mark.parametrize("scenario", [...],
indirect=True)`` (default ``modern``) and its scripted speakers the same way.
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


#: Suites under tests/ that need no backend (they have a nox session of their own).
NO_BACKEND = ("llm", "web")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND is not None:
        return
    skip = pytest.mark.skip(
        reason="backend suites run in a backend's nox session (NOTETAKER_TEST_BACKEND unset)"
    )
    here = Path(__file__).parent
    for item in items:
        if Path(item.path).relative_to(here).parts[0] not in NO_BACKEND:
            item.add_marker(skip)


@dataclass
class Running:
    """A simulator (main + voice) with the backend's bot logged in to it."""

    sim: Any
    voice: Any
    backend: Any
    meetings: Any  #: the CaptureMeetings factory the bot records into
    organiser: Any  #: a member allowed to start notes, sitting in the voice channel
    guest: Any  #: a member without the permission
    outsider: Any  #: a member allowed to start notes, not in any voice channel
    speakers: list[Any]  #: scripted participants' users

    @property
    def bot(self) -> Any:
        return self.backend.bot

    def guild_state(self) -> Any:
        return self.bot.guilds.get(self.sim.world.guild_id)


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "modern"))


@pytest.fixture
def speakers(request: pytest.FixtureRequest, tmp_path: Path) -> list[Any]:
    """Scripted participants: by default bob and carol, two seconds of tone each."""
    from discordsim.voice.participants import ParticipantSpec
    from discordsim.voice.participants import write_tone as tone

    seconds = float(getattr(request, "param", 2.0))
    return [
        ParticipantSpec("bob", tone(tmp_path / "bob.wav", 330, seconds), speak_after=0.3),
        ParticipantSpec("carol", tone(tmp_path / "carol.wav", 550, seconds), speak_after=0.6),
    ]


@pytest.fixture
def meeting_kind(request: pytest.FixtureRequest) -> str:
    """``capture`` (a CaptureMeetings factory, no transcription) or ``recorded`` (the real
    recorder, index and transcriber the bot uses in production)."""
    return str(getattr(request, "param", "capture"))


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "engine"))


@pytest.fixture
def settings(tmp_path: Path, transport: str) -> Any:
    from notetaker.config import Settings

    return Settings(
        backend=BACKEND or "",
        transport=transport,
        data_dir=tmp_path / "data",
        recording_nickname_prefix="[REC] ",
        # The simulator sends its one guild right after READY: the library's 2 s wait for
        # more would be spent in every test's setup.
        guild_ready_timeout_s=0.05,
        policy={"base_delay": 0.05, "max_delay": 0.2, "reset_wait": 0.05, "move_grace": 0.5},
    )


@pytest.fixture
async def running(
    settings: Any, scenario: str, speakers: list[Any], meeting_kind: str
) -> AsyncIterator[Running]:
    from discordsim.app import Simulator
    from discordsim.tls import TestCA
    from discordsim.voice.server import VoiceServer
    from discordsim.world import VoiceStateRec, World
    from notetaker import plugins
    from notetaker.fakes import CaptureMeetings

    world = World.default()
    organiser = world.user("alice")
    organisers = world.add_role("organisers", MANAGE_GUILD)
    world.give_role(organiser, organisers)
    outsider = world.add_user("dana")
    world.give_role(outsider, organisers)
    world.voice_states[organiser.id] = VoiceStateRec(
        organiser.id, world.voice_channel.id, "alice-sess"
    )
    guest = world.add_user("guest")
    for spec in speakers:
        world.add_user(spec.name)
    helper = importlib.import_module(f"discordsim.testing.{BACKEND}")
    spec = plugins.load().backend(BACKEND or "")
    ca = TestCA()
    # The libraries' own voice clients (transport native) use aiohttp's default context.
    ca.trust_in_this_process()
    meetings = CaptureMeetings()
    async with (
        Simulator(world, lifetime=300) as sim,
        VoiceServer(sim.world, scenario, record=sim.record, tls=ca, max_lifetime_s=300) as voice,
    ):
        for participant in speakers:
            voice.add_participant(participant)
        backend = spec.factory(
            settings,
            meetings=meetings if meeting_kind == "capture" else None,
            voice_ssl=ca.client_context(),
        )
        async with helper.logged_in(sim, backend.client):
            try:
                yield Running(
                    sim,
                    voice,
                    backend,
                    meetings,
                    organiser,
                    guest,
                    outsider,
                    [world.user(s.name) for s in speakers],
                )
            finally:
                await backend.close()
