"""The one error hierarchy of notetaker.

Every error notetaker raises on purpose derives from :class:`NotetakerError`.
Backends translate their library's exceptions into these in one place
(``raise ... from exc``) so that core never has to know which library is in use.

    NotetakerError
    ├── ConfigError
    │   └── UnknownBackendError
    ├── PluginError
    ├── StartupError               (the bot cannot log in; exits 2, retrying would not help)
    │   ├── TokenRejected
    │   └── IntentsRefused
    ├── DiscordUnreachable         (no answer, or 5xx: retried with backoff)
    ├── PermissionDenied
    ├── PlatformError              (Discord refused a message, edit or thread)
    │   └── RateLimited            (429 after the library's own retries)
    ├── VoiceError
    │   ├── VoiceClosed            (the voice gateway closed with a code)
    │   ├── VoiceStopped           (the policy gave up; carries a user-facing reason)
    │   └── VoiceTimeout
    ├── PacketError                (malformed or undecryptable media; counted, never fatal)
    │   ├── MalformedPacket
    │   └── DecryptError
    ├── RecordingError
    └── TranscriptionError
        └── ModelResolutionError
"""

from __future__ import annotations


class NotetakerError(Exception):
    """Root of every error notetaker raises on purpose."""


class ConfigError(NotetakerError):
    """The configuration is invalid; the message says which setting and why."""


class UnknownBackendError(ConfigError):
    """The configured backend is not installed."""

    def __init__(self, name: str, installed: list[str]) -> None:
        self.name = name
        self.installed = sorted(installed)
        listing = ", ".join(self.installed) if self.installed else "none"
        super().__init__(
            f"unknown backend {name!r}; installed backends: {listing}. "
            f"Install one with e.g. `pip install ./backends/discordpy`."
        )


class PluginError(NotetakerError):
    """A plugin failed to load or registered something invalid."""


class StartupError(NotetakerError):
    """Discord refused the bot's login for a reason a retry cannot fix; the message is the
    one sentence ``notetaker run`` prints before exiting with code 2."""


class TokenRejected(StartupError):
    """Discord answered 401 to the bot token."""


class IntentsRefused(StartupError):
    """Discord closed the gateway with 4014: a privileged intent the bot asks for is not
    enabled for the application. ``intents`` names them as the Developer Portal does."""

    def __init__(self, message: str, intents: tuple[str, ...] = ()) -> None:
        self.intents = intents
        super().__init__(message)


class DiscordUnreachable(NotetakerError):
    """Discord's API could not be reached (DNS, refused, TLS, timeout) or answered 5xx.
    Transient: the bot retries with backoff."""


class PermissionDenied(NotetakerError):
    """The member who asked is not allowed to do this (shown to them ephemerally)."""


class PlatformError(NotetakerError):
    """Discord refused a message, an edit or a thread (the backend's translation of its
    library's HTTP errors). ``status`` is the HTTP status, when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RateLimited(PlatformError):
    """Discord answered 429 and the library gave up retrying; wait ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message, 429)


class VoiceError(NotetakerError):
    """Something went wrong with a voice connection."""


class VoiceClosed(VoiceError):
    """The voice gateway closed the connection with ``code``."""

    def __init__(self, code: int, reason: str = "", attempt: int = 0) -> None:
        self.code = code
        self.reason = reason
        self.attempt = attempt
        super().__init__(f"voice connection closed with {code}" + (f": {reason}" if reason else ""))


class VoiceStopped(VoiceError):
    """The reconnect policy stopped trying; ``reason`` is written for the user."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason)


class VoiceTimeout(VoiceError):
    """A voice handshake step did not complete in time."""


class PacketError(NotetakerError):
    """A media packet could not be used. Counted and dropped, never raised out of a loop."""

    reason: str = "malformed"

    def __init__(self, message: str, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message)


class MalformedPacket(PacketError):
    """The bytes do not parse as the packet they claim to be."""


class DecryptError(PacketError):
    """Transport or DAVE decryption failed."""

    reason = "decrypt"


class RecordingError(NotetakerError):
    """The recorder could not write or read a meeting."""


class SearchError(NotetakerError):
    """A search that cannot run: nothing to search for, or no full-text search (FTS5) in
    this Python's SQLite."""


class SummarizerError(NotetakerError):
    """The summarizer gave no usable answer (endpoint down, timeout, invalid JSON); the
    notes keep the extractive summary and say why."""


class TranscriptionError(NotetakerError):
    """Transcription failed."""


class ModelResolutionError(TranscriptionError):
    """A Whisper model could not be found, fetched or verified."""
