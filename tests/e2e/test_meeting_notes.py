"""The end-to-end meeting on the live path: simulator -> bot (this backend, engine
transport) -> recording and utterance cutting -> transcription queue with a shipped model
-> captions in a thread while it runs -> notes posted seconds after /stopnotes.

Scripted members read known lines (espeak-ng) into the voice channel; the notes must
get their words right (word error rate under 15 % per speaker), attribute every line
to the member who said it, keep the turns in the order they were spoken, and reach the
channel as a message with the notes files attached; the captions thread must carry every
speaker's words as they were said, within Discord's rate limits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from notetaker.recorder.index import MeetingIndex

speech = pytest.importorskip("notetaker_transcribe.speech", reason="needs notetaker-transcribe")
normalise_words, wer = speech.normalise_words, speech.wer

MAX_WER = 0.15
TRANSCRIBER = os.environ.get("NOTETAKER_TEST_TRANSCRIBER", "faster-whisper")


def _owner(words: list[str], scripts: dict[str, set[str]]) -> str:
    """The speaker whose script holds the largest share of ``words``."""
    return max(scripts, key=lambda name: sum(w in scripts[name] for w in words))


async def test_meeting_notes_from_spoken_script(
    demo: Any, spoken: list[Any], meeting_settings: Any
) -> None:
    outcome = await demo.run_meeting(meeting_settings, spoken)

    # Written under the data dir, and the index says the meeting is done.
    assert outcome.status == "done"
    notes = json.loads((outcome.notes_dir / "notes.json").read_text(encoding="utf-8"))
    assert outcome.notes_dir.is_relative_to(meeting_settings.data_dir)
    assert (outcome.notes_dir / "notes.md").read_text(encoding="utf-8") == outcome.markdown

    # Posted where /stopnotes ran, with the notes attached.
    posted = {name for name, size in outcome.message["files"] if size > 0}
    assert {"notes.md", "notes.json", "timeline.png"} <= posted
    print(f"/stopnotes -> notes: {outcome.timings['notes_s']:.1f} s")  # the figure, no bound

    # Everyone is named as the guild shows them, not by id.
    names = {p["name"]: int(p["user_id"]) for p in notes["participants"]}
    assert names == outcome.speakers

    lines = [ln for ln in notes["transcript"] if "text" in ln]
    said = {s.name: s.said for s in spoken}
    scripts = {name: set(normalise_words(text)) for name, text in said.items()}
    for line in lines:
        words = normalise_words(line["text"])
        assert _owner(words, scripts) == line["speaker"], line
        assert int(line["user_id"]) == outcome.speakers[line["speaker"]], line
    for name, text in said.items():
        heard = " ".join(ln["text"] for ln in lines if ln["speaker"] == name)
        assert wer(text, heard) < MAX_WER, (name, text, heard)

    # Live captions: a thread under the announcement, each speaker's words as captions
    # ("[mm:ss] Name: text"), in order, and Discord's rate limit never hit.
    assert outcome.caption_thread is not None
    captioned: dict[str, list[str]] = {}
    for caption in outcome.captions:
        stamp, _, rest = caption.partition(" ")
        assert stamp.startswith("[") and stamp.endswith("]"), caption
        who, _, text = rest.partition(": ")
        captioned.setdefault(who, []).append(text)
    assert set(captioned) == set(said)
    for name, text in said.items():
        assert wer(text, " ".join(captioned[name])) < MAX_WER, (name, captioned[name])
    assert outcome.rate_limited == 0

    # What the live path wrote is searchable: the longest word of each speaker's first
    # line finds their lines, under their name.
    index = MeetingIndex.open(meeting_settings.data_dir)
    try:
        for name in said:
            first = next(ln for ln in lines if ln["speaker"] == name)
            word = max(normalise_words(first["text"]), key=len)
            hits = index.search(word, speaker=name)
            assert any(word in normalise_words(h.text) for h in hits), (name, word)
            assert {(h.meeting_id, h.speaker) for h in hits} == {(outcome.meeting_id, name)}
    finally:
        index.close()

    if TRANSCRIBER == "whisperx":
        # Offline, WhisperX runs without word alignment (its aligner is a download): it
        # returns VAD chunks of up to 30 s without word times, so one speaker's turns on
        # either side of someone else's can arrive as a single line.
        return
    # Turns in the order they were spoken: each speaker's runs of lines, in turn.
    turns = [ln["speaker"] for ln in lines]
    runs = [who for i, who in enumerate(turns) if i == 0 or turns[i - 1] != who]
    script_runs = [ln.speaker for ln in demo.SCRIPT]
    assert runs == script_runs


async def test_a_meeting_whose_notes_fail_tells_the_channel(
    demo: Any, meeting_settings: Any, tmp_path: Path
) -> None:
    spoken = demo.prepare_speech(tmp_path / "speech", [demo.Line("bob", "Hello everyone.")])
    broken = meeting_settings.model_copy(update={"transcriber": "no-such-engine"})
    with pytest.raises(demo.DemoError) as failed:
        await demo.run_meeting(broken, spoken)
    assert "no-such-engine" in str(failed.value) and "notetaker transcribe 1" in str(failed.value)
    index = MeetingIndex.open(broken.data_dir)
    try:
        meeting = index.get_meeting(1)
    finally:
        index.close()
    assert meeting.status == "failed"
    assert [t.path.is_file() for t in meeting.tracks] == [True]  # the recording is kept


async def test_an_opted_out_member_never_reaches_the_transcript_or_the_captions(
    demo: Any, meeting_settings: Any, tmp_path: Path
) -> None:
    script = [
        demo.Line("bob", "Good morning everyone, the release is ready."),
        demo.Line("carol", "I would rather not be recorded today."),
        demo.Line("bob", "Then we will send the report on Friday."),
    ]
    spoken = demo.prepare_speech(tmp_path / "speech", script)
    outcome = await demo.run_meeting(meeting_settings, spoken, opt_out=["carol"])
    notes = json.loads((outcome.notes_dir / "notes.json").read_text(encoding="utf-8"))
    speakers = {ln.get("speaker") for ln in notes["transcript"] if "text" in ln}
    assert speakers == {"bob"}
    assert outcome.captions and all(": " in c and " carol: " not in c for c in outcome.captions)
    # Listed as opted out, by name where the library's member cache knows it (without
    # the members intent it may not yet), else by user id.
    carol = outcome.all_speakers["carol"]
    assert set(notes.get("opted_out", [])) & {"carol", str(carol)}
    index = MeetingIndex.open(meeting_settings.data_dir)
    try:
        meeting = index.get_meeting(outcome.meeting_id)
        assert {t.user_id for t in meeting.tracks} == {outcome.speakers["bob"]}
        assert carol not in {s.user_id for s in meeting.speakers}
        assert {s.user_id for s in index.segments(outcome.meeting_id)} == {outcome.speakers["bob"]}
        assert index.search("release") and not index.search("rather recorded")
    finally:
        index.close()
