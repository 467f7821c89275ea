"""The ``notetaker`` command."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from notetaker import __version__, plugins
from notetaker.config import Settings, load_settings
from notetaker.errors import NotetakerError
from notetaker.logs import setup_logging

console = Console(highlight=False)


class _Errors(click.Group):
    """Turn notetaker's own errors into one clear line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NotetakerError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Errors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="notetaker")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML config file (default: $NOTETAKER_CONFIG, ./notetaker.toml, "
    "$XDG_CONFIG_HOME/notetaker/config.toml).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """notetaker: a self-hosted Discord voice note-taker.

    It joins a voice channel on /startnotes, records every speaker as a separate track,
    transcribes them and posts meeting notes. Settings come from a TOML file and
    NOTETAKER_* environment variables; see `notetaker config`.
    """
    ctx.obj = {"config_path": config_path}


def _settings(ctx: click.Context) -> Settings:
    settings = load_settings(ctx.obj["config_path"])
    setup_logging(settings.log_level, settings.log_format)
    return settings


@cli.command("plugins")
def plugins_cmd() -> None:
    """List installed plugins: backends (with their library versions), transcribers,
    note renderers, summarizers, and plugins that failed to load (with their error)."""
    found = plugins.load()
    rows: list[tuple[str, ...]] = [("kind", "name", "plugin", "wraps")]
    for spec in found.backends:
        rows.append(("backend", spec.name, found.backends.owner(spec.name), _versions(found, spec)))
    for tspec in found.transcribers:
        rows.append(
            (
                "transcriber",
                tspec.name,
                found.transcribers.owner(tspec.name),
                _versions(found, tspec),
            )
        )
    for rspec in found.renderers:
        rows.append(
            ("renderer", rspec.name, found.renderers.owner(rspec.name), f".{rspec.extension}")
        )
    for sspec in found.summarizers:
        rows.append(
            ("summarizer", sspec.name, found.summarizers.owner(sspec.name), sspec.description)
        )
    # Plain aligned text, not a rich table: it must not wrap or truncate in a pipe.
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[3])
    if not len(found.backends):
        console.print("No backend installed. Install one, e.g. `pip install ./backends/discordpy`.")
    for info in found.failed:
        console.print(
            f"[red]failed[/red] plugin {info.name!r} from {info.distribution} "
            f"{info.version}: {info.error}"
        )
    if found.failed:
        sys.exit(1)


@cli.command("config")
@click.pass_context
def config_cmd(ctx: click.Context) -> None:
    """Show the effective settings (token hidden) and the reconnect policy."""
    from notetaker.policy import ReconnectPolicy

    settings = _settings(ctx)
    table = Table(title="settings", show_header=False)
    for key, value in settings.public_dict().items():
        table.add_row(key, str(value))
    console.print(table)
    console.print(ReconnectPolicy.from_overrides(settings.policy).describe())


@cli.command("doctor")
@click.option(
    "--live/--no-live",
    default=True,
    help=(
        "Run the stack-check suite against a local simulator (seconds; needs the "
        "simulator and the harness: pip install ./simulator[media] ./harness)."
    ),
)
@click.option(
    "--token-check/--no-token-check",
    default=True,
    help="With a token set, check it and the intents against Discord (the token is never shown).",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show the checks' log lines (the engine's, the library's) on the screen too; "
    "without it they go to DATA_DIR/doctor.log.",
)
@click.pass_context
def doctor_cmd(ctx: click.Context, live: bool, token_check: bool, verbose: bool) -> None:
    """Check this installation: config, backend and library, libopus, davey, data dir, and
    what the backend and library meet on today's Discord (live, against the simulator).

    It prints one verdict line per check; exit status 1 if any check failed."""
    import asyncio

    from notetaker import doctor

    settings = _settings(ctx)
    log_path = None if verbose else _log_to_file(settings, "doctor.log")
    problems = 0

    def line(ok: bool | None, text: str) -> None:
        nonlocal problems
        problems += 0 if ok is not False else 1
        mark = {True: "[green]ok [/]", False: "[red]FAIL[/]", None: "[blue]note[/]"}[ok]
        console.print(f"{mark} {text}", soft_wrap=True)  # one line per verdict, for grep

    found = plugins.load()
    for info in found.failed:
        line(False, f"plugin {info.name} ({info.distribution}) failed to load: {info.error}")
    spec = found.backends.get(settings.backend)
    if spec is None:
        installed = ", ".join(found.backends.names()) or "none"
        line(False, f"backend {settings.backend!r} is not installed (installed: {installed})")
    else:
        libs = found.library_versions(spec)
        line(
            all(libs.values()),
            f"backend {spec.name}: " + ", ".join(f"{k} {v}" for k, v in libs.items()),
        )
    line(settings.transport in (spec.transports if spec else ()), f"transport {settings.transport}")
    for finding in doctor.native_libraries():
        line(finding.ok, finding.text)
    data = settings.data_dir
    try:
        data.mkdir(parents=True, exist_ok=True)
        writable = os.access(data, os.W_OK)
    except OSError:
        writable = False
    line(writable, f"data dir {data} {'is writable' if writable else 'is not writable'}")
    token = settings.token_value()
    line(token is not None, "bot token " + ("is set" if token else "is not set (NOTETAKER_TOKEN)"))
    if token is not None and token_check:
        for finding in asyncio.run(doctor.token_report(token)):
            line(finding.ok, finding.text)
    if live and spec is not None:
        console.print(
            f"live check: {spec.name} on transport {settings.transport} ...", soft_wrap=True
        )
        for finding in doctor.live_report(settings):
            line(finding.ok, finding.text)
    console.print("all checks passed" if not problems else f"{problems} problem(s) found")
    if log_path is not None:
        console.print(f"log of the checks: {log_path} (or run with -v)", soft_wrap=True)
    sys.exit(1 if problems else 0)


def _log_to_file(settings: Settings, name: str) -> Path | None:
    """Send the log (and Python warnings) to ``DATA_DIR/name`` instead of the screen, so
    that the screen shows verdicts only. Where the file cannot be written, only errors
    reach the screen."""
    logging.captureWarnings(True)
    path = Path(settings.data_dir) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        setup_logging(settings.log_level, settings.log_format, path=path)
    except OSError:
        setup_logging("ERROR", settings.log_format)
        return None
    return path


def _index(settings: Settings) -> Any:
    from notetaker.recorder.index import MeetingIndex

    return MeetingIndex.open(settings.data_dir)


@cli.command("run")
@click.pass_context
def run_cmd(ctx: click.Context) -> None:
    """Run the bot on the configured backend (needs NOTETAKER_TOKEN).

    Applies retention_days first, then logs in and serves the slash commands. While
    Discord cannot be reached it retries with backoff (one log line per try). A rejected
    token or privileged intent ends it with one sentence and exit status 2.

    SIGTERM or SIGINT (docker stop, Ctrl-C) shuts down gracefully: every recording
    server is told, meetings get shutdown_grace_s seconds to post their notes, tracks
    are closed, and the exit status is 0.
    """
    import asyncio
    import signal

    from notetaker.errors import ConfigError

    settings = _settings(ctx)
    token = settings.token_value()
    if not token:
        raise ConfigError("no bot token: set NOTETAKER_TOKEN (or token in the config file)")
    spec = plugins.load().backend(settings.backend)
    if settings.retention_days:
        import time

        index = _index(settings)
        removed = index.apply_retention(settings.retention_days, time.time())
        index.close()
        if removed:
            console.print(
                f"retention: deleted {len(removed)} meeting(s) older than "
                f"{settings.retention_days} days"
            )
    backend = spec.factory(settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.create_task(backend.start(token))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({runner, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if runner.done():
                runner.result()  # a StartupError ends the run here, as one sentence
                return
            console.print(
                f"shutting down: meetings get up to {settings.shutdown_grace_s:.0f} s "
                "to post their notes"
            )
            unfinished = await backend.shutdown(settings.shutdown_grace_s)
            if unfinished:
                listed = ", ".join(map(str, unfinished))
                console.print(f"notes not finished, kept for the next start: meeting {listed}")
        finally:
            stopping.cancel()
            await backend.close()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner

    console.print(f"notetaker {__version__} on {settings.backend} (transport {settings.transport})")
    asyncio.run(main())
    console.print("stopped")


@cli.command("meetings")
@click.option("--status", type=click.Choice(["recording", "transcribing", "done", "failed"]))
@click.pass_context
def meetings_cmd(ctx: click.Context, status: str | None) -> None:
    """List recorded meetings, newest first."""
    import datetime as dt

    index = _index(_settings(ctx))
    rows = index.list_meetings(status=status)
    if not rows:
        click.echo("no meetings")
    for m in rows:
        when = dt.datetime.fromtimestamp(m.started_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        length = f"{(m.stopped_at - m.started_at) / 60:.1f} min" if m.stopped_at else "-"
        click.echo(
            f"{m.id:>5}  {when} UTC  {length:>10}  {m.status:<12}  guild {m.guild_id} "
            f"channel {m.channel_id}"
        )
    index.close()


@cli.command("export")
@click.argument("meeting", type=int)
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to write into.",
)
@click.option("--no-mix", is_flag=True, help="Only copy the per-speaker tracks.")
@click.pass_context
def export_cmd(ctx: click.Context, meeting: int, out_dir: Path, no_mix: bool) -> None:
    """Write MEETING's mixed-down audio and every speaker's track to a folder.

    Tracks are named for their speakers in the order they joined
    (1-alice-<user id>.opus, 2-bob-<user id>.opus); the mix is meeting-<id>-mix.opus.
    """
    from notetaker.recorder.export import export_meeting

    index = _index(_settings(ctx))
    try:
        result = export_meeting(index, meeting, out_dir, mix=not no_mix)
    finally:
        index.close()
    if result.mix:
        click.echo(f"mix: {result.mix}")
    for path in sorted(result.tracks.values(), key=lambda p: int(p.name.split("-", 1)[0])):
        click.echo(f"track: {path}")
    for uid in result.missing:
        click.echo(f"track {uid}: file missing", err=True)


@cli.command("delete")
@click.argument("meeting", type=int)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete_cmd(ctx: click.Context, meeting: int, yes: bool) -> None:
    """Delete MEETING: its audio, notes and index rows."""
    from notetaker.errors import RecordingError

    index = _index(_settings(ctx))
    try:
        if not yes:
            click.confirm(f"Delete meeting {meeting} and all its audio?", abort=True)
        if not index.delete_meeting(meeting):
            raise RecordingError(f"no meeting {meeting}")
    finally:
        index.close()
    click.echo(f"deleted meeting {meeting}")


@cli.command("transcribe")
@click.argument("meeting", type=int)
@click.option(
    "--language",
    default=None,
    help="Spoken language code (en, de...) or auto; default: the config's `language`.",
)
@click.pass_context
def transcribe_cmd(ctx: click.Context, meeting: int, language: str | None) -> None:
    """Transcribe MEETING again from its tracks and write its notes.

    The tracks are cut into utterances the way the live path cuts them, and transcribed
    with the configured transcriber and model (set NOTETAKER_MODEL=large-v3 for a bigger
    one). The new transcript replaces the old one once it is complete; the progress bar
    counts seconds of speech.
    """
    import asyncio

    from rich.progress import Progress

    from notetaker.live.language import parse_language
    from notetaker.meeting import retranscribe

    settings = _settings(ctx)
    parse_language(language)  # a typo is an error before any work starts
    index = _index(settings)
    try:
        with Progress(console=console, transient=False) as bar:
            task = bar.add_task(f"meeting {meeting}", total=1.0)
            result = asyncio.run(
                retranscribe(
                    settings,
                    index,
                    meeting,
                    language=language,
                    progress=lambda f: bar.update(task, completed=f),
                )
            )
    finally:
        index.close()
    for path in result.files:
        click.echo(f"wrote {path}")


@cli.command("search")
@click.argument("query", nargs=-1, required=True)
@click.option("--guild", "guild_id", type=int, default=None, help="Only this server's meetings.")
@click.option("--speaker", default=None, help="Only lines of this speaker (name or user id).")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only meetings started on or after this date (YYYY-MM-DD, UTC).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="At most this many lines.",
)
@click.pass_context
def search_cmd(
    ctx: click.Context,
    query: tuple[str, ...],
    guild_id: int | None,
    speaker: str | None,
    since: Any,
    limit: int,
) -> None:
    """Find what was said in past meetings.

    Every word must appear in a line ("quoted phrases" as written, a trailing * for a
    prefix: budg*); best matches first. Prints the meeting, its date, the [mm:ss] of the
    line on the meeting's clock, the speaker and the line. Lines are searchable as soon
    as the live transcription writes them, while a meeting is still recording.
    """
    import datetime as dt

    from notetaker.notes.render import clock

    settings = _settings(ctx)
    since_ts = since.replace(tzinfo=dt.UTC).timestamp() if since is not None else None
    index = _index(settings)
    try:
        hits = index.search(
            " ".join(query), guild_id=guild_id, speaker=speaker, since=since_ts, limit=limit
        )
    finally:
        index.close()
    if not hits:
        click.echo("no matches")
        return
    for hit in hits:
        day = dt.datetime.fromtimestamp(hit.started_at, dt.UTC).strftime("%Y-%m-%d")
        where = f"#{hit.channel_name}" if hit.channel_name else f"guild {hit.guild_id}"
        who = hit.speaker or f"user {hit.user_id}"
        click.echo(
            f"meeting {hit.meeting_id:<4} {day}  {where}  [{clock(hit.start_s)}] {who}: {hit.text}"
        )


@cli.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.pass_context
def web_cmd(ctx: click.Context, host: str, port: int) -> None:
    """Serve the meeting page: meetings, each one's timeline, transcript and summary
    (click a line to hear it), and search. Read-only.

    Prints its address with an access token (new at every start); opening it signs the
    browser in. Meeting links the bot posts (web_base_url) open their meeting only.
    Needs the web extra: pip install 'notetaker[web]'.
    """
    from notetaker.errors import ConfigError

    try:
        import uvicorn

        from notetaker.web.app import Access, create_app
        from notetaker.web.auth import load_secret, new_token
    except ImportError as exc:
        raise ConfigError(
            f"notetaker web needs the web extra ({exc.name} is missing): "
            "pip install 'notetaker[web]'"
        ) from None
    settings = _settings(ctx)
    token = new_token()
    app = create_app(settings, Access(token, load_secret(settings.data_dir)))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - what the user chose
    click.echo(f"notetaker web: http://{shown}:{port}/?token={token}")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _versions(found: plugins.Plugins, spec: Any) -> str:
    return (
        ", ".join(
            f"{lib} {v or '(not installed)'}" for lib, v in found.library_versions(spec).items()
        )
        or "-"
    )


def main() -> None:
    cli(prog_name="notetaker")
