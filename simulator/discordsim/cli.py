"""``discordsim``: run the simulator standalone.

``discordsim serve --scenario NAME --participants FILE`` starts the REST API, the main
gateway and the voice servers on loopback, prints the bot token, the API base and how to
point a bot at them, and runs until Ctrl-C or its lifetime ends.
``discordsim scenarios`` lists the scenario table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from discordsim.scenarios import SCENARIOS
from discordsim.world import World


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="discordsim", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the simulator until Ctrl-C")
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
    sub.add_parser("scenarios", help="list the scenarios")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m discordsim`` and the ``discordsim`` script."""
    args = _parser().parse_args(argv)
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
    from discordsim.voice import VoiceServer, load_script

    world = World.default()
    sim: Any = None
    try:
        from discordsim.app import Simulator
    except ImportError:  # the voice side alone still works for a voice-only client
        pass
    else:
        sim = Simulator(world, host=args.host, port=args.port, lifetime=args.lifetime)
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
    ca_file = args.ca_file or Path(tempfile.gettempdir()) / "discordsim-ca-bundle.pem"
    voice.tls.write_bundle(ca_file)
    async with contextlib.AsyncExitStack() as stack:
        if sim is not None:
            await stack.enter_async_context(sim)
        await stack.enter_async_context(voice)
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
    print("discordsim stopped", file=sys.stderr)


def _print_banner(sim: Any, voice: Any, ca_file: Path, args: argparse.Namespace) -> None:
    bound_443 = voice.record.first("voice.listen_443", bound=True) is not None
    lines = [f"discordsim: scenario {voice.scenario.name!r}: {voice.scenario.description}"]
    if sim is not None:
        lines += [
            f"  bot token      {sim.token}",
            f"  API base       {sim.api_base}",
            f"  gateway        {sim.gateway_url}",
        ]
    else:
        lines.append("  (main side not available: voice servers only)")
    lines += [
        f"  voice endpoint {voice.endpoint}   (UDP {voice.udp_host}:{voice.udp_port})",
        f"  port 443       {'bound' if bound_443 else 'not bound'}",
        f"  guild          {voice.world.guild_id}  voice channel {voice.world.voice_channel.id}",
        f"  participants   {len(voice._pending_specs)} scripted",
        "",
        "Point a bot at it:",
        f"  1. start the bot process with SSL_CERT_FILE={ca_file}",
        "     (the voice gateway is wss:// with a test CA; aiohttp reads the variable when",
        "     it is imported, so set it in the environment, not from inside the bot)",
        "  2. set the library's API base before login: discord.http.Route.BASE (discord.py,",
        "     py-cord) or nextcord.http.Route.BASE to the API base above; discord.py also",
        "     needs DiscordWebSocket.DEFAULT_GATEWAY (discordsim.testing.<lib>.point_at does both)",
        "  3. log in with the bot token above",
        f"Stops by itself after {args.lifetime:.0f}s; Ctrl-C stops it now.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
