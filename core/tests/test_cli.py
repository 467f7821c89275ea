"""The `notetaker` command, as a user runs it (click's runner, real settings and plugins)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from notetaker.cli import cli

SECRET = "MTA5ODc2NTQzMjEwOTg3NjU0.GaBcDe.abcdefghijklmnopqrstuvwxyz012345"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("NOTETAKER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def test_help_lists_the_working_subcommands() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    for name in (
        "plugins",
        "config",
        "doctor",
        "run",
        "meetings",
        "export",
        "delete",
        "transcribe",
        "search",
    ):
        assert name in out


def test_plugins_lists_core_renderers() -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert ["renderer", "markdown", "notes", "(notetaker)", ".md"] in rows


def test_config_shows_settings_and_policy_without_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTETAKER_TOKEN", SECRET)
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "set (hidden)" in result.output
    assert "4017" in result.output  # the policy table is printed


def test_unknown_backend_is_a_clear_error_listing_installed_ones(tmp_path: Path) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text('backend = "hikari"\n')
    result = CliRunner().invoke(cli, ["--config", str(cfg), "run"], env={"NOTETAKER_TOKEN": SECRET})
    assert result.exit_code == 2
    assert "unknown backend 'hikari'; installed backends:" in result.output
    assert SECRET not in result.output


def test_bad_config_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text('transport = "smoke-signals"\n')
    result = CliRunner().invoke(cli, ["--config", str(cfg), "config"])
    assert result.exit_code == 2
    assert (
        result.output.startswith("error: invalid configuration")
        and "Traceback" not in result.output
    )


def test_run_without_token_says_how_to_set_it() -> None:
    result = CliRunner().invoke(cli, ["run"])
    assert result.exit_code == 2 and "NOTETAKER_TOKEN" in result.output


def test_doctor_reports_each_check() -> None:
    result = CliRunner().invoke(cli, ["doctor"])
    out = result.output
    assert "libopus" in out and "davey" in out and "data dir" in out
    # No backend is installed in core's test environment: doctor must say so and fail.
    assert "backend 'discordpy' is not installed" in out
    assert result.exit_code == 1
