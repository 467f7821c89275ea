"""Live vs post-hoc transcription, side by side, on generated 4-speaker meetings.

For each meeting length (default 5, 20 and 60 minutes) and each path, in a fresh process:

* **post-hoc** (the path before live transcription, kept here as the baseline): the
  packets are recorded into Ogg tracks as the bot records them; at /stopnotes every
  speaker's track is decoded whole and transcribed with faster-whisper and its VAD, then
  the notes are built.
* **live**: the packets are replayed into the live pipeline (recorder + utterance cutter +
  transcription queue + the same engine, the classes the bot runs) faster than real time,
  with backpressure: the replay waits whenever the queue holds more than
  ``--backlog-s`` of speech, so the tail at /stopnotes is what a live meeting would see.
  /stopnotes then ends the last utterances, drains the queue and builds the notes.

Printed per column: seconds from /stopnotes to notes, peak RSS, WER against the script,
and for live the capacity (seconds of speech transcribed per second of the worker's time:
how many people talking at once the machine keeps up with). Then a real-time replay of the
shortest meeting gives the caption latency (end of an utterance to its caption posted,
paced as the bot paces captions). Figures only, no pass/fail.

    HF_HUB_OFFLINE=1 python bench/bench_live.py [--minutes 5,20,60] [--model base]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from live_meetings import SPEAKERS, USER_IDS, generate, load, packets

START = 10_000.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _wer(said: dict[str, str], heard: dict[int, list[str]]) -> dict[str, float]:
    from notetaker_transcribe.speech import wer

    out = {name: wer(said[name], " ".join(heard.get(USER_IDS[name], []))) for name in SPEAKERS}
    out["all"] = wer(
        " ".join(said[n] for n in SPEAKERS),
        " ".join(" ".join(heard.get(USER_IDS[n], [])) for n in SPEAKERS),
    )
    return out


class _Replay:
    """Feeds a meeting's packets to ``sink`` as the receive path would, with the cutter's
    and the recorder's ticks, on a clock that is either real or runs as fast as the
    backpressure allows."""

    def __init__(self, path: Path, realtime: bool) -> None:
        self.path = path
        self.realtime = realtime
        self.now = START
        self.wall0 = time.monotonic()

    def clock(self) -> float:
        return self.now

    def run(self, sink: Any, tick: Any, hold: Any) -> None:
        from notetaker.sink import AudioFrame

        seq = dict.fromkeys(SPEAKERS, 0)
        next_tick = 0.1
        for at, who, opus in packets(self.path):
            while at >= next_tick:
                self._advance(next_tick)
                tick()
                if round(next_tick * 10) % 10 == 0:
                    hold()
                next_tick += 0.1
            self._advance(at)
            seq[who] += 1
            uid = USER_IDS[who]
            rtp = (uid * 7919 + round(at * 48_000)) & 0xFFFF_FFFF
            sink.write(AudioFrame(uid, uid, seq[who] & 0xFFFF, rtp, START + at, opus))
        self._advance(next_tick + 1.0)  # the last speaker's pause, before /stopnotes
        tick()

    def _advance(self, at: float) -> None:
        self.now = START + at
        if self.realtime:
            delay = self.wall0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def _settings(data_dir: Path, model: str) -> Any:
    from notetaker.config import Settings

    return Settings(data_dir=data_dir, model=model, transcriber="faster-whisper", language="en")


def _engine(model: str, data_dir: Path, threads: int) -> Any:
    from notetaker_transcribe.fw_engine import FasterWhisperTranscriber
    from notetaker_transcribe.options import EngineOptions

    return FasterWhisperTranscriber(
        EngineOptions(model=model, data_dir=data_dir, language="en", cpu_threads=threads)
    )


def _meeting(data_dir: Path) -> tuple[Any, int]:
    from notetaker.recorder.index import MeetingIndex

    index = MeetingIndex.open(data_dir)
    mid = index.create_meeting(guild_id=1, channel_id=2, started_by=3, started_at=time.time())
    for name, uid in USER_IDS.items():
        index.add_speaker(mid, uid, name)
    return index, mid


def run_posthoc(folder: Path, data_dir: Path, model: str, threads: int) -> dict[str, Any]:
    """Record the meeting, then transcribe every track whole (the old path)."""
    from faster_whisper import decode_audio

    from notetaker.meeting import notes_for
    from notetaker.recorder.paths import DataLayout
    from notetaker.recorder.recorder import Recorder
    from notetaker.transcript import Segment

    gen = load(folder)
    index, mid = _meeting(data_dir)
    replay = _Replay(gen.packets, realtime=False)
    recorder = Recorder(
        DataLayout(data_dir), mid, index=index, started_at=START, clock=replay.clock
    )
    replay.run(recorder, lambda: recorder.tick(), lambda: None)
    engine = _engine(model, data_dir, threads)
    whisper = engine.load()
    rss_loaded = peak_rss_mib()
    stopped = time.perf_counter()
    recorder.close()
    heard: dict[int, list[str]] = {}
    segments = []
    for uid in USER_IDS.values():
        path = recorder.track_path(uid)
        audio = decode_audio(str(path), sampling_rate=16_000)
        raw, _ = whisper.transcribe(
            audio, language="en", beam_size=5, vad_filter=True, word_timestamps=True
        )
        for seg in raw:
            if seg.text.strip():
                segments.append(Segment(uid, seg.start, seg.end, seg.text.strip()))
                heard.setdefault(uid, []).append(seg.text)
    index.add_segments(mid, 1, segments)
    asyncio.run(notes_for(_settings(data_dir, model), index, mid))
    notes_s = time.perf_counter() - stopped
    return {
        "notes_s": notes_s,
        "rss": peak_rss_mib(),
        "rss_loaded": rss_loaded,
        "wer": _wer(gen.said, heard),
    }


def run_live(
    folder: Path, data_dir: Path, model: str, threads: int, backlog_s: float, realtime: bool
) -> dict[str, Any]:
    """Replay the meeting into the live pipeline, then /stopnotes."""
    from notetaker.live.captions import CaptionLine, CaptionPacing, CaptionPoster
    from notetaker.live.cutter import UtteranceCutter
    from notetaker.live.language import SpeakerLanguages
    from notetaker.live.meeting_transcript import LiveTranscript, TrackPackets
    from notetaker.meeting import cutter_config, make_queue, notes_for
    from notetaker.recorder.paths import DataLayout
    from notetaker.recorder.recorder import Recorder
    from notetaker.sink import FanOut

    gen = load(folder)
    settings = _settings(data_dir, model)
    index, mid = _meeting(data_dir)
    replay = _Replay(gen.packets, realtime=realtime)
    recorder = Recorder(
        DataLayout(data_dir), mid, index=index, started_at=START, clock=replay.clock
    )
    engine = _engine(model, data_dir, threads)
    engine.load()
    rss_loaded = peak_rss_mib()
    queue = make_queue(settings, engine)
    heard: dict[int, list[str]] = {}
    done = threading.Condition()
    loop = asyncio.new_event_loop()
    captions_out = _Sink()
    poster = CaptionPoster(captions_out, 1, CaptionPacing())  # type: ignore[arg-type]
    poster_thread = threading.Thread(target=lambda: loop.run_until_complete(poster.run()))
    if realtime:
        poster_thread.start()

    def on_segments(utt: Any, segs: Sequence[Any]) -> None:
        for s in segs:
            heard.setdefault(s.user_id, []).append(s.text)
        if realtime:
            # The utterance ended at this instant of the real (monotonic) clock.
            ended = replay.wall0 + utt.end_s
            lines = [CaptionLine(s.start, s.user_id, "x", s.text, ended) for s in segs]
            loop.call_soon_threadsafe(poster.add, lines)
        with done:
            done.notify_all()

    transcript = LiveTranscript(
        index,
        mid,
        1,
        languages=SpeakerLanguages("en"),
        tracks=TrackPackets(recorder.track_path, recorder.flush_track),
        listener=on_segments,
    )
    queue.open_meeting(mid, transcript)
    cutter = UtteranceCutter(
        lambda u: queue.submit(mid, u),
        started_at=START,
        config=cutter_config(settings),
        recorder_config=recorder.config,
        clock=replay.clock,
    )
    ticks = [0]

    def tick() -> None:
        cutter.tick()
        ticks[0] += 1
        if ticks[0] % 10 == 0:
            recorder.tick()

    def hold() -> None:
        if realtime:
            return
        with done:
            done.wait_for(lambda: queue.backlog(mid).speech_s <= backlog_s, timeout=600)

    replay.run(FanOut(recorder, cutter), tick, hold)
    stopped = time.perf_counter()
    tail = queue.backlog(mid).speech_s + cutter.open_speech_s()
    cutter.close()
    recorder.close()
    asyncio.run(queue.drain(mid))
    asyncio.run(notes_for(settings, index, mid))
    notes_s = time.perf_counter() - stopped
    stats = queue.stats()
    out: dict[str, Any] = {
        "notes_s": notes_s,
        "tail_s": tail,
        "rss": peak_rss_mib(),
        "rss_loaded": rss_loaded,
        "wer": _wer(gen.said, heard),
        "capacity": stats["speech_done_s"] / max(stats["busy_s"], 1e-9),
        "utterances": stats["done"],
        "spilled": stats["spilled"],
        "queue_peak_kib": stats["peak_ram_bytes"] / 1024,
    }
    if realtime:
        loop.call_soon_threadsafe(poster.close)
        poster_thread.join(30)
        lat = sorted(poster.latencies)
        out["caption_p50"] = statistics.median(lat) if lat else float("nan")
        out["caption_p95"] = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan")
        out["captions"] = len(lat)
        out["caption_posts"] = captions_out.n
    queue.close()
    return out


class _Sink:
    """Where the benchmark's captions go: nowhere, but paced and timed like Discord's."""

    def __init__(self) -> None:
        self.n = 0

    async def send_message(self, channel_id: int, text: str, files: Any = ()) -> int:
        self.n += 1
        return self.n

    async def edit_message(self, channel_id: int, message_id: int, text: str) -> None:
        return None


def _child(fn: Any, *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result: dict[str, Any] = pool.submit(fn, *args).result()
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="5,20,60")
    parser.add_argument("--model", default="base")
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--backlog-s", type=float, default=5.0)
    parser.add_argument("--keep", type=Path, default=None, help="keep generated meetings here")
    parser.add_argument("--paths", default="post-hoc,live", help="which paths to run")
    parser.add_argument("--no-realtime", action="store_true", help="skip the caption latency run")
    args = parser.parse_args()
    lengths = [float(m) for m in args.minutes.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        root = args.keep or Path(tmp)
        models = Path(tmp) / "models"  # the shipped model is rebuilt here once
        columns: dict[str, dict[str, str]] = {}
        realtime: dict[str, Any] = {}
        for minutes in lengths:
            folder = root / f"meeting-{minutes:g}"
            gen = load(folder) if (folder / "script.json").exists() else generate(folder, minutes)
            print(
                f"{minutes:g} min meeting: {gen.duration_s / 60:.1f} min, {gen.lines} turns, "
                f"{gen.speech_s / 60:.1f} min of speech, 4 speakers",
                flush=True,
            )
            for path in args.paths.split(","):
                data = Path(tmp) / f"data-{minutes:g}-{path}"
                data.mkdir()
                (data / "models").symlink_to(models, target_is_directory=True)
                models.mkdir(exist_ok=True)
                if path == "post-hoc":
                    r = _child(run_posthoc, folder, data, args.model, args.threads)
                else:
                    r = _child(
                        run_live, folder, data, args.model, args.threads, args.backlog_s, False
                    )
                col = columns[f"{minutes:g} min {path}"] = {
                    "/stopnotes -> notes s": f"{r['notes_s']:.1f}",
                    "peak RSS MiB": f"{r['rss']:.0f}",
                    "RSS with model MiB": f"{r['rss_loaded']:.0f}",
                    "WER all": f"{r['wer']['all']:.1%}",
                }
                for name in SPEAKERS:
                    col[f"WER {name}"] = f"{r['wer'][name]:.1%}"
                if path == "live":
                    col["speech at /stopnotes s"] = f"{r['tail_s']:.1f}"
                    col["capacity (speakers at once)"] = f"{r['capacity']:.1f}"
                    col["utterances"] = str(r["utterances"])
                    col["spilled to tracks"] = str(r["spilled"])
                    col["queue peak KiB"] = f"{r['queue_peak_kib']:.0f}"
                print(f"  {path}: {col}", flush=True)
        if args.no_realtime:
            _table(columns)
            return 0
        shortest = root / f"meeting-{min(lengths):g}"
        data = Path(tmp) / "data-realtime"
        data.mkdir()
        (data / "models").symlink_to(models, target_is_directory=True)
        print(f"real-time replay of the {min(lengths):g} min meeting for caption latency…")
        realtime = _child(run_live, shortest, data, args.model, args.threads, 0.0, True)

    _table(columns)
    print(
        f"caption latency (real-time {min(lengths):g} min meeting, end of utterance -> caption "
        f"posted, {realtime['captions']} captions in {realtime['caption_posts']} posts): "
        f"p50 {realtime['caption_p50']:.2f} s, p95 {realtime['caption_p95']:.2f} s; "
        f"/stopnotes -> notes {realtime['notes_s']:.1f} s"
    )
    return 0


def _table(columns: dict[str, dict[str, str]]) -> None:
    rows = sorted({k for c in columns.values() for k in c}, key=_order)
    width = max(len(r) for r in rows)
    print()
    print(f"{'':<{width}}  " + "  ".join(f"{c:>17}" for c in columns))
    for row in rows:
        print(f"{row:<{width}}  " + "  ".join(f"{c.get(row, '-'):>17}" for c in columns.values()))
    print()


def _order(name: str) -> tuple[int, str]:
    order = ["/stopnotes -> notes s", "speech at /stopnotes s", "peak RSS MiB",
             "RSS with model MiB", "WER all"]  # fmt: skip
    return (order.index(name), name) if name in order else (len(order), name)


if __name__ == "__main__":
    sys.exit(main())
