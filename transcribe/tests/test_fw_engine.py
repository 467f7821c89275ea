"""The faster-whisper engine on real synthetic speech, with the shipped models."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from notetaker.errors import TranscriptionError
from notetaker.transcript import Segment, TrackInput, transcribe_tracks
from notetaker_transcribe.fw_engine import FasterWhisperTranscriber
from notetaker_transcribe.models import SHIPPED, shipped_installed
from notetaker_transcribe.options import EngineOptions
from notetaker_transcribe.speech import (
    SpokenTrack,
    Utterance,
    make_track,
    tools_available,
    wer,
)

pytestmark = [
    pytest.mark.skipif(not tools_available(), reason="needs espeak-ng and ffmpeg"),
    pytest.mark.skipif(
        not all(shipped_installed(m) for m in SHIPPED.values()),
        reason="needs notetaker-transcribe[models]",
    ),
]

FIRST = (
    "Good morning everyone. Let us start with the project update. "
    "The new release is ready for testing this week."
)
SECOND = (
    "Thank you for joining the meeting today. "
    "We need to finish the report before the end of the month."
)
OFFSET = 30.0
MAX_WER = 0.15


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> SpokenTrack:
    """One speaker: silence, a sentence, a pause, another sentence."""
    folder = tmp_path_factory.mktemp("speech")
    return make_track(folder / "alice.ogg", [Utterance(2.0, FIRST), Utterance(12.0, SECOND)])


_engines: dict[str, FasterWhisperTranscriber] = {}


def engine(model: str, data_dir: Path) -> FasterWhisperTranscriber:
    """One loaded engine per model for the whole module: loading is the slow part."""
    if model not in _engines:
        opts = EngineOptions(model=model, data_dir=data_dir, language="en", device="cpu")
        _engines[model] = FasterWhisperTranscriber(opts)
    return _engines[model]


def _text(segments: list[Segment]) -> str:
    return " ".join(s.text for s in segments)


@pytest.mark.parametrize("model", ["tiny.en", "base"])
def test_transcribes_ogg_opus_speech_on_the_meeting_clock(
    model: str, spoken: SpokenTrack, shared_data_dir: Path
) -> None:
    transcriber = engine(model, shared_data_dir)
    track = TrackInput(user_id=42, display_name="Alice", path=spoken.path, offset_s=OFFSET)
    segments = transcriber.transcribe(track)

    assert segments, "no speech recognised"
    assert wer(f"{FIRST} {SECOND}", _text(segments)) < MAX_WER
    assert all(s.user_id == 42 for s in segments)
    assert [s.start for s in segments] == sorted(s.start for s in segments)

    # Every time is on the meeting clock: the track starts OFFSET seconds in.
    (first_start, first_end, _), (second_start, second_end, _) = spoken.spans
    assert OFFSET + first_start - 1.0 <= segments[0].start <= OFFSET + first_start + 0.5
    assert segments[-1].end <= OFFSET + second_end + 1.0
    words = [w for s in segments for w in s.words]
    assert len(words) >= 20
    for seg in segments:
        assert seg.start <= seg.end
        for w in seg.words:
            assert seg.start - 0.01 <= w.start <= w.end <= seg.end + 0.01
            assert 0.0 <= w.probability <= 1.0
            assert w.text == w.text.strip() and w.text
    # The pause between the sentences is where it was spoken: nothing inside it.
    pause = (OFFSET + first_end + 0.3, OFFSET + second_start - 1.0)
    assert not [w for w in words if pause[0] < w.start < pause[1]]
    thank = next(w for w in words if w.text.lower().startswith("thank"))
    assert OFFSET + second_start - 1.0 <= thank.start <= OFFSET + second_start + 0.5


def test_offset_moves_every_time_and_nothing_else(
    spoken: SpokenTrack, shared_data_dir: Path
) -> None:
    transcriber = engine("tiny.en", shared_data_dir)
    at_zero = transcriber.transcribe(TrackInput(1, "Alice", spoken.path, 0.0))
    at_offset = transcriber.transcribe(TrackInput(1, "Alice", spoken.path, OFFSET))
    assert [s.text for s in at_zero] == [s.text for s in at_offset]
    for a, b in zip(at_zero, at_offset, strict=True):
        assert b.start == pytest.approx(a.start + OFFSET)
        assert b.end == pytest.approx(a.end + OFFSET)
        assert [w.start + OFFSET for w in a.words] == pytest.approx([w.start for w in b.words])


def test_progress_rises_to_one(spoken: SpokenTrack, shared_data_dir: Path) -> None:
    seen: list[float] = []
    engine("tiny.en", shared_data_dir).transcribe(
        TrackInput(1, "Alice", spoken.path, 0.0), seen.append
    )
    assert seen[-1] == 1.0
    assert seen == sorted(seen)
    assert any(0.0 < p < 1.0 for p in seen), seen


def test_silence_gives_no_segments(tmp_path: Path, shared_data_dir: Path) -> None:
    import subprocess

    silent = tmp_path / "silent.ogg"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono",
         "-t", "5", "-c:a", "libopus", str(silent)],
        check=True,
    )  # fmt: skip
    assert engine("tiny.en", shared_data_dir).transcribe(TrackInput(1, "A", silent, 0.0)) == []


def test_a_missing_or_broken_track_is_a_transcription_error(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    transcriber = engine("tiny.en", shared_data_dir)
    with pytest.raises(TranscriptionError, match="does not exist"):
        transcriber.transcribe(TrackInput(1, "A", tmp_path / "nope.ogg", 0.0))
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(b"OggS" + b"\x00" * 200)
    with pytest.raises(TranscriptionError, match="cannot decode"):
        transcriber.transcribe(TrackInput(1, "A", broken, 0.0))


async def test_tracks_run_in_worker_threads_and_merge_by_time(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    bob_said = "Please send the slides to the whole team tomorrow."
    bob = make_track(tmp_path / "bob.ogg", [Utterance(1.0, bob_said)], voice="en-gb-x-rp")
    carol = make_track(
        tmp_path / "carol.ogg", [Utterance(0.5, "The budget looks fine to me.")], voice="en-us"
    )
    inner = engine("tiny.en", shared_data_dir)
    threads: set[int] = set()

    class Recording(FasterWhisperTranscriber):
        def transcribe(self, track, progress=None):  # type: ignore[no-untyped-def]
            threads.add(threading.get_ident())
            return inner.transcribe(track, progress)

    seen: list[float] = []
    tracks = [
        TrackInput(7, "Bob", bob.path, offset_s=10.0),
        TrackInput(8, "Carol", carol.path, offset_s=4.0),
    ]
    segments = await transcribe_tracks(Recording(inner.options), tracks, seen.append)

    assert threading.get_ident() not in threads
    assert [s.user_id for s in segments] == [8, 7]  # Carol spoke first on the meeting clock
    assert segments[0].start >= 4.0 and segments[1].start >= 10.0
    assert wer("The budget looks fine to me.", segments[0].text) < 0.2
    assert wer(bob_said, segments[1].text) < 0.2
    assert seen[-1] == 1.0 and seen == sorted(seen)
    # Each track is half of the whole: the first track's end is reported as one half.
    assert 0.5 in seen, seen
