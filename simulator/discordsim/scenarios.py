"""Every server behaviour the simulator can switch on, as ONE named table.

A :class:`Scenario` is plain data. The voice gateway, the UDP relay and the scripted
participants read its fields; nothing anywhere branches on a scenario's *name*, so a new
behaviour is a new field plus a row here, and any row can be tweaked per test with
:func:`dataclasses.replace`. ``discordsim serve --scenario NAME`` picks a row; ``discordsim
scenarios`` lists them.

Facts marked UNCONFIRMED in shared/design/voice-protocol.md stay unconfirmed here: where a
row models them (the close code for discontinued modes, for instance) the docstring says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

#: The rtpsize AEAD modes Discord supports today, in the order real servers list them.
MODERN_MODES: tuple[str, ...] = ("aead_aes256_gcm_rtpsize", "aead_xchacha20_poly1305_rtpsize")

#: Modes Discord discontinued on 2024-11-18, still offered by the ``legacy-2024`` row.
DISCONTINUED_MODES: tuple[str, ...] = (
    "aead_aes256_gcm",
    "xsalsa20_poly1305_lite_rtpsize",
    "xsalsa20_poly1305_lite",
    "xsalsa20_poly1305_suffix",
    "xsalsa20_poly1305",
)


@dataclass(frozen=True)
class Scenario:
    """How the simulated Discord voice servers behave. Times are seconds."""

    name: str
    description: str
    #: Also advertise (and accept) the modes discontinued on 2024-11-18.
    allow_legacy_modes: bool = False
    #: Close code for Select Protocol with a mode that is not advertised (UNCONFIRMED: 4016).
    bad_mode_close: int = 4016
    #: Lowest voice gateway version accepted; lower (or no ``v``) is closed with 4006.
    min_version: int = 4
    #: Bind a second TLS listener on the endpoint host's port 443, where a library that
    #: strips ``:port`` from the endpoint ends up.
    listen_443: bool = False
    #: What the port-443 listener answers an Identify with; ``None`` means it serves the
    #: real voice gateway (as in 2024, when endpoints were on 443 and stripping was harmless).
    strip_port_close: int | None = 4006
    #: Identify must carry the latest token and session_id issued to the user, else 4006.
    #: When False, any token ever issued to the user is accepted (unknown tokens: 4004).
    enforce_latest_session: bool = False
    #: Close 4017 when Identify's ``max_dave_protocol_version`` is 0 or missing.
    require_dave: bool = False
    #: Highest DAVE protocol version the server negotiates (0: transport encryption only,
    #: as before DAVE launched in 2024-09). Every scripted participant is an MLS member.
    max_dave_version: int = 1
    #: How long the DAVE delivery service waits for op 23 before executing a transition.
    dave_transition_timeout_s: float = 2.0
    #: Scripted participants commit proposals (in-process, so they win every race). False
    #: leaves committing to the clients: their commits and Welcomes are what the group uses.
    dave_participants_commit: bool = True
    #: Hello's heartbeat interval in milliseconds (emulators use 13750).
    heartbeat_interval_ms: float = 13750.0
    #: Close 4009 when no heartbeat arrives for this many intervals.
    heartbeat_timeout_intervals: float = 3.0
    #: Seconds after the session goes live (op 4 sent): close 4015 once. Resume must work.
    crash_after_s: float | None = None
    #: Seconds after the session goes live: send a new VOICE_SERVER_UPDATE (new endpoint on
    #: a second listener, new token) through the main gateway, once.
    failover_after_s: float | None = None
    #: Close code for the old voice connection after a failover (``None``: leave it to the
    #: client, which should close it itself).
    failover_close_old: int | None = None
    #: Seconds after the session goes live: issue the user a newer voice session without
    #: telling the client (as when the dispatches of a move are missed), then drop the
    #: connection with 4015, once. A Resume then carries a stale token: 4006 with
    #: ``enforce_latest_session``.
    invalidate_after_s: float | None = None
    #: Seconds after the session goes live: close 4014 (kicked), once.
    kick_after_s: float | None = None
    #: Percentages applied to media the server forwards to the client.
    loss_pct: float = 0.0
    reorder_pct: float = 0.0
    dup_pct: float = 0.0
    #: Seed for the loss/reorder/duplicate draws, so a run can be repeated.
    seed: int = 0
    #: Delays before Ready and before Session Description.
    ready_delay_s: float = 0.0
    session_description_delay_s: float = 0.0
    #: SSRC written into IP discovery replies; None echoes the request's (some servers
    #: send 0 instead: field-behaviours.md L1).
    discovery_reply_ssrc: int | None = None
    #: Send Hello (op 8) only once the client's Identify or Resume arrives, not when the
    #: socket opens (field-behaviours.md L2).
    hello_after_identify: bool = False
    #: A join's VOICE_SERVER_UPDATE first carries ``endpoint: null`` ("wait for a new
    #: one"), and the real endpoint follows this many seconds later; None sends the real
    #: one at once (field-behaviours.md L3).
    null_endpoint_for_s: float | None = None
    #: How long a dropped session stays resumable, and how many sequenced messages it keeps.
    resume_window_s: float = 60.0
    replay_buffer: int = 1024
    #: Interval of the RTCP receiver reports sent to each client.
    rtcp_interval_s: float = 5.0
    #: Share (percent) of forwarded audio packets that carry RTP padding (P bit, 1-16
    #: bytes), as about 3 % of real packets do (field-behaviours.md M3).
    padding_pct: float = 0.0
    #: Padding-only packets (no audio: only padding, each taking a sequence number, the
    #: last frame's timestamp) a speaker sends where its speech stops, as real clients do
    #: at silence boundaries.
    padding_burst: int = 0
    #: How many of a speaker's first packets reach a client before the op 5 (Speaking)
    #: that maps their SSRC to the user: Discord's ordering is not documented, and a
    #: client must hold packets of an SSRC it cannot map yet.
    op5_late_packets: int = 0

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes advertised in Ready, preferred first."""
        return MODERN_MODES + (DISCONTINUED_MODES if self.allow_legacy_modes else ())

    def with_(self, **changes: Any) -> Scenario:
        """A copy with some fields changed (for one test)."""
        return replace(self, **changes)


def _table(*rows: Scenario) -> dict[str, Scenario]:
    return {row.name: row for row in rows}


SCENARIOS: dict[str, Scenario] = _table(
    Scenario(
        "modern",
        "Discord as of 2026 without DAVE enforcement: v8, non-443 endpoint port, rtpsize "
        "modes only (a discontinued mode such as xsalsa20_poly1305_lite gets 4016); DAVE "
        "protocol version 1 with clients that offer it, transport-only with the others.",
    ),
    Scenario(
        "today",
        "Discord as of 2026-12: v8 (v4 and up accepted), a non-443 endpoint port, rtpsize "
        "modes only (a discontinued mode gets 4016), DAVE required: an Identify without "
        "max_dave_protocol_version gets 4017.",
        require_dave=True,
    ),
    Scenario(
        "legacy-2024",
        "Before 2024-11-18: the discontinued xsalsa20/aes-gcm modes are still offered, "
        "versions below 4 pass, and port 443 serves the gateway (stripping :port worked).",
        allow_legacy_modes=True,
        min_version=1,
        listen_443=True,
        strip_port_close=None,
        max_dave_version=0,
    ),
    Scenario(
        "port-strip-4006",
        "Mid-2025: voice moved to non-443 ports; a client that strips the endpoint's port "
        "reaches a listener on 443 that closes every Identify with 4006.",
        listen_443=True,
        strip_port_close=4006,
    ),
    Scenario(
        "stale-session-4006",
        "Identify or Resume with a session_id or token that is not the latest one issued -> "
        "4006; mid-call the client's session goes stale (a newer one is issued, the "
        "connection drops with 4015), so a resume gets 4006 and only a new session works.",
        enforce_latest_session=True,
        invalidate_after_s=2.0,
    ),
    Scenario(
        "dave-required-4017",
        "From 2026-03-02: any Identify with max_dave_protocol_version 0 or missing -> 4017.",
        require_dave=True,
    ),
    Scenario(
        "crash-4015",
        "The voice server crashes mid-call (close 4015); the client must resume (op 7) and "
        "gets the messages it missed replayed.",
        crash_after_s=2.0,
    ),
    Scenario(
        "failover",
        "Mid-call, a new VOICE_SERVER_UPDATE moves the client to a new endpoint and token.",
        failover_after_s=2.0,
    ),
    Scenario(
        "kick-4014", "Mid-call, the client is kicked from voice (close 4014).", kick_after_s=2.0
    ),
    Scenario(
        "discovery-variant",
        "IP discovery replies carry SSRC 0 instead of echoing the request's SSRC, as some "
        "voice servers do.",
        discovery_reply_ssrc=0,
    ),
    Scenario(
        "hello-late",
        "The voice gateway sends Hello (op 8) only after the client's Identify (or Resume), "
        "not when the socket opens.",
        hello_after_identify=True,
    ),
    Scenario(
        "null-endpoint",
        "A join's VOICE_SERVER_UPDATE first carries endpoint null (wait for a new one); the "
        "one with the real endpoint follows 0.5 s later.",
        null_endpoint_for_s=0.5,
    ),
    Scenario(
        "udp-loss",
        "Forwarded media is lost, reordered and duplicated (10%/5%/5%).",
        loss_pct=10.0,
        reorder_pct=5.0,
        dup_pct=5.0,
    ),
    Scenario(
        "padding",
        "About 3 % of forwarded packets carry RTP padding, and each speaker sends a burst "
        "of padding-only packets (no audio, sequence numbers of their own) where its "
        "speech stops; DAVE required.",
        require_dave=True,
        padding_pct=3.0,
        padding_burst=4,
    ),
    Scenario(
        "op5-late",
        "A speaker's first packets reach the client before the op 5 that maps their "
        "SSRC to the user; DAVE required.",
        require_dave=True,
        op5_late_packets=5,
    ),
    Scenario(
        "slow-ready",
        "The voice server is slow: 3 s before Ready and 2 s before Session Description.",
        ready_delay_s=3.0,
        session_description_delay_s=2.0,
    ),
)


def get(name: str) -> Scenario:
    """The scenario called ``name``; KeyError lists the known names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
