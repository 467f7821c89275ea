"""One meeting from /startnotes to posted notes, on the live path.

While it runs, every frame goes to the recorder (the Ogg tracks, the source of truth) and
to the utterance cutter, whose utterances go through the transcription queue; their
segments land in the session index as they are made. /stopnotes ends the last
utterances, waits for what is still in flight and builds the notes from the index, so the
notes take seconds at any meeting length. :func:`retranscribe` re-does a meeting from its
tracks, cut the same way (``notetaker transcribe``, e.g. with a bigger model).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
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
from notetaker.errors import RecordingError, TranscriptionError
from notetaker.live.captions import CaptionLine
from notetaker.live.cutter import (
    DEFAULT_MIN_SPLIT_S,
    CutterConfig,
    Utterance,
    UtteranceCutter,
    cut_track,
)
from notetaker.live.language import SpeakerLanguages, parse_language
from notetaker.live.local_queue import LocalTranscriptionQueue
from notetaker.live.meeting_transcript import LiveTranscript, TrackPackets
from notetaker.live.queue import Backlog, TranscriptionQueue
from notetaker.notes import MissingSpan, Notes, build_notes
from notetaker.notes.render import clock, strip_front_matter
from notetaker.notes.summarizers import add_digest
from notetaker.recorder.index import Meeting, MeetingIndex
from notetaker.recorder.ogg_read import TrackReader
from notetaker.recorder.ogg_tail import repair_tail
from notetaker.recorder.paths import DataLayout
from notetaker.recorder.recorder import Recorder
from notetaker.recorder.search import SearchHit
from notetaker.recorder.timeline import TimelineEvent
from notetaker.recovery import Interrupted
from notetaker.sink import SAMPLE_RATE, AudioSink, FanOut
from notetaker.transcript import Segment, Transcriber

log = logging.getLogger(__name__)

#: Milliseconds of audio per lost packet (20 ms Opus frames).
FRAME_MS = 20
#: How often the cutter looks for speakers who went quiet (ends their utterance).
CUT_TICK_S = 0.1
#: How often partial pages of quiet speakers are flushed while recording.
FLUSH_TICK_S = 1.0
#: While the notes wait on a backlog, how often the channel hears how much is left.
BACKLOG_REPORT_S = 5.0


def missing_spans(meeting: Meeting) -> list[MissingSpan]:
    """Where audio is missing, per speaker, from the meeting's timeline."""
    speakers = [s.user_id for s in meeting.speakers]
    spans: list[MissingSpan] = []
    # Where the meeting ends on its clock: capture's close, or past the longest track.
    ends = [ev.at_ms for ev in meeting.events if ev.kind == "close" and ev.at_ms is not None]
    ends += [t.ended_ms for t in meeting.tracks if t.ended_ms is not None]
    end_s = max(ends, default=0) / 1000
    for ev in meeting.events:
        if ev.at_ms is None:
            continue
        start = ev.at_ms / 1000
        if ev.kind == "stopped" and ev.user_id is not None:
            # A track that could not be written (disk full): gone from there to the end.
            spans.append(MissingSpan(ev.user_id, start, max(start, end_s), ev.detail))
            continue
        if ev.kind == "gap" and ev.user_id is not None and ev.detail != "reconnect":
            spans.append(
                MissingSpan(
                    ev.user_id, start, start + ev.count * FRAME_MS / 1000, ev.detail or "loss"
                )
            )
        elif ev.kind in ("reconnect", "restart"):
            for uid in [ev.user_id] if ev.user_id is not None else speakers:
                spans.append(MissingSpan(uid, start, start + ev.count / 1000, ev.kind))
    return spans


def leftover_utterances(
    meeting: Meeting, segments: Sequence[Segment], config: CutterConfig, until_ms: int
) -> list[Utterance]:
    """The speech a process that died took with it: utterances of the tracks, up to
    ``until_ms``, that no transcribed segment of their speaker overlaps (they were
    queued, in flight, or still being spoken). Each waits as a range of its track.
    Reads the tracks (Ogg pages, no decoding): call it off the event loop."""
    until = until_ms * SAMPLE_RATE // 1000
    done: dict[int, list[tuple[float, float]]] = {}
    for seg in segments:
        done.setdefault(seg.user_id, []).append((seg.start, seg.end))
    out: list[Utterance] = []
    for track in meeting.tracks:
        if not track.path.is_file():
            continue
        spans = done.get(track.user_id, [])
        packets = itertools.takewhile(lambda p: p.start < until, TrackReader(track.path).packets())
        for utt in cut_track(track.user_id, packets, config):
            if not any(s < utt.end_s and e > utt.start_s for s, e in spans):
                out.append(dataclasses.replace(utt, packets=(), spilled=True))
    return out


def cut_point_ms(meeting: Meeting, track_ends_ms: Sequence[int] = ()) -> int:
    """Where an interrupted meeting's recording stops on its clock: its last heartbeat,
    or the end of its longest track if audio reached further."""
    alive = meeting.alive_at if meeting.alive_at is not None else meeting.started_at
    return max([round((alive - meeting.started_at) * 1000), *track_ends_ms, 0])


async def close_recorder(recorder: Recorder) -> None:
    """Close ``recorder`` on a thread: it waits for its index writer, which a locked index
    holds up (for at most the writer's close timeout), and the loop must not. Cancelled
    (shutdown's grace ran out), it still waits for the close: the tracks end properly and
    the index rows are written or reported either way."""
    closing = asyncio.ensure_future(asyncio.to_thread(recorder.close))
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        await closing
        raise


def cutter_config(settings: Settings) -> CutterConfig:
    """The cutter's rules from ``[live]``."""
    live = settings.live
    return CutterConfig(
        pause_s=live.pause_s,
        max_utterance_s=live.max_utterance_s,
        min_split_s=min(DEFAULT_MIN_SPLIT_S, live.max_utterance_s / 2),
    )


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


def make_queue(
    settings: Settings, transcriber: Transcriber | None = None
) -> LocalTranscriptionQueue:
    """The in-process queue with the configured engine (loaded on its worker)."""
    return LocalTranscriptionQueue(
        transcriber or (lambda: load_transcriber(settings)),
        memory_bytes=settings.live.backlog_memory_kib * 1024,
    )


def render_all(notes: Notes, directory: Path) -> list[Path]:
    """Write the notes in every registered format into ``directory``. A format that
    fails is logged and left out: it never costs the meeting the others."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in plugins.load().renderers:
        path = directory / spec.file_name
        try:
            content = spec.render(notes)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        except Exception:
            log.exception(
                "notes format %s (%s) failed; the others are written", spec.name, path.name
            )
            continue
        written.append(path)
    return written


def speech_left(backlog: Backlog) -> str:
    """``"1 min 05 s"`` / ``"12 s"`` of speech a backlog holds."""
    seconds = max(1, round(backlog.speech_s))
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def untranscribed(failed: Sequence[tuple[Utterance, str]]) -> list[MissingSpan]:
    """Utterances the engine failed on, as holes in the transcript."""
    return [MissingSpan(u.user_id, u.start_s, u.end_s, "transcription") for u, _ in failed]


def meeting_notes(
    settings: Settings,
    index: MeetingIndex,
    meeting_id: int,
    *,
    opted_out: Sequence[str] = (),
    holes: Sequence[MissingSpan] = (),
    notices: Sequence[str] = (),
) -> Notes:
    """A meeting's notes (no digest) from the index: its transcript, participants and
    missing audio. The notes files and the meeting page are both made from this."""
    meeting = index.get_meeting(meeting_id)
    segments: list[Segment] = index.segments(meeting_id)
    names = {s.user_id: s.display_name or str(s.user_id) for s in meeting.speakers}
    heard = [t.user_id for t in meeting.tracks if t.path.is_file()]
    end = meeting.stopped_at or time.time()
    return build_notes(
        title=f"Meeting notes — {meeting.channel_name or 'voice channel'} (meeting {meeting_id})",
        started_at=datetime.fromtimestamp(meeting.started_at, UTC),
        duration=max(0.0, end - meeting.started_at),
        names={uid: names.get(uid, str(uid)) for uid in heard or names},
        segments=segments,
        missing=[*missing_spans(meeting), *holes],
        opted_out=opted_out,
        meta={
            "meeting_id": str(meeting_id),
            "guild_id": str(meeting.guild_id),
            "channel": meeting.channel_name or "",
            "channel_id": str(meeting.channel_id),
            "transcriber": settings.transcriber,
            "model": settings.model,
        },
        notices=notices,
    )


async def notes_for(
    settings: Settings,
    index: MeetingIndex,
    meeting_id: int,
    *,
    opted_out: Sequence[str] = (),
    holes: Sequence[MissingSpan] = (),
    notices: Sequence[str] = (),
) -> NotesResult:
    """Build the notes of a meeting from the transcript in the index; write every format
    next to its tracks and mark the meeting done. ``notices`` come first in the notes."""
    notes = meeting_notes(
        settings, index, meeting_id, opted_out=opted_out, holes=holes, notices=notices
    )
    notes = await add_digest(settings, notes, plugins.load().summarizers)
    directory = DataLayout(settings.data_dir).meeting_dir(meeting_id) / "notes"
    # On a thread: a long meeting's formats and its picture take a while, and other
    # guilds' voice runs on this loop. Cancelled meanwhile, the meeting stays unfinished.
    files = await asyncio.to_thread(render_all, notes, directory)
    index.set_status(meeting_id, "done", at=time.time())
    # The file keeps its front matter (for a notes vault); the chat message does not.
    markdown = strip_front_matter((directory / "notes.md").read_text(encoding="utf-8"))
    summary_lines = [f"**{notes.title}** — {len(notes.participants)} participant(s)."]
    summary_lines += [f"_{notice}_" for notice in notes.notices]
    if notes.digest is not None:
        summary_lines.append(notes.digest.summary)
        summary_lines += [
            f"- [ ] {a.owner}: {a.text}" + (f" (due {a.due})" if a.due else "")
            for a in notes.digest.actions
        ]
    else:
        summary_lines += [f"- {ln.name}: {ln.text}" for ln in notes.summary]
    summary_lines.append("The full notes are attached.")
    page = meeting_page(settings, meeting_id)
    if page:
        markdown += f"\n{page}\n"
        summary_lines.append(page)
    return NotesResult(markdown=markdown, summary="\n".join(summary_lines), files=tuple(files))


def meeting_page(settings: Settings, meeting_id: int, now: float | None = None) -> str:
    """``Meeting page (until <date>): <signed link>`` when ``web_base_url`` is set."""
    if not settings.web_base_url:
        return ""
    from notetaker.web.auth import load_secret, meeting_link

    expires = int((time.time() if now is None else now) + settings.web_link_days * 86_400)
    url = meeting_link(settings.web_base_url, load_secret(settings.data_dir), meeting_id, expires)
    until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d")
    return f"Meeting page (until {until}): {url}"


def _fail_if_nothing(index: MeetingIndex, meeting_id: int, transcript: LiveTranscript) -> None:
    """No utterance transcribed and some failed: the engine is broken, say so."""
    failed = transcript.progress.failed
    if failed and not transcript.progress.utterances:
        detail = f"transcription: {failed[0][1]}"
        index.set_status(meeting_id, "failed", at=time.time(), detail=detail)
        raise TranscriptionError(failed[0][1])


async def retranscribe(
    settings: Settings,
    index: MeetingIndex,
    meeting_id: int,
    *,
    transcriber: Transcriber | None = None,
    progress: Callable[[float], None] | None = None,
    language: str | None = None,
    opted_out: Sequence[str] = (),
) -> NotesResult:
    """Transcribe a recorded meeting again from its tracks, cut into utterances by the
    live path's rules, and write its notes. The new transcript replaces the old one only
    once it is complete. ``progress`` hears the fraction of the speech done."""
    meeting = index.get_meeting(meeting_id)
    index.set_status(meeting_id, "transcribing", at=time.time())
    run = index.new_run(meeting_id)
    try:
        queue = make_queue(settings, transcriber or load_transcriber(settings))
    except Exception as exc:
        index.set_status(meeting_id, "failed", at=time.time(), detail=f"transcription: {exc}")
        raise
    layout = DataLayout(settings.data_dir)
    transcript = LiveTranscript(
        index,
        meeting_id,
        run,
        languages=SpeakerLanguages(parse_language(language or settings.language)),
        tracks=TrackPackets(lambda uid: layout.track_path(meeting_id, uid)),
    )
    config = cutter_config(settings)
    try:
        queue.open_meeting(meeting_id, transcript)
        total = 0.0
        for track in meeting.tracks:
            if not track.path.is_file():
                continue
            # Every utterance waits as a range of its track: a long meeting's backlog
            # costs no memory, and the cut itself streams through the file.
            for utt in cut_track(track.user_id, TrackReader(track.path).packets(), config):
                queue.submit(meeting_id, dataclasses.replace(utt, packets=(), spilled=True))
                total += utt.speech_s

        async def report(backlog: Backlog) -> None:
            if progress is not None and total > 0:
                progress(1.0 - backlog.speech_s / total)

        await queue.drain(meeting_id, report, every_s=0.5)
    finally:
        queue.close()
    _fail_if_nothing(index, meeting_id, transcript)
    index.use_run(meeting_id, run)
    if progress is not None:
        progress(1.0)
    return await notes_for(
        settings,
        index,
        meeting_id,
        opted_out=opted_out,
        holes=untranscribed(transcript.progress.failed),
    )


async def finish_interrupted(
    settings: Settings,
    queue: TranscriptionQueue,
    interrupted: Interrupted,
    why: str,
    progress: Callable[[str], Coroutine[Any, Any, None]],
) -> NotesResult:
    """Write the notes of a meeting a previous process did not finish.

    Left ``recording`` (the process died), its tracks end at their last whole page (a
    torn one is cut off), the recording stops at :func:`cut_point_ms` and the notes say
    so first. Either way the speech no segment covers yet is transcribed from the tracks
    through ``queue`` (``progress`` hears how much is left), then the notes are built as
    at /stopnotes."""
    index = MeetingIndex.open(settings.data_dir)
    try:
        meeting_id = interrupted.meeting_id
        meeting = index.get_meeting(meeting_id)
        notices: list[str] = []
        if meeting.status == "recording":
            ends = await asyncio.to_thread(_end_tracks, index, meeting)
            cut_ms = cut_point_ms(meeting, ends)
            index.add_events(meeting_id, [TimelineEvent("close", None, cut_ms, 0, "bot restarted")])
            stopped = meeting.started_at + cut_ms / 1000
            index.set_status(meeting_id, "transcribing", at=stopped, detail=f"bot restarted: {why}")
            notices.append(
                f"The recording was cut short at [{clock(cut_ms / 1000)}]: the bot stopped "
                f"and, when it started again, the meeting did not go on ({why})."
            )
            meeting = index.get_meeting(meeting_id)
        leftover = await asyncio.to_thread(
            leftover_utterances,
            meeting,
            index.segments(meeting_id),
            cutter_config(settings),
            cut_point_ms(meeting, [t.ended_ms for t in meeting.tracks if t.ended_ms is not None]),
        )
        layout = DataLayout(settings.data_dir)
        transcript = LiveTranscript(
            index,
            meeting_id,
            meeting.transcript_run,
            languages=SpeakerLanguages(parse_language(settings.language)),
            tracks=TrackPackets(lambda uid: layout.track_path(meeting_id, uid)),
        )

        async def report(backlog: Backlog) -> None:
            await progress(f"Finishing the transcript: {speech_left(backlog)} of speech left…")

        if leftover:
            queue.open_meeting(meeting_id, transcript)
            try:
                for utterance in leftover:
                    queue.submit(meeting_id, utterance)
                await queue.drain(meeting_id, report, every_s=BACKLOG_REPORT_S)
            finally:
                queue.close_meeting(meeting_id)
        return await notes_for(
            settings,
            index,
            meeting_id,
            holes=untranscribed(transcript.progress.failed),
            notices=notices,
        )
    finally:
        index.close()


def _end_tracks(index: MeetingIndex, meeting: Meeting) -> list[int]:
    """Cut each open track of a dead process at its last whole page and record where it
    ends (ms); returns those ends."""
    ends = []
    for track in meeting.tracks:
        if track.ended_ms is not None:
            ends.append(track.ended_ms)
            continue
        if not track.path.is_file():
            continue
        try:
            end = repair_tail(track.path)
        except RecordingError as exc:
            log.warning("meeting %s: track of %s: %s", meeting.id, track.user_id, exc)
            continue
        ended_ms = end.granule * 1000 // SAMPLE_RATE
        index.end_track(meeting.id, track.user_id, ended_ms)
        ends.append(ended_ms)
    return ends


class RecordedMeeting:
    """A meeting being recorded: the :class:`~notetaker.bot.ActiveMeeting` the bot uses."""

    def __init__(
        self,
        settings: Settings,
        *,
        guild_id: int,
        voice_channel_id: int,
        started_by: Member,
        queue: TranscriptionQueue,
        language: str | None = None,
        display_name: Callable[[int], str | None] | None = None,
        opted_out: Sequence[str] = (),
        channel_name: str | None = None,
        text_channel_id: int | None = None,
        resume: int | None = None,
    ) -> None:
        self.settings = settings
        self.started_by = started_by
        self.language = language
        self.index = MeetingIndex.open(settings.data_dir)
        previous: Meeting | None = None
        recorder_start: float | None = None
        if resume is None:
            self.started_at = time.time()
            self.meeting_id = self.index.create_meeting(
                guild_id=guild_id,
                channel_id=voice_channel_id,
                started_by=started_by.id,
                started_at=self.started_at,
                channel_name=channel_name,
                text_channel_id=text_channel_id,
            )
        else:
            # The same meeting goes on: its clock started when it first did, so the
            # recorder's monotonic start lies that far in the past.
            previous = self.index.get_meeting(resume)
            self.meeting_id, self.started_at = previous.id, previous.started_at
            recorder_start = time.monotonic() - max(0.0, time.time() - previous.started_at)
        self.recorder = Recorder(
            DataLayout(settings.data_dir),
            self.meeting_id,
            started_at=recorder_start,
            index=self.index,
            display_name=display_name,
        )
        self._previous = previous
        self.queue = queue
        self.transcript = LiveTranscript(
            self.index,
            self.meeting_id,
            self.index.get_meeting(self.meeting_id).transcript_run,
            languages=SpeakerLanguages(language),
            tracks=TrackPackets(self.recorder.track_path, self.recorder.flush_track),
            listener=self._heard,
        )
        queue.open_meeting(self.meeting_id, self.transcript)
        queue.warm_up()
        self.cutter = UtteranceCutter(
            self._submit,
            started_at=self.recorder.started_at,
            config=cutter_config(settings),
            recorder_config=self.recorder.config,
        )
        self.sink: AudioSink = FanOut(self.recorder, self.cutter)
        self._opted_out = list(opted_out)
        self._display_name = display_name
        self._captions: Callable[[Sequence[CaptionLine]], None] | None = None
        self._failures: Callable[[str], None] | None = None
        self._loop = asyncio.get_running_loop()
        self._ticker = self._loop.create_task(self._tick())

    async def continue_after_restart(self) -> None:
        """For a meeting made with ``resume``, before its sink gets audio: pick up the
        tracks the dead process left, mark the outage, and queue the speech it had not
        transcribed yet. The file work runs on a thread (tracks are scanned to their
        last whole page), never on the loop or the receive path."""
        previous, self._previous = self._previous, None
        if previous is None:
            return
        leftover = await asyncio.to_thread(self._continue, previous)
        for utterance in leftover:
            self.queue.submit(self.meeting_id, utterance)

    def _continue(self, previous: Meeting) -> list[Utterance]:
        open_tracks = [t.user_id for t in previous.tracks if t.ended_ms is None]
        for user_id, why in self.recorder.resume_tracks(open_tracks).items():
            log.warning("meeting %s: track of %s does not go on: %s", self.meeting_id, user_id, why)
        down_ms = cut_point_ms(previous, [self.recorder.last_granule_ms()])
        self.recorder.mark_restart(down_ms, time.monotonic())
        self.index.set_alive(self.meeting_id, time.time())
        leftover = leftover_utterances(
            previous, self.index.segments(self.meeting_id), cutter_config(self.settings), down_ms
        )
        log.info(
            "meeting %s goes on after a restart: down from %.1f s, %d utterance(s) to "
            "transcribe again",
            self.meeting_id,
            down_ms / 1000,
            len(leftover),
        )
        return leftover

    # -- while recording ----------------------------------------------------------------

    def _submit(self, utterance: Utterance) -> None:
        self.queue.submit(self.meeting_id, utterance)

    async def _tick(self) -> None:
        next_flush = time.monotonic() + FLUSH_TICK_S
        while not self.recorder.closed:
            await asyncio.sleep(CUT_TICK_S)
            self.cutter.tick()
            if time.monotonic() >= next_flush:
                next_flush += FLUSH_TICK_S
                self.recorder.tick()
            self._tell_failures()

    def listen_failures(self, callback: Callable[[str], None] | None) -> None:
        """Hand ``callback`` (on the event loop) a sentence for the channel each time a
        speaker's track stops (a full disk); failures before the call come first."""
        self._failures = callback
        self._tell_failures()

    def _tell_failures(self) -> None:
        callback = self._failures
        if callback is None:
            return  # kept in the recorder until someone listens
        for failure in self.recorder.take_failures():
            text = failure.message(self._name(failure.user_id))
            log.warning("meeting %s: %s", self.meeting_id, text)
            try:
                callback(text)
            except Exception:  # telling the channel never affects the recording
                log.exception("failure notice of meeting %s failed", self.meeting_id)

    def _heard(self, utterance: Utterance, segments: Sequence[Segment]) -> None:
        # On the queue's worker thread: captions are built and posted on the loop.
        if self._captions is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to caption for
            self._loop.call_soon_threadsafe(self._deliver, utterance, segments)

    def _deliver(self, utterance: Utterance, segments: Sequence[Segment]) -> None:
        callback = self._captions
        # An opt-out may have come between the transcription and this moment.
        if callback is None or self.transcript.dropped(utterance.user_id):
            return
        name = self._name(utterance.user_id)
        # The utterance ended at this monotonic instant (the loop's clock).
        ended_at = self.recorder.started_at + utterance.end_s
        try:
            callback([CaptionLine(s.start, s.user_id, name, s.text, ended_at) for s in segments])
        except Exception:  # a caption failure never affects the recording
            log.exception("captions of meeting %s failed", self.meeting_id)

    def listen_captions(self, callback: Callable[[Sequence[CaptionLine]], None] | None) -> None:
        """Hand every transcribed utterance's lines to ``callback`` (on the event loop)."""
        self._captions = callback

    def _name(self, user_id: int) -> str:
        name = self._display_name(user_id) if self._display_name else None
        return name or str(user_id)

    def speakers(self) -> dict[int, str]:
        return {uid: self._name(uid) for uid in self.recorder.track_paths()}

    def backlog(self) -> Backlog:
        """Speech not transcribed yet: queued, in flight, and still being spoken."""
        queued = self.queue.backlog(self.meeting_id)
        return dataclasses.replace(queued, speech_s=queued.speech_s + self.cutter.open_speech_s())

    def discard_user(self, user_id: int) -> None:
        self._opted_out.append(self._name(user_id))
        self.cutter.drop_user(user_id)
        self.queue.cancel_user(self.meeting_id, user_id)
        self.transcript.drop_user(user_id)
        self.recorder.opt_out(user_id, time.monotonic(), delete=True)

    def mark_reconnect(self, start: float, end: float) -> None:
        self.recorder.mark_reconnect(start, end)
        self.cutter.mark_reconnect()

    async def abandon(self) -> None:
        """Stop without notes (a resume that could not go on): tracks closed, the meeting
        left as it is in the index for :func:`finish_interrupted`."""
        self.cutter.close()
        self._ticker.cancel()
        try:
            await close_recorder(self.recorder)
        finally:
            self.queue.close_meeting(self.meeting_id)
            self.index.close()

    # -- /stopnotes -------------------------------------------------------------------------

    async def finish(self, progress: Callable[[str], Coroutine[Any, Any, None]]) -> NotesResult:
        """End the last utterances, wait for those still being transcribed, write the notes."""

        async def report(backlog: Backlog) -> None:
            await progress(f"Finishing the transcript: {speech_left(backlog)} of speech left…")

        self.cutter.close()
        try:
            await close_recorder(self.recorder)
            self._tell_failures()
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self.index.set_status(self.meeting_id, "transcribing", at=time.time())
            await self.queue.drain(self.meeting_id, report, every_s=BACKLOG_REPORT_S)
            self.queue.close_meeting(self.meeting_id)
            self._captions = None
            _fail_if_nothing(self.index, self.meeting_id, self.transcript)
            return await notes_for(
                self.settings,
                self.index,
                self.meeting_id,
                opted_out=sorted(set(self._opted_out)),
                holes=untranscribed(self.transcript.progress.failed),
            )
        except asyncio.CancelledError:
            # Shutdown's grace ran out: the tracks are closed and what was transcribed is
            # in the index; the history says why the notes are not there yet.
            self._ticker.cancel()
            self.index.set_status(
                self.meeting_id, "transcribing", at=time.time(), detail="interrupted by shutdown"
            )
            raise
        finally:
            self.queue.close_meeting(self.meeting_id)
            self.index.close()


class MeetingRecorderFactory:
    """Makes :class:`RecordedMeeting` objects for the bot (the production factory). All
    meetings share one transcription queue: one model, fair between them."""

    def __init__(
        self,
        settings: Settings,
        display_name: Callable[[int, int], str | None] | None = None,
        channel_name: Callable[[int], str | None] | None = None,
        queue: TranscriptionQueue | None = None,
    ) -> None:
        self.settings = settings
        self.display_name = display_name
        self.channel_name = channel_name
        self._queue = queue
        #: meetings this process made or took over: never "interrupted"
        self._mine: set[int] = set()

    @property
    def queue(self) -> TranscriptionQueue:
        if self._queue is None:
            self._queue = make_queue(self.settings)
        return self._queue

    def __call__(
        self,
        *,
        guild_id: int,
        voice_channel_id: int,
        text_channel_id: int,
        started_by: Member,
        opted_out: Sequence[str],
        language: str | None = None,
    ) -> RecordedMeeting:
        lookup = self.display_name
        meeting = RecordedMeeting(
            self.settings,
            guild_id=guild_id,
            voice_channel_id=voice_channel_id,
            started_by=started_by,
            queue=self.queue,
            language=language,
            display_name=(lambda uid: lookup(guild_id, uid)) if lookup else None,
            opted_out=opted_out,
            channel_name=self.channel_name(voice_channel_id) if self.channel_name else None,
            text_channel_id=text_channel_id,
        )
        self._mine.add(meeting.meeting_id)
        return meeting

    def search(self, guild_id: int, query: str, limit: int) -> list[SearchHit]:
        """``guild_id``'s transcript lines matching ``query``, from the session index."""
        index = MeetingIndex.open(self.settings.data_dir)
        try:
            return index.search(query, guild_id=guild_id, limit=limit)
        finally:
            index.close()

    # -- restart recovery ----------------------------------------------------------------

    def interrupted(self) -> list[Interrupted]:
        """Meetings a previous process left ``recording`` or ``transcribing``, oldest
        first; never one this process is recording."""
        index = MeetingIndex.open(self.settings.data_dir)
        try:
            rows = index.list_meetings("recording") + index.list_meetings("transcribing")
        finally:
            index.close()
        return [
            Interrupted(
                meeting_id=m.id,
                guild_id=m.guild_id,
                voice_channel_id=m.channel_id,
                text_channel_id=m.text_channel_id,
                started_by=m.started_by,
                status=m.status,
                started_at=m.started_at,
                alive_at=m.alive_at if m.alive_at is not None else m.started_at,
            )
            for m in sorted(rows, key=lambda m: (m.started_at, m.id))
            if m.id not in self._mine
        ]

    async def resume(self, meeting: Interrupted, *, opted_out: Sequence[str]) -> RecordedMeeting:
        """Continue an interrupted meeting (see :meth:`RecordedMeeting.continue_after_restart`)."""
        lookup = self.display_name
        guild_id = meeting.guild_id
        starter = Member(
            meeting.started_by,
            (lookup(guild_id, meeting.started_by) if lookup else None) or str(meeting.started_by),
        )
        recorded = RecordedMeeting(
            self.settings,
            guild_id=guild_id,
            voice_channel_id=meeting.voice_channel_id,
            started_by=starter,
            queue=self.queue,
            display_name=(lambda uid: lookup(guild_id, uid)) if lookup else None,
            opted_out=opted_out,
            resume=meeting.meeting_id,
        )
        self._mine.add(recorded.meeting_id)
        try:
            await recorded.continue_after_restart()
        except BaseException:
            with contextlib.suppress(Exception):
                await recorded.abandon()
            raise
        return recorded

    async def finish_interrupted(
        self,
        meeting: Interrupted,
        why: str,
        progress: Callable[[str], Coroutine[Any, Any, None]],
    ) -> NotesResult:
        """The notes of what an interrupted meeting recorded (see :func:`finish_interrupted`)."""
        self._mine.add(meeting.meeting_id)
        return await finish_interrupted(self.settings, self.queue, meeting, why, progress)

    def close(self) -> None:
        """Stop the transcription worker."""
        if self._queue is not None:
            self._queue.close()


__all__ = [
    "MeetingRecorderFactory",
    "RecordedMeeting",
    "TimelineEvent",
    "missing_spans",
    "notes_for",
    "retranscribe",
]
