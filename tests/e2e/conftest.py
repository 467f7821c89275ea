"""Fixtures for the end-to-end meeting: the demo's own meeting runner, with the real
meeting factory (recorder, index, transcriber, notes) behind the backend under test.

``NOTETAKER_TEST_TRANSCRIBER`` picks the engine (default ``faster-whisper``; the
whisperx nox session sets ``whisperx``) and ``NOTETAKER_TEST_MODEL`` the Whisper model
(default ``base``, the model the issue's error rate is measured with).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRANSCRIBER = os.environ.get("NOTETAKER_TEST_TRANSCRIBER", "faster-whisper")
MODEL = os.environ.get("NOTETAKER_TEST_MODEL", "base")

# Offline and self-contained before anything imports the hub client (it reads these once).
_CACHE = Path(tempfile.mkdtemp(prefix="notetaker-e2e-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", str(_CACHE / "hf"))
os.environ.setdefault("TORCH_HOME", str(_CACHE / "torch"))
os.environ.setdefault("MPLCONFIGDIR", str(_CACHE / "matplotlib"))


def _needs() -> str | None:
    """Why the end-to-end meeting cannot run here, or None."""
    for module, what in (
        ("notetaker_transcribe", "notetaker-transcribe[models]"),
        ("av", "discordsim[media] (PyAV)"),
        ("numpy", "discordsim[media] (numpy)"),
    ):
        if importlib.util.find_spec(module) is None:
            return f"needs {what}"
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        return "needs espeak-ng and ffmpeg"
    from notetaker_transcribe.models import SHIPPED, shipped_installed

    if not all(shipped_installed(m) for m in SHIPPED.values()):
        return "needs notetaker-transcribe[models] (the shipped Whisper models)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _needs()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def demo() -> ModuleType:
    """demo/notetaker_demo.py: the tests run the very meeting ``notetaker demo`` runs."""
    spec = importlib.util.spec_from_file_location(
        "notetaker_demo", ROOT / "demo" / "notetaker_demo.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def spoken(demo: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The demo's script, spoken by espeak-ng once per run."""
    return list(demo.prepare_speech(tmp_path_factory.mktemp("speech")))


@pytest.fixture
def meeting_settings(settings: Any) -> Any:
    """The contract suite's settings (this backend, a data dir in tmp) with the engine and
    model under test."""
    return settings.model_copy(update={"transcriber": TRANSCRIBER, "model": MODEL})
