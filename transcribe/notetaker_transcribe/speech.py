"""Synthetic speech and word error rate, for tests and benchmarks.

Speech comes from espeak-ng. :func:`speak_pcm` gives one utterance as the live path
hands it to a transcriber (through Opus at 48 kHz, decoded to 16 kHz mono s16le);
:func:`make_track` and :func:`make_meeting` write whole Ogg Opus tracks, as the
simulator's participants send them. Needs the ``espeak-ng`` and ``ffmpeg`` programs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import unicodedata
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_WORD = re.compile(r"[a-z0-9']+")


def normalise_words(text: str) -> list[str]:
    """Lower-case words without punctuation or accents; ``don't`` stays one word."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return [w.strip("'") for w in _WORD.findall(folded.lower()) if w.strip("'")]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level Levenshtein distance: substitutions + deletions + insertions."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(
                min(
                    previous[j] + 1,  # deletion
                    current[j - 1] + 1,  # insertion
                    previous[j - 1] + (ref != hyp),  # substitution or match
                )
            )
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` after normalising both."""
    ref = normalise_words(reference)
    hyp = normalise_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return word_errors(ref, hyp) / len(ref)


def tools_available() -> bool:
    """Whether espeak-ng and ffmpeg are on PATH."""
    return shutil.which("espeak-ng") is not None and shutil.which("ffmpeg") is not None


@dataclass(frozen=True, slots=True)
class Utterance:
    """Text spoken starting ``at`` seconds into the track (silence before it)."""

    at: float
    text: str


@dataclass(frozen=True, slots=True)
class SpokenTrack:
    """An encoded track and where each utterance really starts and ends in it."""

    path: Path
    duration: float
    spans: tuple[tuple[float, float, str], ...]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed")
    return path


def speak(text: str, voice: str = "en-us", speed: int = 160) -> tuple[bytes, int]:
    """16-bit mono PCM of ``text`` spoken by espeak-ng, and its sample rate."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "speech.wav"
        # An argument list, no shell: the text cannot become a command.
        subprocess.run(  # noqa: S603
            [_tool("espeak-ng"), "-v", voice, "-s", str(speed), "-w", str(wav_path), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(wav_path), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise RuntimeError("espeak-ng did not write 16-bit mono audio")
            return wav.readframes(wav.getnframes()), wav.getframerate()


def speak_pcm(
    text: str,
    voice: str = "en-us",
    *,
    rate: int = 16_000,
    speed: int = 160,
    opus: bool = True,
    lead_s: float = 0.3,
    tail_s: float = 0.3,
) -> bytes:
    """``text`` spoken by espeak-ng as mono s16le at ``rate``, with ``lead_s``/``tail_s``
    of silence around it (the utterance cutter keeps a little of the pause).

    ``opus``: pass it through Opus at 48 kHz first, the codec Discord carries it in, so
    the model hears what it will hear from a real speaker's stream.
    """
    pcm, source_rate = speak(text, voice, speed)
    pcm = b"\0\0" * round(lead_s * source_rate) + pcm + b"\0\0" * round(tail_s * source_rate)
    raw = ["-f", "s16le", "-ac", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        source: list[str] = [*raw, "-ar", str(source_rate), "-i", "-"]
        stdin: bytes | None = pcm
        if opus:
            ogg = Path(tmp) / "speech.ogg"
            subprocess.run(  # noqa: S603 - fixed arguments, no shell
                [_tool("ffmpeg"), "-loglevel", "error", "-y", *source, "-c:a", "libopus",
                 "-b:a", "64k", "-ar", "48000", str(ogg)],
                input=pcm,
                check=True,
                capture_output=True,
            )  # fmt: skip
            source, stdin = ["-i", str(ogg)], None
        done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [_tool("ffmpeg"), "-loglevel", "error", *source, *raw, "-ar", str(rate), "-"],
            input=stdin,
            check=True,
            capture_output=True,
        )
    return done.stdout


def make_track(
    path: Path,
    utterances: Sequence[Utterance],
    *,
    voice: str = "en-us",
    tail_s: float = 1.0,
    bitrate: str = "32k",
) -> SpokenTrack:
    """Write an Ogg Opus track with each utterance at its time, silence between."""
    pcm = bytearray()
    rate = 0
    spans: list[tuple[float, float, str]] = []
    for utt in sorted(utterances, key=lambda u: u.at):
        audio, rate = speak(utt.text, voice)
        start = max(utt.at, len(pcm) / 2 / rate)
        pcm.extend(b"\0\0" * (round(start * rate) - len(pcm) // 2))
        pcm.extend(audio)
        spans.append((start, len(pcm) / 2 / rate, utt.text))
    if rate == 0:
        raise ValueError("a track needs at least one utterance")
    pcm.extend(b"\0\0" * round(tail_s * rate))
    subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [_tool("ffmpeg"), "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(rate), "-ac", "1",
         "-i", "-", "-c:a", "libopus", "-b:a", bitrate, "-ar", "48000", str(path)],
        input=bytes(pcm),
        check=True,
        capture_output=True,
    )  # fmt: skip
    return SpokenTrack(path, len(pcm) / 2 / rate, tuple(spans))


@dataclass(frozen=True, slots=True)
class MeetingLine:
    """One turn of a scripted meeting."""

    speaker: str
    text: str


@dataclass(frozen=True, slots=True)
class SpokenMeeting:
    """A scripted meeting recorded the way notetaker records one: a track per speaker.

    ``offsets``: where each speaker's track starts on the meeting clock (they join a
    moment before they first speak). ``script``: (speaker, start, end, text) on the
    meeting clock, in order.
    """

    tracks: dict[str, SpokenTrack]
    offsets: dict[str, float]
    duration: float
    script: tuple[tuple[str, float, float, str], ...]

    def said_by(self, speaker: str) -> str:
        """Everything ``speaker`` said, in order."""
        return " ".join(text for who, _, _, text in self.script if who == speaker)


def make_meeting(
    folder: Path,
    lines: Sequence[MeetingLine],
    voices: dict[str, str],
    *,
    gap_s: float = 0.8,
    lead_s: float = 1.0,
) -> SpokenMeeting:
    """Synthesise ``lines`` turn by turn, ``gap_s`` apart, into one Ogg Opus per speaker."""
    clock = lead_s
    timed: list[tuple[str, float, str]] = []
    for line in lines:
        pcm, rate = speak(line.text, voices[line.speaker])
        timed.append((line.speaker, clock, line.text))
        clock += len(pcm) / 2 / rate + gap_s
    offsets: dict[str, float] = {}
    for speaker, start, _ in timed:
        offsets.setdefault(speaker, max(0.0, start - lead_s))
    tracks: dict[str, SpokenTrack] = {}
    for speaker, offset in offsets.items():
        utterances = [Utterance(at - offset, text) for who, at, text in timed if who == speaker]
        tracks[speaker] = make_track(
            folder / f"{speaker}.ogg", utterances, voice=voices[speaker], tail_s=0.5
        )
    script = tuple(
        (speaker, offsets[speaker] + s, offsets[speaker] + e, text)
        for speaker in tracks
        for s, e, text in tracks[speaker].spans
    )
    ordered = tuple(sorted(script, key=lambda row: row[1]))
    return SpokenMeeting(tracks, offsets, ordered[-1][2] + 0.5, ordered)
