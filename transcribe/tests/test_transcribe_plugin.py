"""The plugin: registration through the entry point, cheap import, settings."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from notetaker import plugins
from notetaker.errors import TranscriptionError
from notetaker.transcript import Transcriber, UtteranceAudio
from notetaker_transcribe.fw_engine import FasterWhisperTranscriber
from notetaker_transcribe.models import SHIPPED, shipped_installed
from notetaker_transcribe.options import (
    EngineOptions,
    is_english_only,
    language_for,
    normalise_language,
)
from notetaker_transcribe.wx_engine import WhisperXTranscriber


def test_both_engines_register_through_the_entry_point() -> None:
    """The notetaker_register_transcribers hook, implemented by notetaker_transcribe.plugin."""
    loaded = plugins.load()
    assert {"faster-whisper", "whisperx"} <= set(loaded.transcribers.names())
    assert "notetaker-transcribe" in loaded.transcribers.owner("faster-whisper")
    ours = [p for p in loaded.loaded if p.distribution == "notetaker-transcribe"]
    assert [(p.name, p.error) for p in ours] == [("transcribe", None)]
    versions = loaded.library_versions(loaded.transcribers.get("faster-whisper"))  # type: ignore[arg-type]
    assert versions["faster-whisper"] == "1.2.1"


def test_loading_plugins_imports_no_engine() -> None:
    code = (
        "import sys\n"
        "from notetaker import plugins\n"
        "p = plugins.load()\n"
        "assert 'faster-whisper' in p.transcribers.names()\n"
        "heavy = {'faster_whisper', 'ctranslate2', 'whisperx', 'torch', 'onnxruntime', 'av'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


def test_factories_build_transcribers_from_settings(tmp_path: Path) -> None:
    loaded = plugins.load()
    settings = SimpleNamespace(
        transcribe={"model": "tiny.en", "language": "en", "beam_size": 2},
        data_dir=str(tmp_path),
        unrelated="ignored",
    )
    fw = loaded.transcribers.get("faster-whisper")
    wx = loaded.transcribers.get("whisperx")
    assert fw is not None and wx is not None
    made = fw.factory(settings)
    assert isinstance(made, FasterWhisperTranscriber) and isinstance(made, Transcriber)
    assert made.options.model == "tiny.en"
    assert made.options.language == "en"
    assert made.options.beam_size == 2
    assert made.options.data_dir == tmp_path
    assert isinstance(wx.factory(settings), WhisperXTranscriber)
    assert fw.factory(None).options == EngineOptions()


def test_options_from_settings_aliases_and_overrides() -> None:
    opts = EngineOptions.from_settings({"whisper_model": "large-v3"}, device="cuda")
    assert (opts.model, opts.device) == ("large-v3", "cuda")
    assert EngineOptions(device="cpu").device_and_compute() == ("cpu", "int8")
    assert EngineOptions(device="cuda").device_and_compute() == ("cuda", "float16")
    assert EngineOptions(device="cpu", compute_type="float32").device_and_compute() == (
        "cpu",
        "float32",
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [(None, None), ("", None), ("auto", None), (" Auto ", None), ("detect", None),
     ("de", "de"), ("DE", "de"), ("de-DE", "de"), ("pt_BR", "pt"), ("en", "en")],
)  # fmt: skip
def test_language_spellings(value: str | None, code: str | None) -> None:
    assert normalise_language(value) == code


def test_language_for_an_utterance() -> None:
    # The utterance's own language first, then the configured default, else detect.
    assert language_for("de", "fr", english_only=False) == "de"
    assert language_for(None, "fr", english_only=False) == "fr"
    assert language_for("auto", "fr", english_only=False) == "fr"
    assert language_for(None, "auto", english_only=False) is None
    assert language_for(None, None, english_only=False) is None
    # An English-only model understands nothing else.
    assert language_for("de", "fr", english_only=True) == "en"
    assert language_for(None, None, english_only=True) == "en"


def test_english_only_models_are_told_by_name() -> None:
    assert is_english_only("tiny.en") and is_english_only("/models/faster-whisper-base.en/")
    assert not is_english_only("base") and not is_english_only("large-v3")
    assert not is_english_only("Systran/faster-whisper-base")


def test_batch_size_is_one_on_cpu_and_the_option_on_cuda(tmp_path: Path) -> None:
    def wx(device: str) -> int:
        return WhisperXTranscriber(EngineOptions(device=device, batch_size=6)).batch_size

    assert (wx("cpu"), wx("cuda")) == (1, 6)
    assert FasterWhisperTranscriber(EngineOptions(device="cuda")).batch_size == 1


@pytest.mark.skipif(
    importlib.util.find_spec("whisperx") is not None, reason="whisperx is installed"
)
@pytest.mark.skipif(not shipped_installed(SHIPPED["tiny.en"]), reason="needs the models extra")
def test_whisperx_without_whisperx_says_how_to_install_it(tmp_path: Path) -> None:
    engine = WhisperXTranscriber(EngineOptions(model="tiny.en", data_dir=tmp_path))
    with pytest.raises(TranscriptionError, match=r"notetaker-transcribe\[whisperx\]"):
        engine.transcribe_utterances([UtteranceAudio(1, 0.0, b"\0\0" * 160, "en")])
