"""Export a meeting: a mixed-down file plus a copy of every speaker's track.

The mixdown runs ffmpeg (the ``ffmpeg`` program on PATH, or ``ffmpeg=`` given), which
streams: a meeting of any length mixes in constant memory. Every track starts at the
meeting start, so mixing needs no offsets; ``amix`` runs with ``normalize=0`` so that one
speaker among ten is not turned down to a tenth. Tracks cut short by a crash mix as far
as they go.

Each track is named for its speaker, ``<n>-<name>-<user id>.opus`` (``n``: the order
they joined the meeting), so a folder of exports reads as a list of people. The name
part is the display name reduced to letters, digits, ``_`` and ``-``: it can never name
another folder, and the user id keeps two speakers of one name apart.
"""

from __future__ import annotations

import shutil
import subprocess
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from notetaker.errors import RecordingError
from notetaker.recorder.index import MeetingIndex
from notetaker.recorder.paths import checked_id

#: Encoder per output suffix; other suffixes let ffmpeg choose.
_CODECS: Final = {".opus": ["-c:a", "libopus", "-b:a", "96k"], ".ogg": ["-c:a", "libopus"]}
MIX_TIMEOUT_S: Final = 3600.0
#: The longest name part of an exported track's file name.
NAME_CHARS: Final = 32


def file_name_part(display_name: str) -> str:
    """``display_name`` as part of a file name: letters (any script) and digits kept,
    case folded, accents dropped, every other run of characters one ``-``; ``speaker``
    when nothing is left."""
    plain = unicodedata.normalize("NFKD", display_name)
    out: list[str] = []
    for char in plain:
        if unicodedata.combining(char):
            continue
        if char.isalnum() or char == "_":
            out.append(char.casefold())
        elif out and out[-1] != "-":
            out.append("-")
    part = "".join(out).strip("-")[:NAME_CHARS].strip("-")
    return part or "speaker"


def track_file_name(order: int, display_name: str, user_id: int) -> str:
    """``<order>-<name>-<user id>.opus``."""
    return f"{order}-{file_name_part(display_name)}-{checked_id(user_id, 'user id')}.opus"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote; ``missing`` lists user ids whose track file was absent."""

    mix: Path | None
    tracks: dict[int, Path]
    missing: list[int] = field(default_factory=list)


def mix_tracks(
    inputs: list[Path], output: Path, *, ffmpeg: str | None = None, timeout: float = MIX_TIMEOUT_S
) -> Path:
    """Mix ``inputs`` (aligned tracks) into ``output``; its suffix picks the format."""
    if not inputs:
        raise RecordingError("nothing to mix: the meeting has no tracks")
    program = ffmpeg or shutil.which("ffmpeg")
    if program is None:
        raise RecordingError("exporting a mixdown needs ffmpeg on PATH (apt install ffmpeg)")
    cmd = [program, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    for path in inputs:
        cmd += ["-i", str(path)]
    if len(inputs) > 1:
        graph = f"amix=inputs={len(inputs)}:duration=longest:dropout_transition=0:normalize=0"
        cmd += ["-filter_complex", graph]
    cmd += ["-ar", "48000", "-ac", "2", *_CODECS.get(output.suffix.lower(), []), str(output)]
    try:
        result = subprocess.run(  # noqa: S603 - a fixed program and our own file names
            cmd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RecordingError(f"ffmpeg could not run: {exc}") from exc
    if result.returncode != 0:
        raise RecordingError(f"ffmpeg failed ({result.returncode}): {result.stderr.strip()}")
    return output


def export_meeting(
    index: MeetingIndex,
    meeting_id: int,
    out_dir: Path,
    *,
    mix_suffix: str = ".opus",
    mix: bool = True,
    ffmpeg: str | None = None,
) -> ExportResult:
    """Copy each track to ``out_dir/<n>-<name>-<user id>.opus`` (:func:`track_file_name`)
    and mix them all.

    The mix is ``out_dir/meeting-<meeting id>-mix<mix_suffix>``.
    """
    mid = checked_id(meeting_id, "meeting id")
    meeting = index.get_meeting(mid)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordingError(f"cannot create {out_dir}: {exc}") from exc
    copied: dict[int, Path] = {}
    missing: list[int] = []
    # Speakers come in the order they joined; a track without a speaker row goes last.
    joined = [s.user_id for s in meeting.speakers]
    names = {s.user_id: s.display_name for s in meeting.speakers}
    tracks = sorted(
        meeting.tracks,
        key=lambda t: (joined.index(t.user_id) if t.user_id in joined else len(joined), t.user_id),
    )
    for order, track in enumerate(tracks, start=1):
        if not track.path.is_file():
            missing.append(track.user_id)
            continue
        target = out_dir / track_file_name(order, names.get(track.user_id, ""), track.user_id)
        try:
            shutil.copyfile(track.path, target)
        except OSError as exc:
            raise RecordingError(f"cannot copy {track.path}: {exc}") from exc
        copied[track.user_id] = target
    mixed = None
    if mix:
        mixed = mix_tracks(
            list(copied.values()), out_dir / f"meeting-{mid}-mix{mix_suffix}", ffmpeg=ffmpeg
        )
    return ExportResult(mixed, copied, missing)
