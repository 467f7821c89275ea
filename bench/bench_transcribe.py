"""Transcription engines side by side on the same utterances: a generated ~1-minute
4-speaker meeting, cut by the live path's cutter, each utterance decoded once.

Prints, per engine (each in a fresh process): model load time (for a shipped model that
is not cached yet, this includes rebuilding it), wall time for all utterances,
real-time factor (wall time / seconds of speech), peak resident memory, and word error
rate against the script, per speaker and overall.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_transcribe.py [--model base] [--threads N]

Needs espeak-ng and notetaker-transcribe[models]. whisperx is run only where it is
installed (its column says "not installed" otherwise).
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from bench_live import START, _Replay, _wer
from live_meetings import SPEAKERS, generate, load


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def utterances(folder: Path, data: Path) -> list[object]:
    """The meeting's utterances, decoded: what the queue hands an engine."""
    from notetaker.live.cutter import Utterance, UtteranceCutter
    from notetaker.live.decode import decode_utterance
    from notetaker.transcript import UtteranceAudio

    cut: list[Utterance] = []
    replay = _Replay(load(folder).packets, realtime=False)
    cutter = UtteranceCutter(cut.append, started_at=START, clock=replay.clock)
    replay.run(cutter, cutter.tick, lambda: None)
    cutter.close()
    return [
        UtteranceAudio(u.user_id, u.start_s, decode_utterance(u.packets, u.start)[0], "en")
        for u in cut
    ]


def run_engine(engine: str, folder: Path, data: Path, model: str, threads: int) -> dict[str, str]:
    from notetaker_transcribe.options import EngineOptions

    opts = EngineOptions(model=model, data_dir=data, language="en", cpu_threads=threads)
    if engine == "faster-whisper":
        from notetaker_transcribe.fw_engine import FasterWhisperTranscriber as Engine
    else:
        from notetaker_transcribe.wx_engine import WhisperXTranscriber as Engine  # type: ignore[assignment]
    batch = utterances(folder, data)
    speech_s = sum(a.duration_s for a in batch)  # type: ignore[attr-defined]
    rss_before = peak_rss_mib()
    transcriber = Engine(opts)
    started = time.perf_counter()
    transcriber.load()
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    heard: dict[int, list[str]] = {}
    size = max(1, transcriber.batch_size)
    for i in range(0, len(batch), size):
        for result in transcriber.transcribe_utterances(batch[i : i + size]):  # type: ignore[arg-type]
            for seg in result.segments:
                heard.setdefault(seg.user_id, []).append(seg.text)
    wall_s = time.perf_counter() - started
    gen = load(folder)
    wer = _wer(gen.said, heard)
    out = {
        "utterances": str(len(batch)),
        "load s": f"{load_s:.2f}",
        "transcribe s": f"{wall_s:.2f}",
        "RTF (speech)": f"{wall_s / speech_s:.3f}",
        "peak RSS MiB": f"{peak_rss_mib():.0f}",
        "RSS at start MiB": f"{rss_before:.0f}",
        "WER all": f"{wer['all']:.1%}",
    }
    out.update({f"WER {name}": f"{wer[name]:.1%}" for name in SPEAKERS})
    return out


def available(engine: str) -> bool:
    module = "faster_whisper" if engine == "faster-whisper" else "whisperx"
    return importlib.util.find_spec(module) is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--engines", default="faster-whisper,whisperx")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        folder = Path(tmp) / "meeting"
        gen = generate(folder, args.minutes)
        print(f"meeting: {gen.duration_s:.1f} s, 4 speakers, {gen.speech_s:.1f} s of speech")
        print(f"model: {args.model}, threads {args.threads or os.cpu_count()}")
        columns: dict[str, dict[str, str]] = {}
        for engine in args.engines.split(","):
            if not available(engine):
                columns[engine] = {}
                continue
            # A fresh process per engine, so that peak memory is that engine's own.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                columns[engine] = pool.submit(
                    run_engine, engine, folder, Path(tmp) / "data", args.model, args.threads
                ).result()
        rows = list(dict.fromkeys(k for c in columns.values() for k in c))
        width = max((len(r) for r in rows), default=10)
        print(f"{'':<{width}}  " + "  ".join(f"{e:>16}" for e in columns))
        for row in rows:
            cells = [c.get(row, "not installed" if not c else "-") for c in columns.values()]
            print(f"{row:<{width}}  " + "  ".join(f"{v:>16}" for v in cells))
        if not rows:
            print("no engine installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
