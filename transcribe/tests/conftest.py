"""Offline and self-contained: no hub access, every cache in a temporary folder.

The environment is set at import, before any test module imports faster-whisper or
the hub client, which read it once.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

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
