"""Drive a running ``discordsim serve --state FILE`` from another terminal (or a test).

``discordsim invoke``, ``messages``, ``say``, ``join``, ``leave`` and ``state`` read the
state file that ``serve --state`` wrote and call its control API
(:mod:`discordsim.control`). :class:`Remote` is the same thing for Python::

    async with Remote.load(Path("sim.json")) as sim:
        run = await sim.invoke("startnotes", options={"captions": "true"}, wait_s=15)
        print(await sim.responses(run["id"], wait_s=10))

Exit codes of the subcommands: 0 done, 1 refused (no such state file, the simulator is
not running, no bot connected, an unknown command or member, no answer in time...),
2 usage. Every refusal is one sentence on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from discordsim.control import PREFIX, STATE_VERSION

#: The subcommands this module runs.
COMMANDS = ("invoke", "messages", "say", "join", "leave", "state")
#: State values that ``discordsim state`` prints only when asked for by name.
SECRET_KEYS = frozenset({"token", "control_secret"})


def default_state_path() -> Path:
    """``$DISCORDSIM_STATE``, else ``discordsim-state.json`` in the current directory."""
    return Path(os.environ.get("DISCORDSIM_STATE") or "discordsim-state.json")


class RemoteError(Exception):
    """A refusal, as one sentence for the user (the subcommands exit 1 with it)."""


def read_state(path: Path) -> dict[str, Any]:
    """The state file at ``path``, checked: it exists, is a state file of this version,
    and the process that wrote it is still running."""
    hint = f"start one with `python -m discordsim serve --state {path}`"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RemoteError(
            f"there is no state file {path}: no simulator is running there ({hint})"
        ) from None
    except OSError as exc:
        raise RemoteError(f"cannot read the state file {path}: {exc.strerror}") from None
    try:
        state = json.loads(text)
    except ValueError:
        state = None
    if not isinstance(state, dict) or "control_url" not in state:
        raise RemoteError(f"{path} is not a discordsim state file")
    if state.get("version") != STATE_VERSION:
        raise RemoteError(
            f"{path} was written by another discordsim (state version {state.get('version')}, "
            f"this one reads {STATE_VERSION})"
        )
    pid = state.get("pid")
    if isinstance(pid, int) and not _alive(pid):
        raise RemoteError(
            f"{path} is stale: the simulator that wrote it (pid {pid}) is not running; {hint}"
        )
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Remote:
    """A client of one running simulator's control API (use as an async context manager)."""

    def __init__(self, state: dict[str, Any], path: Path | None = None) -> None:
        self.state = state
        self.path = path
        self.url = str(state["control_url"])
        self._headers = {"Authorization": f"Bearer {state['control_secret']}"}
        self._http: aiohttp.ClientSession | None = None

    @classmethod
    def load(cls, path: Path) -> Remote:
        """From a state file; :class:`RemoteError` if it is missing or stale."""
        return cls(read_state(path), path)

    async def __aenter__(self) -> Remote:
        self._http = aiohttp.ClientSession(headers=self._headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _call(
        self,
        method: str,
        route: str,
        *,
        wait_s: float = 0.0,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Any:
        assert self._http is not None, "use Remote as `async with`"
        # A long poll holds the request up to wait_s; beyond that, a silent simulator is
        # a dead one.
        timeout = aiohttp.ClientTimeout(total=wait_s + 30.0)
        try:
            async with self._http.request(
                method,
                self.url + route,
                json=json_body,
                params=params,
                data=data,
                timeout=timeout,
            ) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if resp.status >= 400:
                    sentence = body.get("error") if isinstance(body, dict) else None
                    raise RemoteError(sentence or f"the simulator answered HTTP {resp.status}")
                return body
        except aiohttp.ClientConnectionError:
            where = f" (state file {self.path})" if self.path else ""
            raise RemoteError(
                f"the simulator at {self.url.removesuffix(PREFIX)} is not answering{where}; "
                "is `discordsim serve` still running?"
            ) from None
        except TimeoutError:
            raise RemoteError(f"the simulator at {self.url} did not answer in time") from None

    async def status(self) -> dict[str, Any]:
        """``scenario``, ``bot_connected``, ``bot_in_voice``, ``commands``, ``members``
        and ``in_voice`` (the members in the voice channel)."""
        result: dict[str, Any] = await self._call("GET", "/status")
        return result

    async def invoke(
        self,
        command: str,
        *,
        user: str | None = None,
        options: dict[str, object] | None = None,
        channel: str | None = None,
        wait_s: float = 15.0,
    ) -> dict[str, Any]:
        """Run ``/command`` as ``user`` (default: the organiser); waits up to ``wait_s``
        for the bot to be connected and to have registered it. Returns ``{"id", ...}``."""
        body = {
            "command": command,
            "user": user,
            "options": options or {},
            "channel": channel,
            "wait_s": wait_s,
        }
        result: dict[str, Any] = await self._call(
            "POST", "/interactions", json_body=body, wait_s=wait_s
        )
        return result

    async def responses(
        self, interaction_id: str, *, after: int = 0, wait_s: float = 0.0
    ) -> list[dict[str, Any]]:
        """The interaction's responses after the first ``after``; waits up to ``wait_s``
        for one if there are none yet."""
        params = {"after": str(after), "wait_s": str(wait_s)}
        got = await self._call(
            "GET", f"/interactions/{interaction_id}", params=params, wait_s=wait_s
        )
        result: list[dict[str, Any]] = got["responses"]
        return result

    async def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """What was posted, oldest first (in ``channel`` and its threads, if given)."""
        got = await self._call("GET", "/messages", params={"channel": channel} if channel else None)
        result: list[dict[str, Any]] = got["messages"]
        return result

    async def say(self, user: str, audio: Path) -> dict[str, Any]:
        """``user`` speaks the file (any format PyAV reads); returns the speech."""
        try:
            data = await asyncio.to_thread(audio.read_bytes)
        except OSError as exc:
            raise RemoteError(f"cannot read {audio}: {exc.strerror}") from None
        params = {"user": user, "filename": audio.name}
        result: dict[str, Any] = await self._call("POST", "/speeches", params=params, data=data)
        return result

    async def speech(self, speech_id: int, *, wait_s: float = 0.0) -> dict[str, Any]:
        """The speech; waits up to ``wait_s`` for it to be over."""
        params = {"wait_s": str(wait_s)}
        result: dict[str, Any] = await self._call(
            "GET", f"/speeches/{speech_id}", params=params, wait_s=wait_s
        )
        return result

    async def join(self, user: str) -> dict[str, Any]:
        """The member sits in the voice channel (silent)."""
        result: dict[str, Any] = await self._call("POST", "/join", json_body={"user": user})
        return result

    async def leave(self, user: str) -> dict[str, Any]:
        """The member leaves voice."""
        result: dict[str, Any] = await self._call("POST", "/leave", json_body={"user": user})
        return result


# --- the subcommands -----------------------------------------------------------------


def _para(text: str) -> str:
    """A description wrapped by hand: the parsers with examples keep their text raw."""
    return textwrap.fill(text, 78)


def add_parsers(sub: Any) -> None:
    """Add the subcommands to ``discordsim``'s argument parser."""
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state",
        type=Path,
        default=default_state_path(),
        metavar="FILE",
        help="the state file `serve --state` wrote (default: $DISCORDSIM_STATE, else "
        "./discordsim-state.json)",
    )
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "invoke",
        parents=[state],
        formatter_class=fmt,
        help="run a slash command as a member and print the bot's responses",
        description=_para(
            "Run a slash command the bot registered, as a member typing it in a "
            "text channel, and print every response the bot gives it (the deferral, the reply, "
            "followups) until it has answered."
        ),
        epilog="examples:\n"
        "  discordsim invoke startnotes\n"
        "  discordsim invoke startnotes --option captions=true --option language=de\n"
        "  discordsim invoke stopnotes --as alice --timeout 120\n\n"
        "exit status: 0 the bot answered, 1 refused or no answer in time, 2 usage",
    )
    # dest "name": "command" is the subcommand's own dest in discordsim's parser.
    p.add_argument("name", metavar="COMMAND", help="the command's name, with or without the slash")
    p.add_argument(
        "--as", dest="user", metavar="USER", help="the member who runs it (default: organiser)"
    )
    p.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option value, converted to the option's type (true/false, numbers, "
        "member and channel names); repeat for more",
    )
    p.add_argument("--channel", metavar="NAME", help="the text channel it is typed in")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="how long to wait for the bot's answer (default 60)",
    )
    p.add_argument(
        "--bot-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="how long to wait for the bot to connect and register the command (default 15)",
    )
    p.add_argument(
        "--linger",
        type=float,
        default=1.5,
        metavar="S",
        help="after the answer, how long to wait for more followups (default 1.5)",
    )
    p.add_argument("--json", action="store_true", help="print the responses as one JSON object")

    p = sub.add_parser(
        "messages",
        parents=[state],
        help="print what was posted (attachments by name)",
        description=_para(
            "Print every message the bot posted (channel messages, interaction "
            "replies and followups, thread messages), oldest first, with attachment names."
        ),
    )
    p.add_argument("--channel", metavar="NAME", help="only this channel (and its threads)")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = sub.add_parser(
        "say",
        parents=[state],
        formatter_class=fmt,
        help="make a member speak an audio file in the voice channel",
        description=_para(
            "Make a member speak an audio file (WAV, FLAC, Ogg, MP3...) in the voice "
            "channel. A member not in the call joins it first; one already speaking finishes "
            "first. Speech starts once the bot is in the voice channel."
        ),
        epilog="exit status: 0 said, 1 refused, not said in time or the member left, 2 usage",
    )
    p.add_argument("user", help="the member (created if the guild has none by that name)")
    p.add_argument("file", type=Path, help="the audio file")
    p.add_argument("--no-wait", action="store_true", help="return once the speech is queued")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="how long to wait for it to be said (default: its length plus 60 s)",
    )

    p = sub.add_parser(
        "join",
        parents=[state],
        help="put a member in the voice channel, silent",
        description=_para(
            "Put a member in the voice channel without speaking (as the organiser "
            "sits there from the start)."
        ),
    )
    p.add_argument("user", help="the member")

    p = sub.add_parser(
        "leave",
        parents=[state],
        help="take a member out of voice",
        description=_para(
            "Take a member out of voice: what they were saying stops, what they had "
            "still to say is dropped."
        ),
    )
    p.add_argument("user", help="the member")

    p = sub.add_parser(
        "state",
        parents=[state],
        formatter_class=fmt,
        help="print the running simulator's state file (or one value of it)",
        description=_para(
            "Print the state file, the token and the control secret hidden; with "
            "KEY, print that one value as it is (dotted for nested ones)."
        ),
        epilog="example:\n  export NOTETAKER_TOKEN=$(python -m discordsim state token)",
    )
    p.add_argument("key", nargs="?", help="e.g. token, api_base, gateway_url, ca_file, guild_id")


def main(args: argparse.Namespace) -> int:
    """Run one subcommand; its exit status."""
    try:
        if args.command == "state":
            return _state(args)
        return asyncio.run(_run(args))
    except RemoteError as exc:
        print(f"discordsim {args.command}: {exc}", file=sys.stderr)
        return 1
    except _UsageError as exc:
        print(f"discordsim {args.command}: error: {exc}", file=sys.stderr)
        return 2


class _UsageError(Exception):
    pass


async def _run(args: argparse.Namespace) -> int:
    options = _parse_options(args.option) if args.command == "invoke" else {}
    async with Remote.load(args.state) as remote:
        if args.command == "invoke":
            return await _invoke(remote, args, options)
        if args.command == "messages":
            return await _messages(remote, args)
        if args.command == "say":
            return await _say(remote, args)
        result = await (remote.join if args.command == "join" else remote.leave)(args.user)
        changed = result["joined"] if args.command == "join" else result["left"]
        where = remote.state["voice_channel"]["name"]
        if args.command == "join":
            print(f"{result['user']} {'joined' if changed else 'is already in'} {where}")
        else:
            print(f"{result['user']} {'left voice' if changed else 'was not in voice'}")
        return 0


def _parse_options(raw: list[str]) -> dict[str, object]:
    options: dict[str, object] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise _UsageError(f"--option takes NAME=VALUE, not {item!r}")
        options[name.strip()] = value
    return options


async def _invoke(remote: Remote, args: argparse.Namespace, options: dict[str, object]) -> int:
    run = await remote.invoke(
        args.name, user=args.user, options=options, channel=args.channel, wait_s=args.bot_timeout
    )
    if not args.json:
        print(f"/{run['command']} as {run['user']} in #{run['channel']}", flush=True)
    seen: list[dict[str, Any]] = []
    answered = False
    deadline = time.monotonic() + max(args.timeout, 0.0)
    while True:
        left = deadline - time.monotonic()
        if answered:
            wait = args.linger  # more followups may come right after the answer
        elif left <= 0:
            break
        else:
            wait = min(left, 30.0)
        got = await remote.responses(run["id"], after=len(seen), wait_s=max(wait, 0.0))
        if not got:
            if answered:
                break
            continue
        for r in got:
            seen.append(r)
            if not args.json:
                for line in _describe(r):
                    print(line, flush=True)
            if not r["deferred"]:
                answered = True
    if args.json:
        print(json.dumps({**run, "responses": seen}, indent=2))
    if answered:
        return 0
    what = "deferred it but did not answer" if seen else "did not answer"
    print(
        f"discordsim invoke: the bot {what} /{run['command']} within {args.timeout:g} s",
        file=sys.stderr,
    )
    return 1


_VIA = {
    "callback": "reply",
    "edit_original": "reply",
    "followup": "followup",
    "edit_followup": "followup (edited)",
    "delete_original": "reply deleted",
    "delete_followup": "followup deleted",
}


def _describe(r: dict[str, Any]) -> list[str]:
    """A response as a person reads it."""
    if r["deferred"]:
        return ["deferred: the bot is thinking" if r["type"] == 5 else "deferred"]
    label = _VIA.get(r["via"], r["via"])
    msg = r.get("message")
    if msg is None:
        return [label]
    return _message_lines(label, msg)


def _message_lines(label: str, msg: dict[str, Any]) -> list[str]:
    marks = [m for m in ("ephemeral" if msg["ephemeral"] else "",) if m]
    head = f"{label} ({', '.join(marks)})" if marks else label
    content = msg.get("readable", msg["content"]) or ""
    if msg["loading"] and not content:
        content = "(thinking…: a deferred reply not sent yet)"
    lines = content.splitlines() or [""]
    out = [f"{head}: {lines[0]}".rstrip()]
    out += [f"  {line}" for line in lines[1:]]
    for embed in msg["embeds"]:
        title = embed.get("title") or ""
        desc = (embed.get("description") or "").splitlines()
        out.append(f"  embed: {' — '.join(x for x in (title, desc[0] if desc else '') if x)}")
    if msg["attachments"]:
        out.append(f"  attachments: {', '.join(msg['attachments'])}")
    return out


async def _messages(remote: Remote, args: argparse.Namespace) -> int:
    shown = await remote.messages(args.channel)
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    if not shown:
        print("no messages" + (f" in #{args.channel.lstrip('#')}" if args.channel else ""))
    for m in shown:
        where = f"#{m['channel']}" + (f" > {m['thread']}" if m["thread"] else "")
        about = f" (/{m['interaction']})" if m["interaction"] else ""
        for line in _message_lines(f"{where}  {m['author']}{about}", m):
            print(line)
    return 0


async def _say(remote: Remote, args: argparse.Namespace) -> int:
    speech = await remote.say(args.user, args.file)
    name, file = speech["user"], speech["file"]
    print(
        f"{name} speaks {file} ({speech['seconds']:g} s) in {speech['voice_channel']}", flush=True
    )
    if not speech["bot_in_voice"]:
        print(f"  the bot is not in the voice channel yet: {name} speaks once it joins", flush=True)
    if args.no_wait:
        return 0
    timeout = args.timeout if args.timeout is not None else speech["seconds"] + 60.0
    deadline = time.monotonic() + max(timeout, 0.0)
    while speech["state"] not in ("done", "stopped"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RemoteError(
                f"{name} has not finished {file} within {timeout:g} s ({speech['state']})"
            )
        speech = await remote.speech(speech["id"], wait_s=min(left, 30.0))
    if speech["state"] == "stopped":
        raise RemoteError(f"{name} left voice before finishing {file}")
    print(f"{name} said {file} ({speech['frames_sent']} packets sent)")
    return 0


def _state(args: argparse.Namespace) -> int:
    state = read_state(args.state)
    if args.key is None:
        shown = {
            k: "(hidden: `discordsim state " + k + "` prints it)" if k in SECRET_KEYS else v
            for k, v in state.items()
        }
        print(json.dumps(shown, indent=2))
        return 0
    value: Any = state
    for part in args.key.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = ", ".join(state)
            raise RemoteError(f"the state file has no {args.key!r} (keys: {keys})")
        value = value[part]
    print(value if isinstance(value, str) else json.dumps(value))
    return 0
