"""Engine options, read from notetaker's settings without depending on their shape."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/notetaker`` (``~/.local/share/notetaker``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "notetaker"


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """What both engines need to know.

    ``model``: a name (``tiny.en``, ``base``, ``large-v3``...) or a CTranslate2 folder.
    ``device``: ``cpu``, ``cuda`` or ``auto`` (CUDA when CTranslate2 sees a GPU).
    ``compute_type``: a CTranslate2 type; ``auto`` is float16 on CUDA, int8 on CPU.
    ``language``: the default for utterances that name none; ``None``, ``""`` or
    ``"auto"`` detect it per utterance. English-only models always use ``en``.
    ``cpu_threads``: 0 uses every core this process may run on.
    ``batch_size`` and ``align`` are for whisperx only; ``align`` downloads wav2vec2.
    ``offline``: ``None`` follows ``HF_HUB_OFFLINE``.
    """

    model: str = "base"
    data_dir: Path = field(default_factory=default_data_dir)
    device: str = "auto"
    compute_type: str = "auto"
    language: str | None = None
    cpu_threads: int = 0
    beam_size: int = 5
    batch_size: int = 8
    align: bool = False
    offline: bool | None = None

    @property
    def threads(self) -> int:
        if self.cpu_threads > 0:
            return self.cpu_threads
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1

    def device_and_compute(self) -> tuple[str, str]:
        """The concrete device and compute type (resolves ``auto``)."""
        device = self.device
        if device == "auto":
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute = self.compute_type
        if compute == "auto":
            compute = "float16" if device == "cuda" else "int8"
        return device, compute

    @classmethod
    def from_settings(cls, settings: Any = None, **overrides: Any) -> EngineOptions:
        """Options from a settings object or mapping.

        Looks for a ``transcribe`` section first (attribute or key), then the settings
        themselves; recognises this class's field names, plus ``whisper_model`` and
        ``transcribe_model`` for ``model``. Unknown settings are ignored.
        """
        values: dict[str, Any] = {}
        for source in (settings, _get(settings, "transcribe")):
            if source is None:
                continue
            for f in fields(cls):
                value = _get(source, f.name)
                if value is not None:
                    values[f.name] = value
            for alias in ("whisper_model", "transcribe_model"):
                value = _get(source, alias)
                if value is not None:
                    values["model"] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"]).expanduser()
        if "model" in values:
            values["model"] = str(values["model"])
        return cls(**values)


#: Language settings that mean "detect it".
DETECT = frozenset({"", "auto", "detect"})


def normalise_language(value: str | None) -> str | None:
    """An ISO 639-1 code as Whisper spells it (``"de-DE"`` -> ``"de"``), or None to detect."""
    if value is None:
        return None
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return None if code in DETECT else code


def is_english_only(model: str) -> bool:
    """Whether a model name or folder is an English-only Whisper (``tiny.en``...)."""
    return Path(str(model).rstrip("/\\")).name.lower().endswith(".en")


def language_for(requested: str | None, default: str | None, *, english_only: bool) -> str | None:
    """The language to decode an utterance in: its own, else the configured default, else
    None (detect). An English-only model understands nothing else, so it is always ``en``."""
    if english_only:
        return "en"
    chosen = normalise_language(requested)
    return chosen if chosen is not None else normalise_language(default)


def _get(source: Any, name: str) -> Any:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)
