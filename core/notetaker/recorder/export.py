"""Export a meeting: a mixed-down file plus a copy of every speaker's track.

The mixdown runs ffmpeg (the ``ffmpeg`` program on PATH, or ``ffmpeg=`` given), which
streams: a meeting of any length mixes in constant memory. Every track starts at the
meeting start, so mixing needs no offsets; ``amix`` runs with ``normalize=0`` so that one
speaker among ten is not turned down to a tenth. Tracks cut short by a crash mix as far
as they go. Output names are built from ids only.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from notetaker.errors import RecordingError
from notetaker.recorder.index import MeetingIndex
from notetaker.recorder.paths import checked_id

#: Encoder per output suffix; other suffixes let ffmpeg choose.
_CODECS: Final = {".opus": ["-c:a", "libopus", "-b:a", "96k"], ".ogg": ["-c:a", "libopus"]}
MIX_TIMEOUT_S: Final = 3600.0


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
    """Copy each track to ``out_dir/<meeting>-<user>.opus`` and mix them all.

    The mix is ``out_dir/<meeting>-mix<mix_suffix>``.
    """
    mid = checked_id(meeting_id, "meeting id")
    meeting = index.get_meeting(mid)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordingError(f"cannot create {out_dir}: {exc}") from exc
    copied: dict[int, Path] = {}
    missing: list[int] = []
    for track in meeting.tracks:
        if not track.path.is_file():
            missing.append(track.user_id)
            continue
        target = out_dir / f"{mid}-{track.user_id}.opus"
        try:
            shutil.copyfile(track.path, target)
        except OSError as exc:
            raise RecordingError(f"cannot copy {track.path}: {exc}") from exc
        copied[track.user_id] = target
    mixed = None
    if mix:
        mixed = mix_tracks(list(copied.values()), out_dir / f"{mid}-mix{mix_suffix}", ffmpeg=ffmpeg)
    return ExportResult(mixed, copied, missing)
