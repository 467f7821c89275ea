"""Runs in each backend's nox environment: the installed backend is found through its
entry point and `notetaker plugins` shows it with the wrapped library's version."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from notetaker import plugins
from notetaker.libraries import installed_discord_libraries

BACKEND = os.environ.get("NOTETAKER_TEST_BACKEND")
pytestmark = pytest.mark.skipif(
    BACKEND is None, reason="runs in a backend's nox session (NOTETAKER_TEST_BACKEND unset)"
)


def test_backend_is_registered_with_its_library_version() -> None:
    found = plugins.load()
    assert not found.failed, found.failed
    spec = found.backend(BACKEND or "")
    ((library, version),) = found.library_versions(spec).items()
    assert version is not None and version == installed_discord_libraries()[library]


def test_plugins_command_lists_backend_and_library_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "notetaker", "plugins"], capture_output=True, text=True, check=True
    ).stdout
    found = plugins.load()
    spec = found.backend(BACKEND or "")
    ((library, version),) = found.library_versions(spec).items()
    assert BACKEND in out and f"{library} {version}" in out


def test_only_one_discord_library_in_this_environment() -> None:
    assert len(installed_discord_libraries()) == 1
