"""The backend contract with transport ``native``: the library's own voice client.

Recorded honestly: where the library cannot do something, the test says so as an expected
failure (it cannot do DAVE), with the reason. No library's own voice client hands notetaker
audio (py-cord: noise under DAVE; discord.py: no built-in receive; nextcord, disnake:
none), so a native session refuses a sink and names transport=engine (asserted below).
"""

from __future__ import annotations

from typing import Any

import pytest

from notetaker.errors import VoiceError, VoiceStopped
from notetaker.libraries import installed_version
from notetaker.session import VoiceState

pytestmark = pytest.mark.parametrize("transport", ["native"], indirect=True)
WAIT = 30.0


def _dave_capable() -> tuple[bool, str]:
    """Whether the installed library can negotiate DAVE, and why not if it cannot."""
    if installed_version("discord.py"):
        return True, ""
    if installed_version("py-cord"):
        return bool(installed_version("davey")), "py-cord offers DAVE only with davey installed"
    if installed_version("nextcord"):
        return bool(installed_version("dave.py") or installed_version("dave-py")), (
            "nextcord offers DAVE only with dave.py (libdave bindings) installed"
        )
    if installed_version("disnake"):
        # disnake (2.12) refuses to build a voice client at all without dave.py.
        return bool(installed_version("dave.py") or installed_version("dave-py")), (
            "disnake offers DAVE only with dave.py (libdave bindings) installed"
        )
    return False, "no Discord library installed"


async def _connect(r: Any) -> Any:
    session = r.backend.open_session(r.sim.world.guild_id)
    await session.connect(r.sim.world.voice_channel.id)
    return session


@pytest.mark.parametrize("scenario", ["dave-required-4017"], indirect=True)
async def test_native_joins_todays_discord(running: Any) -> None:
    """Today's Discord requires DAVE: a library that offers it gets in, one that does not
    is closed with 4017 and the policy stops with the reason."""
    capable, why = _dave_capable()
    if not capable:
        with pytest.raises(VoiceStopped) as info:
            await _connect(running)
        assert info.value.code == 4017 and "DAVE" in info.value.reason
        pytest.xfail(f"cannot do DAVE: {why}; Discord closes it with 4017")
    session = await _connect(running)
    assert session.state is VoiceState.CONNECTED
    (identify,) = running.sim.record.of("voice.identify", user_id=running.sim.world.bot.id)
    assert identify["dave_max"] >= 1
    await session.disconnect(force=True)


async def test_native_refuses_a_sink_and_names_the_fix(running: Any) -> None:
    session = await _connect(running)
    assert session.state is VoiceState.CONNECTED
    with pytest.raises(VoiceError, match='transport = "engine"'):
        session.set_sink(running.meetings)
    await session.disconnect(force=True)
