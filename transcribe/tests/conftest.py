"""Offline and self-contained: no hub access, every cache in a temporary folder.

The environment is set at import, before any test module imports faster-whisper or
the hub client, which read it once.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from notetaker_transcribe.fw_engine import FasterWhisperTranscriber

_CACHE = Path(tempfile.mkdtemp(prefix="notetaker-transcribe-tests-"))
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_CACHE / "hf")
os.environ["XDG_CACHE_HOME"] = str(_CACHE / "xdg-cache")
os.environ["XDG_DATA_HOME"] = str(_CACHE / "xdg-data")
os.environ["MPLCONFIGDIR"] = str(_CACHE / "matplotlib")
os.environ["TORCH_HOME"] = str(_CACHE / "torch")


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir shared by the engine tests, so ``base`` is rebuilt once per run."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def fw_engines(shared_data_dir: Path) -> Iterator[dict[str, FasterWhisperTranscriber]]:
    """One faster-whisper engine per shipped model for the whole run, loaded on first
    use: loading is the slow part. No default language, so each test says its own."""
    from notetaker_transcribe.fw_engine import FasterWhisperTranscriber
    from notetaker_transcribe.options import EngineOptions

    engines = {
        name: FasterWhisperTranscriber(
            EngineOptions(model=name, data_dir=shared_data_dir, device="cpu", language=None)
        )
        for name in ("tiny.en", "base")
    }
    yield engines
    for engine in engines.values():
        engine.close()
