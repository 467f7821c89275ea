from __future__ import annotations

from pathlib import Path

import pytest

from notetaker.config import load_settings
from notetaker.errors import ConfigError


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("NOTETAKER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def test_defaults_without_any_file() -> None:
    s = load_settings()
    assert (s.backend, s.transport, s.transcriber) == ("discordpy", "engine", "faster-whisper")
    assert s.data_dir == Path.cwd() / "xdg-data" / "notetaker"
    assert s.token is None


def test_toml_file_then_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text(
        'backend = "nextcord"\ntransport = "native"\nmodel = "tiny.en"\n'
        "allowed_role_ids = [42]\n[policy]\nmax_attempts = 3\n"
    )
    monkeypatch.setenv("NOTETAKER_TRANSPORT", "engine")
    monkeypatch.setenv("NOTETAKER_POLICY__BASE_DELAY", "0.5")
    s = load_settings(cfg)
    assert (s.backend, s.transport, s.model, s.allowed_role_ids) == (
        "nextcord",
        "engine",
        "tiny.en",
        [42],
    )
    assert s.policy["max_attempts"] == 3
    # From the environment a number arrives as text; the policy gets it as a number.
    from notetaker.policy import ReconnectPolicy

    assert ReconnectPolicy.from_overrides(s.policy).base_delay == 0.5


def test_notetaker_toml_in_cwd_is_found() -> None:
    Path("notetaker.toml").write_text('backend = "PyCord"\n')
    assert load_settings().backend == "pycord"


def test_invalid_values_are_spelled_out(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('transport = "carrier-pigeon"\nretention_days = 0\nbogus = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    msg = str(info.value)
    assert "transport" in msg and "retention_days" in msg and "bogus" in msg and str(cfg) in msg


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("backend = \n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(bad)


def test_token_is_hidden_everywhere_but_token_value(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "MTA5ODc2NTQzMjEwOTg3NjU0.GaBcDe.abcdefghijklmnopqrstuvwxyz012345"
    monkeypatch.setenv("NOTETAKER_TOKEN", secret)
    s = load_settings()
    assert s.token_value() == secret
    assert secret not in repr(s) and secret not in str(s.public_dict())
