"""``notetaker doctor``'s live check on the installed backend and library version.

What the verdict must say follows from the library's version alone (shared/design/
libraries.md): a version before its library's first DAVE release is closed with 4017 on
today's Discord, and the doctor must name 4017/DAVE as the reason; the engine transport
must be reported as working on every version it attaches to.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from notetaker import doctor, libraries
from notetaker.cli import cli
from notetaker.config import Settings

BACKEND = os.environ.get("NOTETAKER_TEST_BACKEND") or ""
FACTS = libraries.BY_BACKEND[BACKEND] if BACKEND else None
LIBRARY = FACTS.distribution if FACTS else ""


def _has_dave() -> bool:
    assert FACTS is not None
    return FACTS.release(metadata.version(LIBRARY)).dave


def _settings(tmp_path: Path, transport: str) -> Settings:
    return Settings(backend=BACKEND, transport=transport, data_dir=tmp_path / "data")


def test_native_verdict_names_dave_exactly_when_the_library_lacks_it(tmp_path: Path) -> None:
    findings = doctor.live_report(_settings(tmp_path, "native"), checks=[doctor.TODAY])
    today, *_, engine = findings
    if today.ok is None and "not checked" in today.text:
        pytest.skip(f"another process holds port 443 on this machine: {today.text}")
    version = metadata.version(LIBRARY)
    if _has_dave():
        assert "has no DAVE" not in today.text
        # joins, or (DAVE dependency not installed) says which extra brings it
        assert today.ok is True or f"pip install '{LIBRARY}[voice]=={version}'" in today.text
    else:
        assert today.ok is False
        assert f"{LIBRARY} {version} has no DAVE: Discord closes it with 4017" in today.text
        assert "use transport=engine" in today.text
        assert FACTS is not None
        assert f"upgrade to {LIBRARY} >= {FACTS.first_dave}" in today.text
    # The advice to switch is backed by a run of the engine on the same library version.
    assert engine.ok is True and "with transport=engine it joins" in engine.text
    dave = "DAVE" if _has_dave() else "no DAVE"
    link = f"voice link: native transport ({LIBRARY} {version}'s own voice client): "
    assert (None, f"{link}cannot record, {dave}") in [(f.ok, f.text) for f in findings]


def test_engine_stack_is_reported_as_working(tmp_path: Path) -> None:
    findings = doctor.live_report(_settings(tmp_path, "engine"))
    assert findings[0].ok is True
    assert "joins voice on today's Discord" in findings[0].text
    failed = [f.text for f in findings if f.ok is False]
    assert not failed
    version = metadata.version(LIBRARY)
    link = f"voice link: engine transport (notetaker's voice engine through {LIBRARY} {version})"
    assert (None, f"{link}: records, DAVE") in [(f.ok, f.text) for f in findings]
    # every check of the doctor's suite reported
    reported = {f.text.split(":")[0] for f in findings[1:] if f.ok is not None}
    assert reported == set(doctor.DOCTOR_CHECKS) - {doctor.TODAY}


def test_cli_doctor_prints_the_live_verdict_and_never_the_token(tmp_path: Path) -> None:
    secret = "MTEx.fake-doctor-token.never-printed"
    env = {
        "NOTETAKER_BACKEND": BACKEND,
        "NOTETAKER_TRANSPORT": "native",
        "NOTETAKER_TOKEN": secret,
        "NOTETAKER_DATA_DIR": str(tmp_path / "data"),
    }
    result = CliRunner().invoke(cli, ["doctor", "--no-token-check"], env=env)
    out = result.output
    assert secret not in out
    assert "live check:" in out and "libopus loads" in out and "davey loads" in out
    assert ("has no DAVE" in out) is not _has_dave()
    # Verdict lines only: the engine's and the library's log lines went to the log file.
    verdicts = ("ok ", "FAIL ", "note ", "live check: ", "all checks passed", "log of the")
    others = [ln for ln in out.splitlines() if ln and not ln.startswith(verdicts)]
    assert others == [] or others == [f"{out.count('FAIL')} problem(s) found"], others
    log = tmp_path / "data" / "doctor.log"
    assert f"log of the checks: {log}" in out
    logged = log.read_text()
    assert " INFO    notetaker." in logged and secret not in logged
    # With -v the same lines reach the screen, redacted.
    verbose = CliRunner().invoke(cli, ["doctor", "--no-token-check", "-v"], env=env).output
    assert " INFO    notetaker." in verbose and secret not in verbose
    assert "log of the checks" not in verbose


async def test_token_check_against_the_simulator(tmp_path: Path) -> None:
    from discordsim.app import Simulator
    from discordsim.world import World

    async with Simulator(World.default(), lifetime=60) as sim:
        good = await doctor.token_report(sim.token, api_base=sim.api_base)
        bad = await doctor.token_report(sim.token + "x", api_base=sim.api_base)
    assert [f.ok for f in good] == [True, True]
    assert "logged in as" in good[0].text and "guild_voice_states" in good[1].text
    assert len(bad) == 1 and bad[0].ok is False and "401" in bad[0].text
    for finding in [*good, *bad]:
        assert sim.token not in finding.text
