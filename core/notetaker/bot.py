"""The bot's behaviour, library-agnostic: every backend routes its slash commands here.

A backend supplies a :class:`Platform` (voice sessions, messages, nicknames) and turns
each interaction into a :class:`~notetaker.commands.CommandContext`; everything users
see — permissions, consent, replies, errors — is decided here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from notetaker.autorecord import AutoChannel, AutoRecorder, AutoRecordPolicy, AutoRecordStore
from notetaker.commands import MESSAGE_LIMIT, CommandContext, Member
from notetaker.config import Settings
from notetaker.consent import ConsentStore, OptOutFilter
from notetaker.errors import NotetakerError, PermissionDenied, VoiceStopped
from notetaker.live.captions import CaptionLine, CaptionPoster, stop_captions
from notetaker.live.language import parse_language
from notetaker.live.queue import Backlog
from notetaker.recorder.search import SearchHit, match_expression
from notetaker.recovery import Decision, Interrupted, RecoveryPolicy, decide
from notetaker.search_reply import REPLY_HITS, search_reply
from notetaker.session import Reconnected, Resumed, StateChanged, Stopped, VoiceSession, VoiceState
from notetaker.sink import AudioSink

log = logging.getLogger(__name__)

#: States a connection goes through between a drop and its recovery.
_RECOVERING = frozenset({VoiceState.RESUMING, VoiceState.RECONNECTING, VoiceState.WAITING_FOR_MOVE})

#: Interaction tokens last 15 minutes; later progress goes to the channel as messages.
FOLLOWUP_WINDOW_S = 14 * 60
#: How long the notes wait for the last captions to go out.
CAPTIONS_DRAIN_S = 10.0


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """An optional option of a slash command. ``kind`` is ``string`` or ``boolean``;
    ``max_length`` bounds a string option's length."""

    name: str
    kind: Literal["string", "boolean"]
    description: str
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A slash command every backend registers, from this one table."""

    name: str
    description: str
    options: tuple[OptionSpec, ...] = ()


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("joinvoice", "Join your voice channel"),
    CommandSpec(
        "startnotes",
        "Start recording meeting notes in your voice channel",
        (
            OptionSpec("captions", "boolean", "Post live captions in a thread while recording"),
            OptionSpec(
                "language",
                "string",
                "Spoken language: a code such as en or de, or auto to detect it per speaker",
                max_length=16,
            ),
        ),
    ),
    CommandSpec("stopnotes", "Stop recording and post the meeting notes"),
    CommandSpec("leave", "Stop any recording and leave the voice channel"),
    CommandSpec("notesstatus", "Show whether notes are being taken, for how long, and who spoke"),
    CommandSpec(
        "notessearch",
        "Search what was said in this server's past meetings",
        (
            OptionSpec(
                "query",
                "string",
                'Words that must all appear; "a phrase" as said, budg* for a prefix',
                max_length=200,
            ),
        ),
    ),
    CommandSpec(
        "autorecord",
        "Record your voice channel whenever people meet in it",
        (
            OptionSpec(
                "mode",
                "string",
                "on or off; leave it out to see which channels are recorded automatically",
                max_length=8,
            ),
        ),
    ),
    CommandSpec("optout", "Exclude yourself from recordings in this server"),
    CommandSpec("optin", "Allow yourself to be recorded again in this server"),
)


class Platform(ABC):
    """What a backend gives the bot besides command contexts."""

    @abstractmethod
    def open_voice(self, guild_id: int) -> VoiceSession:
        """A new, unconnected voice session for ``guild_id`` on the configured transport."""

    @abstractmethod
    async def send_message(
        self, channel_id: int, text: str, files: Sequence[Path] = ()
    ) -> int | None:
        """Post in a text channel or thread; the new message's id (None if unknown).

        Raises :class:`~notetaker.errors.RateLimited` when Discord keeps answering 429.
        """

    @abstractmethod
    async def edit_message(self, channel_id: int, message_id: int, text: str) -> None:
        """Replace the text of one of the bot's messages."""

    @abstractmethod
    async def create_thread(self, channel_id: int, message_id: int, name: str) -> int:
        """Start a public thread from a message; returns the thread's id, which
        :meth:`send_message` accepts as a channel id. Raises NotetakerError if it cannot."""

    @abstractmethod
    async def set_nickname(self, guild_id: int, nickname: str | None) -> bool:
        """Set the bot's nickname (None: reset). False if it lacks the permission."""

    @abstractmethod
    def display_name(self, guild_id: int, user_id: int) -> str:
        """The member's name as shown in the guild right now."""

    def channel_name(self, channel_id: int) -> str | None:
        """A channel's name, for display only (never for paths); None if unknown."""
        return None

    def voice_members(self, guild_id: int, channel_id: int) -> list[int] | None:
        """Who (other than the bot) is in a voice channel now, from the library's cache;
        None if the channel cannot be seen."""
        return None


@dataclass(frozen=True)
class NotesResult:
    """What finishing a meeting produced."""

    markdown: str
    summary: str
    files: tuple[Path, ...]


class ActiveMeeting(Protocol):
    """A meeting being recorded (implemented by :mod:`notetaker.meeting`)."""

    meeting_id: int
    started_by: Member
    started_at: float  #: time.time() at start
    sink: AudioSink

    def speakers(self) -> dict[int, str]:
        """user id -> display name of everyone recorded so far."""

    def discard_user(self, user_id: int) -> None:
        """Delete what was captured of ``user_id`` in this meeting."""

    def mark_reconnect(self, start: float, end: float) -> None:
        """The voice connection was down between these meeting-clock seconds."""

    def listen_captions(self, callback: Callable[[Sequence[CaptionLine]], None] | None) -> None:
        """Hand each transcribed utterance's lines to ``callback``, on the event loop."""

    def backlog(self) -> Backlog:
        """Speech not transcribed yet."""

    def listen_failures(self, callback: Callable[[str], None] | None) -> None:
        """Hand ``callback`` a sentence for the channel when a speaker's track stops (a
        full disk), on the event loop."""

    async def finish(self, progress: Callable[[str], Coroutine[Any, Any, None]]) -> NotesResult:
        """Stop capture, finish the transcript, write the notes. ``progress`` gets short
        updates."""


class MeetingFactory(Protocol):
    def __call__(
        self,
        *,
        guild_id: int,
        voice_channel_id: int,
        text_channel_id: int,
        started_by: Member,
        opted_out: Sequence[str],
        language: str | None = None,
    ) -> ActiveMeeting: ...

    def interrupted(self) -> list[Interrupted]:
        """Meetings the last process left unfinished (see :mod:`notetaker.recovery`)."""
        ...

    async def resume(self, meeting: Interrupted, *, opted_out: Sequence[str]) -> ActiveMeeting:
        """Continue ``meeting``: same id, same tracks, same clock; the outage is marked."""
        ...

    async def finish_interrupted(
        self,
        meeting: Interrupted,
        why: str,
        progress: Callable[[str], Coroutine[Any, Any, None]],
    ) -> NotesResult:
        """Write the notes of what ``meeting`` recorded before it was interrupted."""
        ...

    def search(self, guild_id: int, query: str, limit: int) -> Sequence[SearchHit]:
        """Up to ``limit`` transcript lines of ``guild_id``'s meetings matching ``query``
        (:func:`notetaker.recorder.search.search`); blocking (the bot runs it on a thread)."""
        ...


@dataclass
class GuildState:
    session: VoiceSession | None = None
    meeting: ActiveMeeting | None = None
    text_channel_id: int | None = None
    excluded: set[int] = field(default_factory=set)
    watcher: asyncio.Task[None] | None = None
    renamed: bool = False
    captions: CaptionPoster | None = None
    captions_task: asyncio.Task[None] | None = None
    notices: set[asyncio.Task[None]] = field(default_factory=set)


class NotetakerBot:
    """Routes commands; holds per-guild voice sessions and meetings."""

    def __init__(
        self,
        platform: Platform,
        settings: Settings,
        *,
        consent: ConsentStore,
        meetings: MeetingFactory,
        autorecord: AutoRecordStore | None = None,
        bot_name: str = "notetaker",
    ) -> None:
        self.platform = platform
        self.settings = settings
        self.consent = consent
        self.meetings = meetings
        self.bot_name = bot_name
        self.guilds: dict[int, GuildState] = {}
        self.auto = AutoRecorder(
            autorecord if autorecord is not None else AutoRecordStore(":memory:"),
            AutoRecordPolicy(empty_grace_s=settings.autorecord_grace_s),
            start=self._auto_start,
            stop=self._auto_stop,
            members=platform.voice_members,
        )
        self._handlers: dict[str, Callable[[CommandContext, GuildState], Awaitable[None]]] = {
            "joinvoice": self._joinvoice,
            "startnotes": self._startnotes,
            "stopnotes": self._stopnotes,
            "leave": self._leave,
            "notesstatus": self._status,
            "notessearch": self._search,
            "autorecord": self._autorecord,
            "optout": self._optout,
            "optin": self._optin,
        }

    # -- entry point -------------------------------------------------------------------

    async def handle(self, ctx: CommandContext) -> None:
        """Run one command. Errors reach the user as a sentence, never a traceback."""
        handler = self._handlers.get(ctx.invocation.name)
        state = self.guilds.setdefault(ctx.guild_id, GuildState())
        try:
            if handler is None:
                await ctx.reply(f"I don't know /{ctx.invocation.name}.", ephemeral=True)
                return
            await handler(ctx, state)
        except PermissionDenied as exc:
            await ctx.reply(str(exc), ephemeral=True)
        except NotetakerError as exc:
            await ctx.reply(str(exc), ephemeral=True)
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("command /%s failed (ref %s)", ctx.invocation.name, ref)
            await ctx.reply(
                f"Something went wrong on my side (ref {ref}); the bot's log has the details.",
                ephemeral=True,
            )

    # -- permissions -------------------------------------------------------------------

    def may_control(self, member: Member) -> bool:
        """Allowed roles or permissions from the config; administrators always."""
        allowed_perms = set(self.settings.allowed_permissions) | {"administrator"}
        return bool(
            member.role_ids & set(self.settings.allowed_role_ids)
            or member.permissions & allowed_perms
        )

    def _require_control(self, ctx: CommandContext) -> None:
        if not self.may_control(ctx.member):
            raise PermissionDenied(
                f"You are not allowed to /{ctx.invocation.name}: it needs one of the roles or "
                "permissions the bot's operator configured "
                f"({', '.join(self.settings.allowed_permissions) or 'none'})."
            )

    # -- voice -------------------------------------------------------------------------

    async def _ensure_voice(self, ctx: CommandContext, state: GuildState) -> VoiceSession:
        if ctx.voice_channel_id is None:
            raise NotetakerError(
                f"Join a voice channel first, then run /{ctx.invocation.name} again."
            )
        return await self._voice_in(ctx.guild_id, ctx.voice_channel_id, ctx.channel_id, state)

    async def _voice_in(
        self, guild_id: int, voice_channel_id: int, text_channel_id: int, state: GuildState
    ) -> VoiceSession:
        """The guild's voice session, connected to ``voice_channel_id``."""
        session = state.session
        if session is not None and session.state is VoiceState.CONNECTED:
            if session.channel_id == voice_channel_id:
                return session
            await session.disconnect()
        if session is None or session.state in (VoiceState.STOPPED, VoiceState.DISCONNECTED):
            session = self.platform.open_voice(guild_id)
            state.session = session
        try:
            await session.connect(voice_channel_id)
        except VoiceStopped as exc:
            state.session = None
            raise NotetakerError(f"I could not join the voice channel: {exc.reason}") from exc
        state.text_channel_id = text_channel_id
        if state.watcher is None or state.watcher.done():
            state.watcher = asyncio.create_task(self._watch(guild_id, session))
        return session

    async def _watch(self, guild_id: int, session: VoiceSession) -> None:
        """Follow the voice session for the guild's meeting: mark reconnect gaps in the
        recording's timeline, and when the policy gives up, say why in the channel, save
        the notes of what was recorded and leave."""
        dropped_at: float | None = None
        async for event in session.events():
            state = self.guilds.get(guild_id)
            if state is None or state.session is not session:
                return
            if isinstance(event, StateChanged):
                if event.old is VoiceState.CONNECTED and event.new in _RECOVERING:
                    dropped_at = time.monotonic()
            elif isinstance(event, Resumed | Reconnected):
                if dropped_at is not None and state.meeting is not None:
                    state.meeting.mark_reconnect(dropped_at, time.monotonic())
                dropped_at = None
            elif isinstance(event, Stopped):
                try:
                    await self._lost(guild_id, state, event.reason)
                finally:
                    # Whatever the notes did, the guild gets a fresh session next time.
                    state.session = None
                    await session.disconnect(force=True)
                return

    async def _lost(self, guild_id: int, state: GuildState, reason: str) -> None:
        """The policy gave up: say why in the channel and save the notes of what was
        recorded. Nothing here may stop the session from being reset after it."""
        channel = state.text_channel_id
        if channel is None:
            return
        try:
            await self.platform.send_message(channel, f"Voice connection lost: {reason}")
        except NotetakerError as exc:  # the notes below matter more
            log.warning("could not tell the channel the voice was lost: %s", exc)
        if state.meeting is None:
            return
        try:
            await self._finish(guild_id, channel, state, None)
        except Exception:
            log.exception("the notes after a lost voice connection were not posted")

    # -- commands ----------------------------------------------------------------------

    async def _joinvoice(self, ctx: CommandContext, state: GuildState) -> None:
        await ctx.defer()
        session = await self._ensure_voice(ctx, state)
        await ctx.followup(f"Joined <#{session.channel_id}>. Use /startnotes to record.")

    async def _startnotes(self, ctx: CommandContext, state: GuildState) -> None:
        self._require_control(ctx)
        if state.meeting is not None:
            starter = state.meeting.started_by.display_name
            raise NotetakerError(f"Notes are already being taken (started by {starter}).")
        options = ctx.invocation.options
        language = parse_language(str(options.get("language") or self.settings.language))
        captions = bool(options.get("captions", self.settings.captions))
        await ctx.defer()
        session = await self._ensure_voice(ctx, state)
        meeting, extra = await self._begin(
            ctx.guild_id, ctx.channel_id, state, session, ctx.member, language, captions
        )
        await ctx.followup(
            f"Recording in <#{session.channel_id}> (meeting {meeting.meeting_id}{extra})."
        )

    async def _begin(
        self,
        guild_id: int,
        text_channel_id: int,
        state: GuildState,
        session: VoiceSession,
        starter: Member,
        language: str | None,
        captions: bool,
    ) -> tuple[ActiveMeeting, str]:
        """Announce, then start recording ``session``'s channel; returns the meeting and
        what to add to the "Recording in" line."""
        state.excluded = self.consent.opted_out(guild_id)
        # Announced before anything is captured: if the channel cannot be told, nothing
        # is recorded (the error reaches the member who asked).
        announcement = self.settings.consent_message.replace("{starter}", starter.display_name)
        announced = await self.platform.send_message(text_channel_id, announcement)
        meeting = self.meetings(
            guild_id=guild_id,
            voice_channel_id=session.channel_id or 0,
            text_channel_id=text_channel_id,
            started_by=starter,
            opted_out=[self.platform.display_name(guild_id, u) for u in sorted(state.excluded)],
            language=language,
        )
        self._attach(guild_id, text_channel_id, state, session, meeting)
        prefix = self.settings.recording_nickname_prefix
        if prefix:
            state.renamed = await self.platform.set_nickname(guild_id, prefix + self.bot_name)
        if captions:
            await self._start_captions(text_channel_id, announced, state, meeting)
        extra = f", in {language}" if language else ""
        extra += ", live captions in the thread" if state.captions is not None else ""
        return meeting, extra

    def _attach(
        self,
        guild_id: int,
        channel_id: int,
        state: GuildState,
        session: VoiceSession,
        meeting: ActiveMeeting,
    ) -> None:
        """Make ``meeting`` the guild's: its audio from ``session``, its failures told in
        ``channel_id``."""
        state.meeting = meeting
        session.set_sink(OptOutFilter(meeting.sink, state.excluded))

        def tell(text: str) -> None:
            # Called on the loop by the meeting; the post must not hold the recording up.
            task = asyncio.create_task(self._tell(guild_id, channel_id, text))
            state.notices.add(task)
            task.add_done_callback(state.notices.discard)

        meeting.listen_failures(tell)

    async def _tell(self, guild_id: int, channel_id: int, text: str) -> None:
        try:
            await self.platform.send_message(channel_id, text)
        except NotetakerError as exc:
            log.warning("could not tell guild %s: %s (%s)", guild_id, text, exc)

    async def _start_captions(
        self, channel_id: int, announced: int | None, state: GuildState, meeting: ActiveMeeting
    ) -> None:
        """A thread under the announcement, and a poster feeding it. If the thread cannot
        be made, the channel hears why; the recording goes on either way."""
        try:
            if announced is None:
                raise NotetakerError("the announcement's message id is unknown")
            thread = await self.platform.create_thread(
                channel_id, announced, f"Live captions — meeting {meeting.meeting_id}"
            )
        except NotetakerError as exc:
            log.warning("no caption thread for meeting %s: %s", meeting.meeting_id, exc)
            await self.platform.send_message(
                channel_id, f"Live captions are off for this meeting: {exc}"
            )
            return
        poster = CaptionPoster(self.platform, thread)
        state.captions = poster
        state.captions_task = asyncio.create_task(poster.run())
        meeting.listen_captions(poster.add)

    async def _finish(
        self, guild_id: int, channel_id: int, state: GuildState, ctx: CommandContext | None
    ) -> None:
        """Stop capture, produce the notes, post them in ``channel_id``. Progress goes to
        ``ctx`` as followups when there is one, else to the channel."""
        meeting = state.meeting
        assert meeting is not None
        if state.session is not None:
            state.session.set_sink(None)
        state.meeting = None
        self.auto.forget(guild_id)
        if state.renamed:
            await self.platform.set_nickname(guild_id, None)
            state.renamed = False

        stopped = time.monotonic()

        async def progress(text: str) -> None:
            # Followups need the interaction's token, which Discord expires after 15
            # minutes; a long transcription reports in the channel after that.
            if ctx is not None and time.monotonic() - stopped < FOLLOWUP_WINDOW_S:
                try:
                    await ctx.followup(text)
                    return
                except Exception as exc:  # a progress line is not worth failing the notes
                    log.info("progress followup failed (%s); posting instead", exc)
            await self.platform.send_message(channel_id, text)

        try:
            result = await meeting.finish(progress)
        except Exception as exc:
            await self._stop_captions(state)
            # The channel waits for notes: say why none are coming, and how to retry
            # once the cause is fixed (the recording stays on disk).
            if isinstance(exc, NotetakerError):
                log.error("notes for meeting %s failed: %s", meeting.meeting_id, exc)
                why = str(exc)
            else:  # a bug or the disk (an OSError writing the notes): the log has it
                ref = secrets.token_hex(4)
                log.exception("notes for meeting %s failed (ref %s)", meeting.meeting_id, ref)
                why = f"something went wrong on my side (ref {ref}; the bot's log has it)"
            await self.platform.send_message(
                channel_id,
                f"I could not produce the notes for meeting {meeting.meeting_id}: {why}. "
                f"The recording is kept; `notetaker transcribe {meeting.meeting_id}` "
                "retries once the cause is fixed.",
            )
            return
        await self._stop_captions(state)
        if len(result.markdown) <= MESSAGE_LIMIT:
            await self.platform.send_message(channel_id, result.markdown, result.files)
        else:
            await self.platform.send_message(
                channel_id, result.summary[:MESSAGE_LIMIT], result.files
            )

    async def shutdown(self, grace_s: float) -> list[int]:
        """The process is being stopped (SIGTERM/SIGINT): every recording guild is told,
        and its meeting gets ``grace_s`` to post its notes. Returns the ids of meetings
        whose notes did not finish in time: their tracks are closed and what was
        transcribed is in the index, to be finished at the next start or by
        ``notetaker transcribe``."""
        await self.auto.close()  # no meeting starts, nor stops on a timer, from here
        recording = [
            (guild_id, state, state.text_channel_id)
            for guild_id, state in self.guilds.items()
            if state.meeting is not None and state.text_channel_id is not None
        ]
        pending: dict[asyncio.Task[None], tuple[int, int, int]] = {}
        for guild_id, state, channel in recording:
            assert state.meeting is not None and channel is not None
            meeting_id = state.meeting.meeting_id
            try:
                await self.platform.send_message(
                    channel,
                    f"The bot is shutting down: recording of meeting {meeting_id} stops "
                    "now and its notes follow.",
                )
            except NotetakerError as exc:
                log.warning("could not tell guild %s about the shutdown: %s", guild_id, exc)
            task = asyncio.create_task(self._finish(guild_id, channel, state, None))
            pending[task] = (guild_id, channel, meeting_id)
        if not pending:
            return []
        _, late = await asyncio.wait(pending, timeout=grace_s)
        unfinished: list[int] = []
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            guild_id, channel, meeting_id = pending[task]
            unfinished.append(meeting_id)
            log.warning("notes of meeting %s did not finish before shutdown", meeting_id)
            try:
                await self.platform.send_message(
                    channel,
                    f"The notes of meeting {meeting_id} could not be finished before the bot "
                    "stopped; the recording is kept and they are finished when it starts "
                    f"again (`notetaker transcribe {meeting_id}` does it by hand).",
                )
            except NotetakerError as exc:
                log.warning("could not tell guild %s the notes are late: %s", guild_id, exc)
        for task in pending:
            if task not in late and not task.cancelled() and task.exception() is not None:
                log.error("notes at shutdown failed: %s", task.exception())
        return sorted(unfinished)

    # -- restart recovery ----------------------------------------------------------------

    async def recover(self, *, now: Callable[[], float] = time.time) -> list[Decision]:
        """Once the library is ready after a start: resume or finish every meeting the
        last process left unfinished (see :mod:`notetaker.recovery`). Returns what was
        decided, in the order of :meth:`MeetingFactory.interrupted`. A meeting that cannot
        be resumed (rejoining fails) is finished instead; nothing here raises."""
        policy = RecoveryPolicy(self.settings.resume_within_s)
        try:
            interrupted = self.meetings.interrupted()
        except NotetakerError as exc:
            log.error("cannot look for interrupted meetings: %s", exc)
            return []
        decisions: list[Decision] = []
        finishing: list[tuple[Interrupted, str]] = []
        for meeting in interrupted:
            members = self.platform.voice_members(meeting.guild_id, meeting.voice_channel_id)
            decision = decide(
                meeting,
                now=now(),
                members=None if members is None else len(members),
                policy=policy,
            )
            log.info(
                "meeting %s was interrupted: %s (%s)",
                meeting.meeting_id,
                decision.action,
                decision.why,
            )
            if decision.action == "resume":
                try:
                    await self._resume(meeting)
                except Exception as exc:
                    why = str(exc) if isinstance(exc, NotetakerError) else type(exc).__name__
                    if not isinstance(exc, NotetakerError):
                        log.exception("resuming meeting %s failed", meeting.meeting_id)
                    decision = Decision("finish", f"rejoining the voice channel failed: {why}")
            decisions.append(decision)
            if decision.action == "finish":
                finishing.append((meeting, decision.why))
        # Resumed meetings record again first; finishing may transcribe for a while.
        for meeting, why in finishing:
            await self._finish_interrupted(meeting, why)
        return decisions

    async def _resume(self, interrupted: Interrupted) -> None:
        guild_id = interrupted.guild_id
        state = self.guilds.setdefault(guild_id, GuildState())
        if state.meeting is not None:
            raise NotetakerError("another meeting is already being recorded there")
        if state.session is None or state.session.state in (
            VoiceState.STOPPED,
            VoiceState.DISCONNECTED,
        ):
            state.session = self.platform.open_voice(guild_id)
        session = state.session
        try:
            await session.connect(interrupted.voice_channel_id)
        except VoiceStopped as exc:
            state.session = None
            raise NotetakerError(exc.reason) from exc
        channel = interrupted.text_channel_id
        state.text_channel_id = channel
        if state.watcher is None or state.watcher.done():
            state.watcher = asyncio.create_task(self._watch(guild_id, session))
        state.excluded = self.consent.opted_out(guild_id)
        try:
            meeting = await self.meetings.resume(
                interrupted,
                opted_out=[self.platform.display_name(guild_id, u) for u in sorted(state.excluded)],
            )
        except BaseException:
            state.session = None
            await session.disconnect(force=True)
            raise
        if channel is not None:
            self._attach(guild_id, channel, state, session, meeting)
        else:
            state.meeting = meeting
            session.set_sink(OptOutFilter(meeting.sink, state.excluded))
        prefix = self.settings.recording_nickname_prefix
        if prefix:
            state.renamed = await self.platform.set_nickname(guild_id, prefix + self.bot_name)
        if channel is not None:
            await self._tell(
                guild_id,
                channel,
                f"The bot restarted: recording of meeting {interrupted.meeting_id} goes on in "
                f"<#{interrupted.voice_channel_id}>. The time it was away is marked in the "
                "notes as missing (bot restarted).",
            )

    async def _finish_interrupted(self, interrupted: Interrupted, why: str) -> None:
        meeting_id, channel = interrupted.meeting_id, interrupted.text_channel_id

        async def progress(text: str) -> None:
            if channel is not None:
                await self._tell(interrupted.guild_id, channel, text)

        if interrupted.status == "recording":
            await progress(
                f"The bot restarted, and meeting {meeting_id} does not go on: {why}. The "
                "notes of what was recorded follow."
            )
        else:
            await progress(f"The bot restarted: finishing the notes of meeting {meeting_id}.")
        try:
            result = await self.meetings.finish_interrupted(interrupted, why, progress)
        except Exception as exc:
            if isinstance(exc, NotetakerError):
                log.error("notes for interrupted meeting %s failed: %s", meeting_id, exc)
                reason = str(exc)
            else:
                ref = secrets.token_hex(4)
                log.exception("notes for interrupted meeting %s failed (ref %s)", meeting_id, ref)
                reason = f"something went wrong on my side (ref {ref}; the bot's log has it)"
            await progress(
                f"I could not produce the notes for meeting {meeting_id} after the bot "
                f"restarted: {reason}. The recording is kept; `notetaker transcribe "
                f"{meeting_id}` retries once the cause is fixed."
            )
            return
        if channel is None:
            log.warning(
                "notes of interrupted meeting %s are written, but no channel is known to "
                "post them in",
                meeting_id,
            )
            return
        text = result.markdown if len(result.markdown) <= MESSAGE_LIMIT else result.summary
        try:
            await self.platform.send_message(channel, text[:MESSAGE_LIMIT], result.files)
        except NotetakerError as exc:
            log.error("could not post the notes of meeting %s: %s", meeting_id, exc)

    async def _stop_captions(self, state: GuildState) -> None:
        """Post the last captions (within :data:`CAPTIONS_DRAIN_S`), then stop."""
        poster, task = state.captions, state.captions_task
        state.captions = state.captions_task = None
        if poster is not None and task is not None:
            await stop_captions(poster, task, CAPTIONS_DRAIN_S)

    async def _stopnotes(self, ctx: CommandContext, state: GuildState) -> None:
        self._require_control(ctx)
        if state.meeting is None:
            raise NotetakerError("No notes are being taken in this server.")
        await ctx.defer()
        meeting_id = state.meeting.meeting_id
        await ctx.followup(f"Stopped recording meeting {meeting_id}; finishing the notes.")
        await self._finish(ctx.guild_id, ctx.channel_id, state, ctx)

    async def _leave(self, ctx: CommandContext, state: GuildState) -> None:
        if state.meeting is not None:
            self._require_control(ctx)
            await ctx.defer()
            await self._finish(ctx.guild_id, ctx.channel_id, state, ctx)
        if state.session is None or state.session.state in (
            VoiceState.DISCONNECTED,
            VoiceState.STOPPED,
            VoiceState.IDLE,
        ):
            await ctx.reply("I'm not in a voice channel.", ephemeral=True)
            return
        await state.session.disconnect(force=True)
        state.session = None
        await ctx.reply("Left the voice channel.")

    def _auto_line(self, guild_id: int) -> str:
        channels = self.auto.store.channels(guild_id)
        if not channels:
            return "auto-record: off"
        return "auto-record: " + ", ".join(f"<#{c.voice_channel_id}>" for c in channels)

    async def _status(self, ctx: CommandContext, state: GuildState) -> None:
        session, meeting = state.session, state.meeting
        if session is None:
            await ctx.reply(
                "Not in a voice channel; no notes are being taken; "
                f"{self._auto_line(ctx.guild_id)}.",
                ephemeral=True,
            )
            return
        stats: dict[str, Any] = session.stats()
        parts = [f"Voice: {session.state.value}"]
        if session.channel_id:
            parts[0] += f" in <#{session.channel_id}>"
        parts.append(
            f"reconnects: {stats.get('reconnects', 0)}, resumes: {stats.get('resumes', 0)}"
        )
        parts.append(session.info.describe())
        if meeting is None:
            parts.append("no notes are being taken")
        else:
            minutes, seconds = divmod(int(time.time() - meeting.started_at), 60)
            names = ", ".join(sorted(meeting.speakers().values())) or "nobody yet"
            parts.append(
                f"recording meeting {meeting.meeting_id} for {minutes:02d}:{seconds:02d}, "
                f"started by {meeting.started_by.display_name}; speakers: {names}"
            )
            backlog = meeting.backlog()
            if backlog.speech_s >= 1:
                parts.append(f"{round(backlog.speech_s)} s of speech not transcribed yet")
        parts.append(self._auto_line(ctx.guild_id))
        await ctx.reply("; ".join(parts) + ".", ephemeral=True)

    async def _search(self, ctx: CommandContext, state: GuildState) -> None:
        # Everything said in the server's meetings: the same people who may record them.
        self._require_control(ctx)
        query = str(ctx.invocation.options.get("query") or "")
        match_expression(query)  # nothing to search for: say so before any work
        hits = await asyncio.to_thread(self.meetings.search, ctx.guild_id, query, REPLY_HITS + 1)
        await ctx.reply(
            search_reply(query, hits[:REPLY_HITS], more=len(hits) > REPLY_HITS), ephemeral=True
        )

    async def _autorecord(self, ctx: CommandContext, state: GuildState) -> None:
        self._require_control(ctx)
        mode = str(ctx.invocation.options.get("mode") or "").strip().lower()
        if not mode:
            await ctx.reply(self._auto_line(ctx.guild_id).capitalize() + ".", ephemeral=True)
            return
        if mode not in ("on", "off"):
            raise NotetakerError(f"/autorecord mode: is on or off, not {mode!r}.")
        channel = ctx.voice_channel_id
        if channel is None:
            raise NotetakerError(
                f"Join the voice channel to record automatically, then run /autorecord {mode}."
            )
        if mode == "off":
            if self.auto.store.disable(ctx.guild_id, channel):
                await ctx.reply(f"Auto-record is off for <#{channel}>.")
            else:
                await ctx.reply(f"<#{channel}> was not recorded automatically.", ephemeral=True)
            return
        self.auto.store.enable(AutoChannel(ctx.guild_id, channel, ctx.channel_id, ctx.member.id))
        # Said in the channel, not only to the member: everyone who meets there is told.
        await ctx.reply(
            f"Auto-record is on for <#{channel}>: when someone joins it while it is empty, "
            "I join and take notes, announced here; when it has been empty for "
            f"{self.settings.autorecord_grace_s:g} s, the notes are posted here. "
            "/startnotes records now; /autorecord off stops it."
        )

    def voice_state_changed(
        self, guild_id: int, user_id: int, before: int | None, after: int | None
    ) -> None:
        """A member (not a bot) moved between voice channels (None: out of voice); the
        library's voice states already say so. Called by the backend, on the loop."""
        state = self.guilds.get(guild_id)
        recording_in = None
        if state is not None and state.meeting is not None and state.session is not None:
            recording_in = state.session.channel_id
        self.auto.changed(guild_id, user_id, before, after, recording_in=recording_in)

    async def _auto_start(self, channel: AutoChannel) -> bool:
        state = self.guilds.setdefault(channel.guild_id, GuildState())
        if state.meeting is not None:
            return False
        starter = Member(
            channel.enabled_by, self.platform.display_name(channel.guild_id, channel.enabled_by)
        )
        try:
            session = await self._voice_in(
                channel.guild_id, channel.voice_channel_id, channel.text_channel_id, state
            )
            meeting, extra = await self._begin(
                channel.guild_id,
                channel.text_channel_id,
                state,
                session,
                starter,
                parse_language(self.settings.language),
                self.settings.captions,
            )
        except NotetakerError as exc:
            await self._tell(
                channel.guild_id,
                channel.text_channel_id,
                f"Auto-record could not start in <#{channel.voice_channel_id}>: {exc}",
            )
            return False
        await self._tell(
            channel.guild_id,
            channel.text_channel_id,
            f"Auto-record: recording <#{channel.voice_channel_id}> "
            f"(meeting {meeting.meeting_id}{extra}).",
        )
        return True

    async def _auto_stop(self, guild_id: int) -> None:
        state = self.guilds.get(guild_id)
        if state is None or state.meeting is None or state.text_channel_id is None:
            return
        channel = state.text_channel_id
        voice = state.session.channel_id if state.session is not None else None
        await self._tell(
            guild_id,
            channel,
            f"<#{voice}> has been empty for {self.settings.autorecord_grace_s:g} s; "
            f"finishing the notes of meeting {state.meeting.meeting_id}.",
        )
        await self._finish(guild_id, channel, state, None)
        if state.session is not None:
            await state.session.disconnect(force=True)
            state.session = None

    async def _optout(self, ctx: CommandContext, state: GuildState) -> None:
        user = ctx.member.id
        self.consent.set_opted_out(ctx.guild_id, user, True)
        state.excluded.add(user)
        deleted = ""
        if state.meeting is not None:
            state.meeting.discard_user(user)
            if state.captions is not None:
                state.captions.remove_user(user)
            deleted = " What was already recorded of you in this meeting has been deleted."
        await ctx.reply(
            "You are opted out: your voice is not recorded in this server from now on."
            + deleted
            + " Use /optin to undo.",
            ephemeral=True,
        )

    async def _optin(self, ctx: CommandContext, state: GuildState) -> None:
        self.consent.set_opted_out(ctx.guild_id, ctx.member.id, False)
        state.excluded.discard(ctx.member.id)
        await ctx.reply(
            "You are opted in: you will be recorded when notes are taken.", ephemeral=True
        )
