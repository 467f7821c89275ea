"""``discordsim``: run the simulator standalone, and drive it from another terminal.

``discordsim serve --scenario NAME --participants FILE`` starts the REST API, the main
gateway and the voice servers on loopback, prints the API base and how to point a bot at
them, and runs until Ctrl-C or its lifetime ends. With ``--state FILE`` it also writes
FILE (mode 0600: the bot token, the URLs, the CA file, the guild's ids and the control
API's address and secret) and removes it on exit; ``discordsim invoke``, ``messages``,
``say``, ``join``, ``leave`` and ``state`` read FILE to drive it (:mod:`discordsim.remote`).
The standalone guild has a member ``organiser`` with Manage Server, sitting in the voice
channel: ``invoke`` runs commands as them unless told ``--as`` someone else.
``discordsim scenarios`` lists the scenario table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from discordsim import remote
from discordsim.scenarios import SCENARIOS
from discordsim.world import World


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="discordsim",
        description="Discord in a box on loopback: run it (serve), and drive it from another "
        "terminal (invoke, messages, say, join, leave, state).",
        epilog="`discordsim COMMAND --help` tells more of each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the simulator until Ctrl-C",
        description="Run Discord in a box on loopback until Ctrl-C, SIGTERM or --lifetime.",
    )
    serve.add_argument("--scenario", default="modern", choices=sorted(SCENARIOS))
    serve.add_argument("--participants", type=Path, help="TOML script of scripted speakers")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    serve.add_argument("--port", type=int, default=0, help="REST/main gateway port (0: any)")
    serve.add_argument("--lifetime", type=float, default=3600.0, help="stop after N seconds")
    serve.add_argument(
        "--ca-file",
        type=Path,
        help="where to write the CA bundle for SSL_CERT_FILE (default: a temp file)",
    )
    serve.add_argument(
        "--listen-443",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bind the port-443 listener (default: as the scenario says; needs root)",
    )
    serve.add_argument(
        "--state",
        type=Path,
        nargs="?",
        const=remote.default_state_path(),
        metavar="FILE",
        help="write the state file that invoke/messages/say/join/leave read (mode 0600, "
        "removed on exit; without FILE: $DISCORDSIM_STATE, else ./discordsim-state.json); "
        "the CA bundle then goes beside it unless --ca-file says otherwise",
    )
    sub.add_parser("scenarios", help="list the scenarios")
    remote.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m discordsim`` and the ``discordsim`` script."""
    args = _parser().parse_args(argv)
    if args.command in remote.COMMANDS:
        return remote.main(args)
    if args.command == "scenarios":
        for name, sc in SCENARIOS.items():
            print(f"{name:20} {sc.description}")
        return 0
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args))
    except (OSError, ValueError, TypeError) as exc:  # bad script, busy port, bad host
        print(f"discordsim: error: {exc}", file=sys.stderr)
        return 2
    return 0


async def serve(args: argparse.Namespace) -> None:
    """Run everything until a signal or the lifetime ends."""
    from discordsim.control import (
        PREFIX,
        ControlAPI,
        add_organiser,
        remove_state,
        state_document,
        write_state,
    )
    from discordsim.voice import VoiceServer, load_script

    world = World.default()
    # Before anyone connects: the bot then finds the organiser in the call in GUILD_CREATE.
    organiser = add_organiser(world)
    sim: Any = None
    try:
        from discordsim.app import Simulator
    except ImportError:  # the voice side alone still works for a voice-only client
        pass
    else:
        sim = Simulator(world, host=args.host, port=args.port, lifetime=args.lifetime)
    state: Path | None = args.state
    if state is not None:
        if sim is None:
            raise ValueError("--state needs the main side (discordsim.app), which is missing")
        _check_state_free(state)
    voice = VoiceServer(
        world,
        args.scenario,
        record=sim.record if sim is not None else None,
        host=args.host,
        listen_443=args.listen_443,
        max_lifetime_s=args.lifetime,
    )
    if args.participants is not None:
        for spec in load_script(args.participants):
            voice.add_participant(spec)
    secret = secrets.token_urlsafe(32)
    if sim is not None:
        sim.mount(PREFIX, ControlAPI(sim, voice, secret, organiser).app())
    # Beside the state file, so that two simulators never share (and overwrite) one CA.
    ca_default = Path(tempfile.gettempdir()) / "discordsim-ca-bundle.pem"
    if state is not None:
        ca_default = state.with_name(state.stem + ".ca.pem")
    # Absolute: the bot that reads it from the state file may run in another directory.
    ca_file = (args.ca_file or ca_default).absolute()
    voice.tls.write_bundle(ca_file)
    async with contextlib.AsyncExitStack() as stack:
        if sim is not None:
            await stack.enter_async_context(sim)
        await stack.enter_async_context(voice)
        try:
            if state is not None:
                # Written once everything listens: a reader that finds it can connect.
                doc = state_document(
                    sim, voice, secret=secret, ca_file=ca_file, organiser=organiser
                )
                write_state(state, doc)
            _print_banner(sim, voice, ca_file, args)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(voice.stopped.wait())]
            if sim is not None:
                waits.append(asyncio.create_task(sim.stopped.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
        finally:
            if state is not None:
                remove_state(state, secret)
                if args.ca_file is None:
                    with contextlib.suppress(OSError):
                        ca_file.unlink()
    print("discordsim stopped", file=sys.stderr)


def _check_state_free(path: Path) -> None:
    """Refuse a state file that a running simulator still owns: its clients would be
    pointed at this one mid-session. A file left by a dead one is simply replaced."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    pid = old.get("pid") if isinstance(old, dict) else None
    if isinstance(pid, int) and pid != os.getpid() and remote._alive(pid):
        raise ValueError(
            f"{path} belongs to a simulator that is still running (pid {pid}); "
            "stop it or give another --state"
        )


def _print_banner(sim: Any, voice: Any, ca_file: Path, args: argparse.Namespace) -> None:
    bound_443 = voice.record.first("voice.listen_443", bound=True) is not None
    w = voice.world
    lines = [f"discordsim: scenario {voice.scenario.name!r}: {voice.scenario.description}"]
    if sim is not None:
        # With a state file the token stays in it (0600), out of terminals and logs.
        token = "in the state file" if args.state is not None else sim.token
        lines += [
            f"  bot token      {token}",
            f"  API base       {sim.api_base}",
            f"  gateway        {sim.gateway_url}",
        ]
    else:
        lines.append("  (main side not available: voice servers only)")
    lines += [
        f"  voice endpoint {voice.endpoint}   (UDP {voice.udp_host}:{voice.udp_port})",
        f"  port 443       {'bound' if bound_443 else 'not bound'}",
        f"  guild          {w.guild_id}  voice channel {w.voice_channel.id}",
        f"  members        {', '.join(u.name for u in w.users.values() if not u.bot)}"
        f"  (organiser: Manage Server, in {w.voice_channel.name})",
        f"  participants   {len(voice.pending_participants)} scripted",
    ]
    if args.state is not None:
        lines += [
            f"  state file     {args.state}",
            "",
            "Drive it from another terminal (add --state FILE unless it is the default):",
            "  python -m discordsim invoke startnotes     # as the organiser; --as USER",
            "  python -m discordsim say alice speech.wav  # alice speaks in the voice channel",
            "  python -m discordsim messages              # what the bot posted",
        ]
    lines += [
        "",
        "Point a bot at it:",
        f"  1. start the bot process with SSL_CERT_FILE={ca_file}",
        "     (the voice gateway is wss:// with a test CA; aiohttp reads the variable when",
        "     it is imported, so set it in the environment, not from inside the bot)",
        "  2. set the library's API base before login: discord.http.Route.BASE (discord.py,",
        "     py-cord), nextcord.http.Route.BASE or disnake.http.Route.BASE to the API base",
        "     above; discord.py also needs DiscordWebSocket.DEFAULT_GATEWAY",
        "     (discordsim.testing.<lib>.point_at does both)",
        "  3. log in with the bot token"
        + (" (`discordsim state token`)" if args.state else " above"),
        f"Stops by itself after {args.lifetime:.0f}s; Ctrl-C stops it now.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
