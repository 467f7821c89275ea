"""Transcription benchmark: a ~60 s two-speaker espeak-ng meeting, one track per speaker.

Prints, per engine (each in a fresh process): model load time (for a shipped model
that is not cached yet, this includes rebuilding it), wall time for the meeting,
real-time factor (wall time / meeting length, and / total audio across tracks), peak
resident memory, and word error rate against the script, per speaker and overall.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_transcribe.py [--model base] [--threads N]

Needs espeak-ng, ffmpeg and notetaker-transcribe[models]. whisperx is run only where it
is installed (its column says "not installed" otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
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

from notetaker.transcript import Segment, TrackInput, Transcriber, transcribe_tracks
from notetaker_transcribe.options import EngineOptions
from notetaker_transcribe.speech import MeetingLine, make_meeting, wer

SCRIPT = (
    MeetingLine("alice", "Good morning everyone. Let us start with the project update."),
    MeetingLine("bob", "Thanks Alice. The new release is ready for testing this week."),
    MeetingLine("alice", "That is great news. Did the team finish the documentation as well?"),
    MeetingLine("bob", "Most of it. We still need to write the section about installation."),
    MeetingLine("alice", "Please send the draft to me before the end of the day."),
    MeetingLine("bob", "I will do that. Should we also invite the design team to the review?"),
    MeetingLine("alice", "Yes, and book the large room for the whole afternoon on Friday."),
    MeetingLine("bob", "The budget looks fine, but the server costs went up last month."),
    MeetingLine("alice", "Let us discuss the server costs in the next meeting then."),
    MeetingLine("bob", "Agreed. I will prepare a short summary of the options."),
    MeetingLine("alice", "Good. Could you also share the test results with the design team?"),
    MeetingLine("bob", "Sure, I will send them together with the calendar invitation."),
    MeetingLine("alice", "Thank you everyone. That is all for today. See you on Friday."),
)
VOICES = {"alice": "en-us", "bob": "en-gb-x-rp"}
USER_IDS = {"alice": 1001, "bob": 1002}


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(engine: str, opts: EngineOptions) -> Transcriber:
    if engine == "faster-whisper":
        from notetaker_transcribe.fw_engine import FasterWhisperTranscriber

        return FasterWhisperTranscriber(opts)
    from notetaker_transcribe.wx_engine import WhisperXTranscriber

    return WhisperXTranscriber(opts)


def available(engine: str) -> bool:
    module = "faster_whisper" if engine == "faster-whisper" else "whisperx"
    return importlib.util.find_spec(module) is not None


def run_engine(engine: str, opts: EngineOptions, tracks: list[TrackInput]) -> dict[str, str]:
    rss_before = peak_rss_mib()
    transcriber = build(engine, opts)
    started = time.perf_counter()
    transcriber.load()  # type: ignore[attr-defined]
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    segments: list[Segment] = asyncio.run(transcribe_tracks(transcriber, tracks))
    wall_s = time.perf_counter() - started
    return {
        "load s": f"{load_s:.2f}",
        "transcribe s": f"{wall_s:.2f}",
        "_wall": str(wall_s),
        "peak RSS MiB": f"{peak_rss_mib():.0f}",
        "RSS at start MiB": f"{rss_before:.0f}",
        "_segments": "\n".join(f"{s.user_id}\t{s.text}" for s in segments),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--engines", default="faster-whisper,whisperx")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        folder = Path(tmp)
        data_dir = args.data_dir or folder / "data"
        meeting = make_meeting(folder, SCRIPT, VOICES)
        tracks = [
            TrackInput(USER_IDS[who], who, meeting.tracks[who].path, meeting.offsets[who])
            for who in meeting.tracks
        ]
        audio_s = sum(t.duration for t in meeting.tracks.values())
        opts = EngineOptions(
            model=args.model, data_dir=data_dir, language="en", cpu_threads=args.threads
        )
        print(f"meeting: {meeting.duration:.1f} s, {len(tracks)} tracks, {audio_s:.1f} s of audio")
        print(f"model: {args.model}, {opts.device_and_compute()}, threads {opts.threads}")

        columns: dict[str, dict[str, str]] = {}
        for engine in args.engines.split(","):
            if not available(engine):
                columns[engine] = {}
                continue
            # A fresh process per engine, so that peak memory is that engine's own.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                result = pool.submit(run_engine, engine, opts, tracks).result()
            wall = float(result.pop("_wall"))
            by_user: dict[int, list[str]] = {}
            for line in result.pop("_segments").splitlines():
                uid, text = line.split("\t", 1)
                by_user.setdefault(int(uid), []).append(text)
            result["RTF (meeting)"] = f"{wall / meeting.duration:.3f}"
            result["RTF (audio)"] = f"{wall / audio_s:.3f}"
            for who, uid in USER_IDS.items():
                heard = " ".join(by_user.get(uid, []))
                result[f"WER {who}"] = f"{wer(meeting.said_by(who), heard):.1%}"
            everything = " ".join(" ".join(v) for v in by_user.values())
            script = " ".join(meeting.said_by(w) for w in USER_IDS)
            result["WER all"] = f"{wer(script, everything):.1%}"
            columns[engine] = result

        rows = sorted({k for c in columns.values() for k in c}, key=_row_order)
        width = max(len(r) for r in rows) if rows else 10
        print(f"{'':<{width}}  " + "  ".join(f"{e:>16}" for e in columns))
        for row in rows:
            cells = [c.get(row, "not installed" if not c else "-") for c in columns.values()]
            print(f"{row:<{width}}  " + "  ".join(f"{v:>16}" for v in cells))
        if not rows:
            print("no engine installed")
    return 0


def _row_order(name: str) -> tuple[int, str]:
    order = ["load s", "transcribe s", "RTF (meeting)", "RTF (audio)", "RSS at start MiB",
             "peak RSS MiB"]  # fmt: skip
    return (order.index(name), name) if name in order else (len(order), name)


if __name__ == "__main__":
    sys.exit(main())
