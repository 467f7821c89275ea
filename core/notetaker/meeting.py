"""One meeting from /startnotes to posted notes: recorder and index while it runs, then
transcription and notes. :func:`produce_notes` is also what ``notetaker transcribe`` runs
on a meeting already on disk (after a crash, for example)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notetaker import plugins
from notetaker.bot import NotesResult
from notetaker.commands import Member
from notetaker.config import Settings
from notetaker.errors import TranscriptionError
from notetaker.notes import MissingSpan, Notes, build_notes
from notetaker.recorder.index import Meeting, MeetingIndex
from notetaker.recorder.paths import DataLayout
from notetaker.recorder.recorder import Recorder
from notetaker.recorder.timeline import TimelineEvent
from notetaker.sink import AudioSink
from notetaker.transcript import Segment, TrackInput, Transcriber, Word, transcribe_tracks

log = logging.getLogger(__name__)

#: Milliseconds of audio per lost packet (20 ms Opus frames).
FRAME_MS = 20
#: How often partial pages of quiet speakers are flushed while recording.
TICK_SECONDS = 1.0
#: A silence this long inside one segment starts a new transcript line.
PAUSE_SPLIT_S = 2.0


def split_at_pauses(segments: Sequence[Segment], pause_s: float = PAUSE_SPLIT_S) -> list[Segment]:
    """Split segments where the speaker paused for ``pause_s`` or more between words.

    Whisper decodes a speaker's voice-activity chunks together and may return two turns
    separated by other people's speech as one segment; left whole, such a segment puts
    the later turn before what others said in between. Segments without word times
    are kept as they are.
    """
    out: list[Segment] = []
    for seg in segments:
        runs: list[list[Word]] = []
        for word in seg.words:
            if runs and word.start - runs[-1][-1].end < pause_s:
                runs[-1].append(word)
            else:
                runs.append([word])
        if len(runs) < 2:
            out.append(seg)
            continue
        for run in runs:
            text = " ".join(w.text for w in run)
            out.append(Segment(seg.user_id, run[0].start, run[-1].end, text, tuple(run)))
    return sorted(out, key=lambda s: (s.start, s.end, s.user_id))


def missing_spans(meeting: Meeting) -> list[MissingSpan]:
    """Where audio is missing, per speaker, from the meeting's timeline."""
    speakers = [s.user_id for s in meeting.speakers]
    spans: list[MissingSpan] = []
    for ev in meeting.events:
        if ev.at_ms is None:
            continue
        start = ev.at_ms / 1000
        if ev.kind == "gap" and ev.user_id is not None and ev.detail != "reconnect":
            spans.append(
                MissingSpan(
                    ev.user_id, start, start + ev.count * FRAME_MS / 1000, ev.detail or "loss"
                )
            )
        elif ev.kind == "reconnect":
            for uid in [ev.user_id] if ev.user_id is not None else speakers:
                spans.append(MissingSpan(uid, start, start + ev.count / 1000, "reconnect"))
    return spans


def load_transcriber(settings: Settings) -> Transcriber:
    """The transcriber named by ``settings.transcriber``, from the installed plugins."""
    found = plugins.load()
    spec = found.transcribers.get(settings.transcriber)
    if spec is None:
        names = ", ".join(found.transcribers.names()) or "none"
        raise TranscriptionError(
            f"transcriber {settings.transcriber!r} is not installed (installed: {names}); "
            "install ./transcribe (notetaker-transcribe)"
        )
    transcriber: Transcriber = spec.factory(settings)
    return transcriber


def render_all(notes: Notes, directory: Path) -> list[Path]:
    """Write the notes in every registered format into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in plugins.load().renderers:
        path = directory / f"notes.{spec.extension}"
        path.write_text(spec.render(notes), encoding="utf-8")
        written.append(path)
    return written


async def produce_notes(
    settings: Settings,
    index: MeetingIndex,
    meeting_id: int,
    *,
    transcriber: Transcriber | None = None,
    progress: Callable[[float], None] | None = None,
    opted_out: Sequence[str] = (),
) -> NotesResult:
    """Transcribe a recorded meeting and write its notes next to its tracks."""
    meeting = index.get_meeting(meeting_id)
    names = {s.user_id: s.display_name for s in meeting.speakers}
    tracks = [
        TrackInput(t.user_id, names.get(t.user_id, str(t.user_id)), t.path, 0.0)
        for t in meeting.tracks
        if t.path.is_file()
    ]
    index.set_status(meeting_id, "transcribing", at=time.time())
    try:
        engine = transcriber or load_transcriber(settings)
        segments = split_at_pauses(await transcribe_tracks(engine, tracks, progress))
    except Exception as exc:
        index.set_status(meeting_id, "failed", at=time.time(), detail=f"transcription: {exc}")
        raise
    end = meeting.stopped_at or time.time()
    notes = build_notes(
        title=f"Meeting notes — {meeting.channel_name or 'voice channel'} (meeting {meeting_id})",
        started_at=datetime.fromtimestamp(meeting.started_at, UTC),
        duration=max(0.0, end - meeting.started_at),
        names={uid: names.get(uid, str(uid)) for uid in [t.user_id for t in tracks] or names},
        segments=segments,
        missing=missing_spans(meeting),
        opted_out=opted_out,
        meta={
            "meeting_id": str(meeting_id),
            "transcriber": settings.transcriber,
            "model": settings.model,
        },
    )
    directory = DataLayout(settings.data_dir).meeting_dir(meeting_id) / "notes"
    files = render_all(notes, directory)
    index.set_status(meeting_id, "done", at=time.time())
    markdown = (directory / "notes.md").read_text(encoding="utf-8")
    summary_lines = [f"**{notes.title}** — {len(notes.participants)} participant(s)."]
    summary_lines += [f"- {ln.name}: {ln.text}" for ln in notes.summary]
    summary_lines.append("The full notes are attached.")
    return NotesResult(markdown=markdown, summary="\n".join(summary_lines), files=tuple(files))


class RecordedMeeting:
    """A meeting being recorded: the :class:`~notetaker.bot.ActiveMeeting` the bot uses."""

    def __init__(
        self,
        settings: Settings,
        *,
        guild_id: int,
        voice_channel_id: int,
        started_by: Member,
        display_name: Callable[[int], str | None] | None = None,
        opted_out: Sequence[str] = (),
        channel_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.started_by = started_by
        self.started_at = time.time()
        self.index = MeetingIndex.open(settings.data_dir)
        self.meeting_id = self.index.create_meeting(
            guild_id=guild_id,
            channel_id=voice_channel_id,
            started_by=started_by.id,
            started_at=self.started_at,
            channel_name=channel_name,
        )
        self.recorder = Recorder(
            DataLayout(settings.data_dir),
            self.meeting_id,
            index=self.index,
            display_name=display_name,
        )
        self.sink: AudioSink = self.recorder
        self._opted_out = list(opted_out)
        self._names: dict[int, str] = {}
        self._display_name = display_name
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while not self.recorder.closed:
            await asyncio.sleep(TICK_SECONDS)
            self.recorder.tick()

    def speakers(self) -> dict[int, str]:
        out = {}
        for uid in self.recorder.track_paths():
            name = self._display_name(uid) if self._display_name else None
            out[uid] = name or str(uid)
        return out

    def discard_user(self, user_id: int) -> None:
        name = self._display_name(user_id) if self._display_name else None
        self._opted_out.append(name or str(user_id))
        self.recorder.opt_out(user_id, time.monotonic(), delete=True)

    def mark_reconnect(self, start: float, end: float) -> None:
        self.recorder.mark_reconnect(start, end)

    async def finish(self, progress: Callable[[str], Coroutine[Any, Any, None]]) -> NotesResult:
        self.recorder.close()
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        loop = asyncio.get_running_loop()
        last = [0]
        sent: list[concurrent.futures.Future[None]] = []

        def on_progress(fraction: float) -> None:
            # Called from the worker thread: report every quarter, on the loop.
            step = int(fraction * 4)
            if 0 < step < 4 and step > last[0]:
                last[0] = step
                text = f"Transcribing… {step * 25}%"
                sent.append(asyncio.run_coroutine_threadsafe(progress(text), loop))

        try:
            return await produce_notes(
                self.settings,
                self.index,
                self.meeting_id,
                progress=on_progress,
                opted_out=sorted(set(self._opted_out)),
            )
        finally:
            self.index.close()
            # Progress lines go out before the notes (or the failure), never after them.
            for result in await asyncio.gather(
                *(asyncio.wrap_future(f) for f in sent), return_exceptions=True
            ):
                if isinstance(result, Exception):
                    log.warning("a progress update was not delivered: %s", result)


class MeetingRecorderFactory:
    """Makes :class:`RecordedMeeting` objects for the bot (the production factory)."""

    def __init__(
        self,
        settings: Settings,
        display_name: Callable[[int, int], str | None] | None = None,
        channel_name: Callable[[int], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.display_name = display_name
        self.channel_name = channel_name

    def __call__(
        self,
        *,
        guild_id: int,
        voice_channel_id: int,
        text_channel_id: int,
        started_by: Member,
        opted_out: Sequence[str],
    ) -> RecordedMeeting:
        lookup = self.display_name
        return RecordedMeeting(
            self.settings,
            guild_id=guild_id,
            voice_channel_id=voice_channel_id,
            started_by=started_by,
            display_name=(lambda uid: lookup(guild_id, uid)) if lookup else None,
            opted_out=opted_out,
            channel_name=self.channel_name(voice_channel_id) if self.channel_name else None,
        )


__all__ = [
    "MeetingRecorderFactory",
    "RecordedMeeting",
    "TimelineEvent",
    "missing_spans",
    "produce_notes",
    "split_at_pauses",
]
