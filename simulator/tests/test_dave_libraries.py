"""Each unmodified library's DAVE against the simulator's delivery service, in ``modern``.

This checks the simulator against clients written against real Discord: if the delivery
service got the MLS messages, their framing or the transition flow wrong, these libraries
would fail to join the group, to answer op 23, or to encrypt what the participants can
open. Runs in a library environment (.venv-discordpy, .venv-pycord, .venv-nextcord,
.venv-disnake).

What was found (versions as installed by the project's library environments):

* discord.py 2.7.1 (davey 0.1.7) offers ``max_dave_protocol_version`` 1, negotiates 1,
  joins the group, answers every transition and sends DAVE-encrypted Opus.
* py-cord 2.8.1 supports DAVE (through davey 0.1.7, like discord.py): same result.
* nextcord 3.2.0 supports DAVE through a different implementation, ``dave.py`` 0.1.2
  (bindings to Discord's libdave), and gets the same result; nextcord does not decrypt
  received audio (it only keeps its own send ratchet), so its state is read from its
  encryptor and MLS session.
* disnake 2.12.2 does DAVE through ``dave.py`` too (1.1, installed by ``disnake[voice]``;
  without it disnake builds no voice client at all); like nextcord it only encrypts,
  and its state is read the same way, from its ``DaveState``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from discordsim.app import Simulator
from discordsim.scenarios import SCENARIOS
from discordsim.testing import installed_library
from discordsim.voice import ParticipantSpec, VoiceServer
from discordsim.voice.dave_delivery import MlsDelivery
from discordsim.voice.participants import write_tone as tone

LIBRARY = installed_library()
MODULES = {
    "discord.py": "discordpy",
    "py-cord": "pycord",
    "nextcord": "nextcord",
    "disnake": "disnake",
}
#: The module each library installs (py-cord and discord.py both install ``discord``).
PACKAGES = {"nextcord": "nextcord", "disnake": "disnake"}
WAIT = 20.0
#: One 20 ms Opus frame of a quiet tone (any valid non-silence packet would do).
OPUS_FRAME = bytes.fromhex("fc") + bytes(range(1, 60))

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="no Discord library installed here")


def library_state(vc: Any) -> tuple[int, bool]:
    """(DAVE protocol version, ready to encrypt) as the library itself sees them."""
    if LIBRARY == "nextcord":
        e2ee = vc.e2ee_state
        assert e2ee is not None, "nextcord without dave.py"
        version = e2ee._session.get_protocol_version()
        return version, bool(e2ee._session.has_established_group() and e2ee.can_encrypt())
    if LIBRARY == "disnake":
        dave = vc.dave
        assert dave is not None, "disnake without dave.py"
        version = dave._session.get_protocol_version()
        return version, bool(dave._session.has_established_group() and dave.can_encrypt())
    conn = vc._connection
    session = conn.dave_session
    return conn.dave_protocol_version, bool(session is not None and session.ready)


async def until(sim: Simulator, check: Any) -> None:
    """Wait until ``check()`` holds, re-checking whenever the simulator records something
    (libraries expose no event for their DAVE state; it changes as messages arrive, and
    the participants' media keeps the record moving)."""
    if not check():
        await sim.record.wait_for(predicate=lambda _: bool(check()), timeout=WAIT)


@pytest.mark.parametrize("participants_commit", [True, False], ids=["sim-commits", "lib-commits"])
async def test_library_negotiates_dave_1_and_joins_the_group(
    tmp_path: Path, participants_commit: bool
) -> None:
    assert LIBRARY is not None
    helper = importlib.import_module(f"discordsim.testing.{MODULES[LIBRARY]}")
    lib: Any = importlib.import_module(PACKAGES.get(LIBRARY or "", "discord"))
    async with Simulator(lifetime=120) as s:
        scenario = SCENARIOS["modern"].with_(dave_participants_commit=participants_commit)
        voice = VoiceServer(s.world, scenario, record=s.record, max_lifetime_s=120)
        for name, hz in (("bob", 523.0), ("carol", 784.0)):
            voice.add_participant(
                ParticipantSpec(name, tone(tmp_path / f"{name}.wav", hz, 2.0), speak_after=0.3)
            )
        async with voice:
            voice.tls.trust_in_this_process()
            client = lib.Client(intents=lib.Intents.default())
            async with helper.logged_in(s, client):
                bot = s.world.bot.id
                channel = client.get_channel(s.world.voice_channel.id)
                vc = await channel.connect(timeout=20, reconnect=False)
                rec = s.record
                ident = await rec.wait_for("voice.identify", timeout=WAIT)
                # Version 1 on the simulator's side...
                assert ident["dave_max"] == 1 and ident["dave_version"] == 1
                # ...and the library's: it joins the group and can encrypt.
                await until(s, lambda: library_state(vc) == (1, True))
                assert library_state(vc) == (1, True)

                bob, carol = s.world.user("bob").id, s.world.user("carol").id
                await rec.wait_for("voice.participant_join", user_id=carol, timeout=WAIT)
                delivery = voice.dave
                assert isinstance(delivery, MlsDelivery)
                ds = delivery.calls[s.world.voice_channel.id].ds

                def everyone_in() -> bool:
                    return set(ds.members) == {bot, bob, carol} and ds.next_deadline() is None

                await until(s, everyone_in)
                # The library never sent anything the delivery service had to reject but
                # commits that lost a race: to another member's commit (stale_epoch), or to
                # a proposal appended meanwhile (proposals_mismatch; it then commits again).
                rejected = [e for e in rec.of("dave.rejected") if e["user_id"] == bot]
                assert {e["reason"] for e in rejected} <= {"stale_epoch", "proposals_mismatch"}
                # It answered every transition it was part of with op 23 in time.
                joined_at = next(e["epoch"] for e in rec.of("dave.epoch") if bot in e["members"])
                mine = [e for e in rec.of("dave.epoch") if e["epoch"] >= joined_at]
                assert mine
                for epoch in mine:
                    tid = epoch["transition_id"]
                    assert rec.first("dave.ready", user_id=bot, transition_id=tid) is not None
                    assert ds.log.transitions[tid].executed == "all_ready"
                assert rec.first("dave.invalid_commit_welcome") is None
                if not participants_commit:
                    # The library's own commits (and Welcomes) built the group, and the
                    # participants' davey accepted them.
                    assert {e["committer"] for e in rec.of("dave.epoch")} == {bot}
                    assert not any(
                        p.failures
                        for p in delivery.calls[s.world.voice_channel.id].participants.values()
                    )

                # What the library sends is DAVE, and a participant in its group opens it.
                session = next(x for x in voice.sessions.values() if x.user_id == bot)
                before = len(session.received)
                opened = delivery.inbound.get(bot, 0)
                mark = len(rec)
                for _ in range(5):
                    vc.send_audio_packet(OPUS_FRAME, encode=False)
                await rec.wait_for(
                    "voice.rtp_in",
                    lambda _: len(session.received) >= before + 5,
                    conn=session.conn_id,
                    after=mark,
                    timeout=WAIT,
                )
                assert [f for _, _, f in session.received[before:]] == [OPUS_FRAME] * 5
                assert delivery.inbound[bot] - opened == 5  # each one was a DAVE frame
                assert rec.first("dave.inbound_failed") is None
                await vc.disconnect()
                await rec.wait_for("voice.session_end", conn=ident["conn"], timeout=WAIT)
                # Leaving is a DAVE leave: the group shrinks to the participants.
                await rec.wait_for("dave.leave", user_id=bot, timeout=WAIT)
