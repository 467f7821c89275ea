"""One settings object, from a TOML file and ``NOTETAKER_*`` environment variables.

Precedence, highest first: arguments given in code, environment variables
(``NOTETAKER_BACKEND=nextcord``, nested with ``__``: ``NOTETAKER_POLICY__MAX_ATTEMPTS=3``),
the TOML file, defaults. The file is, in order: the ``path`` argument, ``$NOTETAKER_CONFIG``,
``./notetaker.toml``, ``$XDG_CONFIG_HOME/notetaker/config.toml``.

The bot token is a secret: it is kept as :class:`pydantic.SecretStr` (its repr is
``'**********'``) and registered with the log redaction filter as soon as it is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from notetaker.errors import ConfigError

DEFAULT_CONSENT = (
    "Recording has started for meeting notes (started by {starter}). "
    "Every speaker is recorded separately and transcribed. "
    "Use /optout to exclude yourself: your audio is dropped and what was captured is deleted."
)


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def default_config_path() -> Path | None:
    """The config file that will be read when none is given, or None if there is none."""
    env = os.environ.get("NOTETAKER_CONFIG")
    if env:
        return Path(env)
    for candidate in (
        Path("notetaker.toml"),
        _xdg("XDG_CONFIG_HOME", ".config") / "notetaker" / "config.toml",
    ):
        if candidate.is_file():
            return candidate
    return None


def _env_number(value: Any) -> Any:
    """``"3"`` -> 3, ``"0.05"`` -> 0.05; anything else unchanged (for the policy to judge)."""
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


class LiveSettings(BaseModel):
    """How the live path cuts and queues speech (``[live]`` in the config file)."""

    model_config = ConfigDict(extra="forbid")

    #: A speaker's silence this long ends their utterance (seconds).
    pause_s: float = Field(default=0.6, ge=0.1, le=10)
    #: Utterances longer than this are split at their quietest point (seconds).
    max_utterance_s: float = Field(default=30.0, ge=2, le=120)
    #: Opus of queued utterances kept in memory (KiB); beyond it a backlog waits as
    #: ranges of the tracks on disk. 1024 KiB is about two minutes of speech.
    backlog_memory_kib: int = Field(default=1024, ge=64)


class LlmSettings(BaseModel):
    """The ``llm`` summarizer's endpoint (``[llm]`` in the config file): any
    OpenAI-compatible chat-completions API. The key comes from the environment
    (``NOTETAKER_LLM__API_KEY``) and is never logged."""

    model_config = ConfigDict(extra="forbid")

    #: The API's base URL, version included (``http://127.0.0.1:11434/v1`` for Ollama).
    base_url: str = "http://127.0.0.1:8080/v1"
    #: The model's name as the endpoint knows it.
    model: str = ""
    #: The whole summary (every chunk and the combination) gets this long; then the notes
    #: keep the extractive summary and say why.
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    api_key: SecretStr | None = None
    #: Transcript characters per request: a longer meeting is summarised in chunks.
    context_chars: int = Field(default=12_000, ge=1_000)
    #: ``json_schema`` (OpenAI, vLLM, Ollama, llama-server) or ``json_object``
    #: (llama-cpp-python's server).
    response_format: Literal["json_schema", "json_object"] = "json_schema"


class Settings(BaseSettings):
    """Everything notetaker can be told. See README "Configuration" for each setting."""

    model_config = SettingsConfigDict(
        env_prefix="NOTETAKER_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    #: Which backend plugin runs the bot: ``pycord``, ``discordpy``, ``nextcord`` or ``disnake``.
    backend: str = "discordpy"
    #: ``engine``: core's receive engine (same DAVE/receive on every library);
    #: ``native``: the library's own voice client.
    transport: Literal["engine", "native"] = "engine"
    #: The bot token. Prefer the environment (``NOTETAKER_TOKEN``) to the file.
    token: SecretStr | None = None
    #: Where recordings, the session index and model caches live.
    data_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share") / "notetaker"
    )
    #: Speech-to-text engine: ``faster-whisper`` (CPU default) or ``whisperx``.
    transcriber: str = "faster-whisper"
    #: Whisper model: a name (``base``, ``large-v3``, ``tiny.en``) or a CTranslate2 directory.
    model: str = "base"
    #: Spoken language: a code (``en``, ``de``...) or ``auto`` (detected once per speaker);
    #: ``/startnotes language:`` overrides it per meeting.
    language: str = "auto"
    #: Who writes the summary: ``extractive`` (quoted lines, offline) or ``llm`` (summary,
    #: decisions, action items and open questions from the ``[llm]`` endpoint).
    summarizer: str = "extractive"
    llm: LlmSettings = Field(default_factory=LlmSettings)
    #: Post live captions in a thread by default (``/startnotes captions:`` overrides it).
    captions: bool = False
    #: Utterance cutting and the transcription backlog.
    live: LiveSettings = Field(default_factory=LiveSettings)
    #: Posted in the text channel when recording starts; ``{starter}`` is replaced.
    consent_message: str = DEFAULT_CONSENT
    #: Prefix added to the bot's nickname while recording (where it has the permission).
    recording_nickname_prefix: str = "[REC] "
    #: Role ids whose members may start and stop notes.
    allowed_role_ids: list[int] = Field(default_factory=list)
    #: Discord permissions (snake case) that allow starting and stopping notes.
    allowed_permissions: list[str] = Field(default_factory=lambda: ["manage_guild"])
    #: Delete meetings older than this many days on start (None keeps everything).
    retention_days: int | None = None
    #: Overrides of :class:`notetaker.policy.ReconnectPolicy` fields.
    policy: dict[str, Any] = Field(default_factory=dict)
    #: Discord's REST API base including the version (``https://discord.com/api/v10``);
    #: unset: the library's own. For REST proxies and Discord-compatible servers.
    discord_api_base: str | None = None
    #: The main gateway's WebSocket URL (``wss://gateway.discord.gg``); unset: what the
    #: API's ``GET /gateway`` answers (py-cord, nextcord) or the library's default.
    discord_gateway_url: str | None = None
    #: Ask for the Server Members privileged intent (enable it in the Developer Portal
    #: first): members are then named from the member list, not only as they speak.
    members_intent: bool = False
    #: On SIGTERM/SIGINT, how long meetings get to post their notes before the bot exits
    #: (a meeting not finished by then is finished at the next start).
    shutdown_grace_s: float = Field(default=20.0, ge=0, le=600)
    #: A meeting the last process left recording is rejoined and continued at start if
    #: it was interrupted less than this many seconds ago and people are still in the
    #: voice channel; otherwise its notes are posted, marked where it was cut short.
    resume_within_s: float = Field(default=600.0, ge=0)
    #: After READY, how long the library waits for further guilds to arrive before the
    #: bot counts as ready and answers commands (the libraries' default, 2 s, after the
    #: last guild). A bot in a handful of guilds can lower it.
    guild_ready_timeout_s: float = Field(default=2.0, ge=0, le=60)
    #: /autorecord: how long a channel stays empty before its meeting's notes are made
    #: (someone whose connection dropped gets back into the same meeting).
    autorecord_grace_s: float = Field(default=60.0, ge=0, le=3600)
    #: Where ``notetaker web`` is reached from Discord (``https://notes.example.org``):
    #: set, the notes message carries a signed link to its meeting page.
    web_base_url: str | None = None
    #: How long such a link opens its meeting page.
    web_link_days: float = Field(default=7.0, gt=0, le=3650)
    #: ``DEBUG``, ``INFO``, ``WARNING``...
    log_level: str = "INFO"
    #: ``text`` (key=value) or ``json`` (one object per line).
    log_format: Literal["text", "json"] = "text"

    @field_validator("backend", "transcriber", "summarizer")
    @classmethod
    def _lowercase_name(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        from notetaker.live.language import parse_language

        try:
            return parse_language(value) or "auto"
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("discord_api_base", "discord_gateway_url")
    @classmethod
    def _url(cls, value: str | None, info: Any) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        schemes = (
            ("https://", "http://")
            if info.field_name == "discord_api_base"
            else (
                "wss://",
                "ws://",
            )
        )
        if not value.startswith(schemes):
            raise ValueError(f"{info.field_name} must start with {' or '.join(schemes)}")
        return value

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_numbers(cls, value: Any) -> Any:
        # NOTETAKER_POLICY__MAX_ATTEMPTS=3 arrives as the string "3"; the policy takes
        # numbers, and a TOML file gives numbers already.
        if not isinstance(value, dict):
            return value
        return {k: _env_number(v) for k, v in value.items()}

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(
                f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {value!r}"
            )
        return level

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("retention_days must be at least 1 (or unset to keep everything)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_PATH.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def token_value(self) -> str | None:
        """The token in clear, for the library's login only. Never log the result."""
        return self.token.get_secret_value() if self.token is not None else None

    def public_dict(self) -> dict[str, Any]:
        """The settings as shown by ``notetaker config``: the token masked."""
        data = self.model_dump(mode="json")
        data["token"] = "set (hidden)" if self.token is not None else "not set"
        return data


# pydantic-settings builds sources from the class; the file path is per call, so it is
# passed through this one-slot holder rather than a global class attribute.
_CONFIG_PATH: dict[str, Path | None] = {}


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read settings; raise :class:`ConfigError` with every problem spelled out."""
    resolved = Path(path) if path is not None else default_config_path()
    if resolved is not None and not resolved.is_file():
        raise ConfigError(f"config file {resolved} does not exist")
    _CONFIG_PATH["path"] = resolved
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        where = f" in {resolved}" if resolved else ""
        raise ConfigError(f"invalid configuration{where}: {problems}") from None
    except Exception as exc:  # e.g. a TOML syntax error
        raise ConfigError(f"cannot read configuration {resolved}: {exc}") from None
    finally:
        _CONFIG_PATH.pop("path", None)
    from notetaker.logs import register_secret

    if settings.token is not None:
        register_secret(settings.token.get_secret_value())
    return settings
