"""Each unmodified library's own voice client against the simulated voice server.

Runs in a library environment (.venv-discordpy, .venv-pycord, .venv-nextcord,
.venv-disnake); skipped where no Discord library is installed. The library trusts the
simulator's test CA the way a bot process would with ``SSL_CERT_FILE``; in-process,
:meth:`TestCA.trust_in_this_process` does the same for aiohttp's already-built default
context.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from discordsim.app import Simulator
from discordsim.testing import installed_library
from discordsim.voice import VoiceServer

LIBRARY = installed_library()
MODULES = {
    "discord.py": "discordpy",
    "py-cord": "pycord",
    "nextcord": "nextcord",
    "disnake": "disnake",
}
#: The module each library installs (py-cord and discord.py both install ``discord``).
PACKAGES = {"nextcord": "nextcord", "disnake": "disnake"}

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="no Discord library installed here")


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, VoiceServer]]:
    async with Simulator(lifetime=120) as s:
        voice = VoiceServer(s.world, "modern", record=s.record, max_lifetime_s=120)
        async with voice:
            voice.tls.trust_in_this_process()
            yield s, voice


def make_client() -> Any:
    lib: Any = importlib.import_module(PACKAGES.get(LIBRARY or "", "discord"))
    return lib, lib.Client(intents=lib.Intents.default())


async def test_library_voice_client_completes_the_handshake(
    sim: tuple[Simulator, VoiceServer],
) -> None:
    assert LIBRARY is not None
    helper = importlib.import_module(f"discordsim.testing.{MODULES[LIBRARY]}")
    s, _voice = sim
    lib, client = make_client()
    async with helper.logged_in(s, client):
        channel = client.get_channel(s.world.voice_channel.id)
        assert isinstance(channel, lib.VoiceChannel)
        vc = await channel.connect(timeout=20, reconnect=False)
        assert vc.is_connected()
        ident = await s.record.wait_for("voice.identify")
        # All of them offer DAVE and get it in modern (details: test_dave_libraries.py).
        assert ident["dave_max"] == 1 and ident["dave_version"] == 1
        select = await s.record.wait_for("voice.select")
        # Every library implements XChaCha and takes the first listed mode it supports.
        assert select["mode"] == "aead_xchacha20_poly1305_rtpsize"
        discovery = await s.record.wait_for("voice.discovery")
        assert discovery["conn"] == ident["conn"]
        await vc.disconnect()
        await s.record.wait_for("voice.session_end", conn=ident["conn"])


async def test_library_follows_a_failover_to_the_new_endpoint() -> None:
    assert LIBRARY is not None
    helper = importlib.import_module(f"discordsim.testing.{MODULES[LIBRARY]}")
    async with Simulator(lifetime=120) as s:
        voice = VoiceServer(s.world, "failover", record=s.record, max_lifetime_s=120)
        async with voice:
            voice.tls.trust_in_this_process()
            _lib, client = make_client()
            async with helper.logged_in(s, client):
                channel = client.get_channel(s.world.voice_channel.id)
                vc = await channel.connect(timeout=20, reconnect=True)
                failover = await s.record.wait_for("voice.failover", timeout=20)
                assert failover["dispatched"] is True
                moved = await s.record.wait_for("voice.connect", listener="failover", timeout=20)
                ident = await s.record.wait_for("voice.identify", conn=moved["conn"], timeout=20)
                await s.record.wait_for("voice.select", conn=ident["conn"], timeout=20)
                # A fresh session (Identify, not Resume) with the new token. discord.py and
                # py-cord move to the new endpoint directly; nextcord 3.2 and disnake 2.12
                # close 4000, leave and rejoin (op 4), and the rejoin's grant names the new
                # endpoint.
                assert s.record.first("voice.resumed") is None
                await vc.disconnect()
