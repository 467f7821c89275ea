"""The reconnect policy: one table from voice close code to action, plus backoff and budget.

Frozen data and a pure :meth:`ReconnectPolicy.decide`, in the style of songbird's retry
strategy. The :class:`notetaker.supervisor.Supervisor` asks it what to do after every
close or failed attempt; links and backends never decide on their own, so the behaviour
is identical for every library and transport.

The table follows shared/design/voice-protocol.md section 3, with these decisions:

* **4012 and 4016 stop** instead of starting a new session. Both answer what the client
  put in Select Protocol (the protocol, the encryption mode). A new session would send
  the same thing again and fail the same way, burning the budget and hiding the cause;
  the user needs to hear that the library's encryption mode is the problem.
* **4022 stops.** The design table says "like 4014"; the supervisor's brief makes it
  final (the call is over). A deployment that wants to wait for a move instead can
  override it: ``{"rules": {4022: "wait_for_move"}}``.
* **4004 stops**: the token is rejected; retrying the identical handshake cannot help.
* **1000 is done** (a normal close), codes below 4000 and a dropped transport (code
  ``None``) resume, unknown 4xxx codes start a new session within the budget.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from notetaker.errors import ConfigError


class Action(enum.Enum):
    """What the supervisor does next."""

    RESUME = "resume"  #: op 7 on a new WebSocket; same session, UDP kept
    #: session reset: force-disconnect, wait ``reset_wait``, op 4 again, Identify
    NEW_SESSION = "new_session"
    #: a fresh VOICE_SERVER_UPDATE is already here (failover, move): Identify with it, no op 4
    REIDENTIFY = "reidentify"
    #: 4014: wait ``move_grace`` seconds for a server update; none -> stop
    WAIT_FOR_MOVE = "wait_for_move"
    STOP = "stop"  #: give up; the reason is shown to the user
    DONE = "done"  #: a normal close (1000); nothing to recover


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: what a close code means and the sentence that explains it."""

    action: Action
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :meth:`ReconnectPolicy.decide`.

    ``delay``: seconds to wait before acting (the backoff; for WAIT_FOR_MOVE, the grace).
    ``reason``: for STOP, the user-facing sentence; for WAIT_FOR_MOVE, the sentence to
    stop with if no move comes; otherwise why this action was chosen (for logs).
    """

    action: Action
    delay: float
    reason: str
    code: int | None = None


_ENGINE_HINT = "use transport=engine, or upgrade the library"

#: The close-code table (voice-protocol.md section 3). Keys are close codes.
DEFAULT_RULES: Mapping[int, Rule] = MappingProxyType(
    {
        1000: Rule(Action.DONE, "The voice connection was closed normally (1000)."),
        1006: Rule(Action.RESUME, "The voice connection dropped (1006); resuming."),
        4001: Rule(Action.NEW_SESSION, "Voice gateway: unknown opcode (4001), a client bug."),
        4002: Rule(Action.NEW_SESSION, "Voice gateway: undecodable payload (4002), a client bug."),
        4003: Rule(Action.NEW_SESSION, "Voice gateway: not authenticated (4003), a client bug."),
        4004: Rule(
            Action.STOP,
            "Discord rejected the voice token (4004, authentication failed), so the bot "
            "left the call. Start the notes again; if it repeats, check the bot token and "
            "update the Discord library.",
        ),
        4005: Rule(
            Action.NEW_SESSION, "Voice gateway: already authenticated (4005), a client bug."
        ),
        4006: Rule(Action.NEW_SESSION, "The voice session is no longer valid (4006)."),
        4009: Rule(Action.NEW_SESSION, "The voice session timed out (4009)."),
        4011: Rule(Action.NEW_SESSION, "Discord could not find the voice server (4011)."),
        4012: Rule(
            Action.STOP,
            "Discord did not recognise the voice protocol this voice stack selected (4012, "
            "unknown protocol): its encryption/transport settings are not ones Discord "
            f"accepts, and retrying would send the same. Fix: {_ENGINE_HINT}.",
        ),
        4013: Rule(Action.RESUME, "Discord's voice server crashed (4013); resuming."),
        4014: Rule(
            Action.WAIT_FOR_MOVE,
            "The bot was disconnected from the voice channel (4014: kicked, or its "
            "connection to Discord dropped) and was not moved to another channel. "
            "Recording stopped.",
        ),
        4015: Rule(Action.RESUME, "The voice server crashed (4015); resuming."),
        4016: Rule(
            Action.STOP,
            "Discord rejected the voice encryption mode this voice stack selected (4016, "
            "unknown or discontinued encryption mode); retrying would pick the same mode. "
            f"Fix: {_ENGINE_HINT} to one that supports aead_xchacha20_poly1305_rtpsize.",
        ),
        4017: Rule(
            Action.STOP,
            "Discord requires DAVE end-to-end encryption for voice since 2026-03-02 and "
            "this voice stack has no DAVE (4017). Fix: use transport=engine, or a library "
            "version with DAVE support.",
        ),
        4020: Rule(Action.NEW_SESSION, "Voice gateway: bad request (4020), a client bug."),
        4021: Rule(
            Action.STOP,
            "Discord rate-limited the voice connection (4021), so the bot stopped "
            "reconnecting. Wait a few minutes, then start the notes again.",
        ),
        4022: Rule(
            Action.STOP,
            "Discord ended the call (4022: the channel was deleted or the call moved to "
            "another server). Recording stopped.",
        ),
    }
)

#: Codes below 4000 other than those in the table, and a dropped transport (None).
TRANSPORT_RULE = Rule(Action.RESUME, "The voice connection dropped; resuming.")
#: 4xxx (or any other) codes the table does not know.
UNKNOWN_RULE = Rule(Action.NEW_SESSION, "Unknown voice close code; starting a new session.")

_NUMBER_FIELDS = ("base_delay", "max_delay", "reset_wait", "move_grace", "stable_after")
_COUNT_FIELDS = ("max_attempts", "resume_limit")


def _code_text(code: int | None) -> str:
    return "none (the connection dropped)" if code is None else str(code)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """What to do after a voice connection closes. Identical for every backend.

    Defaults:

    * ``rules``: :data:`DEFAULT_RULES` (the table in voice-protocol.md section 3);
      codes not in it: :data:`TRANSPORT_RULE` below 4000, :data:`UNKNOWN_RULE` otherwise.
    * ``base_delay`` = 1.0 s and ``max_delay`` = 30.0 s: the n-th consecutive failure
      waits ``rng() * min(max_delay, base_delay * 2**n)`` (full jitter).
    * ``max_attempts`` = 6: consecutive failed attempts before giving up.
    * ``reset_wait`` = 1.0 s: pause between force-disconnect and rejoin in a session reset.
    * ``move_grace`` = 5.0 s: how long a 4014 waits for a move's server update.
    * ``resume_limit`` = 2: consecutive resumes before escalating to a new session.
    * ``stable_after`` = 10.0 s: a connection must stay up this long before the failure
      count starts again at zero; one that drops sooner counts as a failed attempt, so a
      server that accepts and drops at once exhausts the budget instead of looping forever.

    Build one from settings with :meth:`from_overrides`; print it with :meth:`describe`.
    """

    rules: Mapping[int, Rule] = field(default_factory=lambda: DEFAULT_RULES, hash=False)
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_attempts: int = 6
    reset_wait: float = 1.0
    move_grace: float = 5.0
    resume_limit: int = 2
    stable_after: float = 10.0

    def __post_init__(self) -> None:
        for name in _NUMBER_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"reconnect.{name} must be a number of seconds, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"reconnect.{name} must be >= 0 seconds, got {value!r}")
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"reconnect.{name} must be a whole number, not {value!r}")
        if self.max_attempts < 1:
            raise ConfigError(f"reconnect.max_attempts must be >= 1, got {self.max_attempts}")
        if self.resume_limit < 0:
            raise ConfigError(f"reconnect.resume_limit must be >= 0, got {self.resume_limit}")
        if self.max_delay < self.base_delay:
            raise ConfigError(
                f"reconnect.max_delay ({self.max_delay}) must be >= "
                f"reconnect.base_delay ({self.base_delay})"
            )
        for code, rule in self.rules.items():
            if isinstance(code, bool) or not isinstance(code, int):
                raise ConfigError(f"reconnect.rules: close code {code!r} is not an integer")
            if not isinstance(rule, Rule):
                raise ConfigError(f"reconnect.rules[{code}] must be a Rule, not {rule!r}")

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None = None) -> ReconnectPolicy:
        """The default policy with ``overrides`` applied (e.g. from the settings file).

        Keys are the field names. ``rules`` maps close codes (int or digit string) to an
        action name (``"wait_for_move"``) or to ``{"action": ..., "reason": ...}``; it
        amends the default table. Anything invalid raises :class:`ConfigError`.
        """
        base = cls()
        if not overrides:
            return base
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown reconnect setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        changes: dict[str, Any] = {k: v for k, v in overrides.items() if k != "rules"}
        if "rules" in overrides:
            changes["rules"] = _merge_rules(base.rules, overrides["rules"])
        return replace(base, **changes)

    # -- lookup -------------------------------------------------------------------------

    def rule_for(self, code: int | None) -> Rule:
        """The table row for ``code`` (None: the transport dropped without a close frame)."""
        if code is None:
            return TRANSPORT_RULE
        rule = self.rules.get(code)
        if rule is not None:
            return rule
        return TRANSPORT_RULE if code < 4000 else UNKNOWN_RULE

    def backoff_ceiling(self, failures: int) -> float:
        """Upper bound of the delay after ``failures`` consecutive failures."""
        try:
            return min(self.max_delay, math.ldexp(self.base_delay, max(0, failures)))
        except OverflowError:
            return self.max_delay

    # -- the decision -------------------------------------------------------------------

    def decide(
        self,
        code: int | None,
        *,
        attempt: int,
        consecutive_failures: int,
        rng: Callable[[], float],
        consecutive_resumes: int = 0,
        can_resume: bool = True,
        server_update: bool = False,
    ) -> Decision:
        """What to do after attempt ``attempt`` closed with ``code``. Pure.

        ``consecutive_failures``: attempts that failed in a row since the last time the
        session was connected (0 when a healthy connection just closed).
        ``consecutive_resumes``: resumes since the last new session.
        ``can_resume``: whether there is an established session to resume.
        ``server_update``: a fresh VOICE_SERVER_UPDATE has already arrived.
        ``rng`` returns a float in [0, 1) for the jitter; it is called at most once.
        """
        rule = self.rule_for(code)
        if rule.action in (Action.STOP, Action.DONE):
            return Decision(rule.action, 0.0, rule.reason, code)
        if consecutive_failures >= self.max_attempts:
            return Decision(
                Action.STOP,
                0.0,
                f"Gave up reconnecting to voice after {consecutive_failures} failed attempts "
                f"in a row (attempt {attempt}); the last close code was {_code_text(code)}. "
                f"{rule.reason}",
                code,
            )
        action, reason = rule.action, rule.reason
        if server_update and action in (Action.RESUME, Action.NEW_SESSION, Action.WAIT_FOR_MOVE):
            # The new token makes a resume fail and makes another op 4 unnecessary.
            action, reason = Action.REIDENTIFY, "A new voice server was assigned; identifying."
        elif action is Action.RESUME and not can_resume:
            action, reason = Action.NEW_SESSION, f"{reason} No session to resume; starting anew."
        elif action is Action.RESUME and consecutive_resumes >= self.resume_limit:
            action = Action.NEW_SESSION
            reason = f"{reason} Resumed {consecutive_resumes} times in a row; starting anew."
        if action is Action.WAIT_FOR_MOVE:
            return Decision(action, self.move_grace, reason, code)
        jitter = min(1.0, max(0.0, rng()))
        return Decision(action, jitter * self.backoff_ceiling(consecutive_failures), reason, code)

    # -- display ------------------------------------------------------------------------

    def describe(self) -> str:
        """A readable multi-line account of the policy, for ``notetaker doctor`` and logs."""
        lines = [
            "Reconnect policy",
            f"  backoff: full jitter, delay = random(0, min({self.max_delay:g} s, "
            f"{self.base_delay:g} s * 2^n)), n = consecutive failures",
            f"  budget: {self.max_attempts} consecutive failed attempts, then stop",
            f"  resume: at most {self.resume_limit} in a row, then a new session",
            f"  session reset: force-disconnect, wait {self.reset_wait:g} s, rejoin, identify",
            f"  move grace: {self.move_grace:g} s after 4014 for a server update",
            f"  stable after: {self.stable_after:g} s up before the failure count resets",
            "",
            f"  {'code':<6} {'action':<14} reason",
        ]
        for code in sorted(self.rules):
            rule = self.rules[code]
            lines.append(f"  {code:<6} {rule.action.value:<14} {rule.reason}")
        lines.append(f"  {'none':<6} {TRANSPORT_RULE.action.value:<14} {TRANSPORT_RULE.reason}")
        lines.append(f"  {'<4000':<6} {TRANSPORT_RULE.action.value:<14} (any other code)")
        lines.append(f"  {'other':<6} {UNKNOWN_RULE.action.value:<14} {UNKNOWN_RULE.reason}")
        return "\n".join(lines)


def _merge_rules(base: Mapping[int, Rule], raw: Any) -> Mapping[int, Rule]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"reconnect.rules must be a table of close code -> action, not {raw!r}")
    merged = dict(base)
    for key, value in raw.items():
        code = _parse_code(key)
        old = base.get(code)
        if isinstance(value, Rule):
            merged[code] = value
            continue
        if isinstance(value, str):
            action_name, reason = value, old.reason if old else ""
        elif isinstance(value, Mapping) and "action" in value:
            action_name = value["action"]
            reason = value.get("reason", old.reason if old else "")
        else:
            raise ConfigError(
                f"reconnect.rules[{key!r}] must be an action name or "
                f"{{action, reason}}, not {value!r}"
            )
        try:
            action = Action(str(action_name).lower())
        except ValueError:
            names = ", ".join(a.value for a in Action)
            raise ConfigError(
                f"reconnect.rules[{key!r}]: unknown action {action_name!r}; one of {names}"
            ) from None
        if not isinstance(reason, str):
            raise ConfigError(f"reconnect.rules[{key!r}].reason must be text")
        merged[code] = Rule(action, reason or f"Close code {code}: {action.value}.")
    return MappingProxyType(merged)


def _parse_code(key: Any) -> int:
    if isinstance(key, bool):
        raise ConfigError(f"reconnect.rules: {key!r} is not a close code")
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    raise ConfigError(f"reconnect.rules: {key!r} is not a close code")
