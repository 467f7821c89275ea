"""The ``llm`` summarizer: any OpenAI-compatible chat-completions endpoint (Ollama, a
llama.cpp server, vLLM, a cloud provider) asked for JSON against a schema in which every
item cites transcript line numbers; the answer is checked by
:func:`notetaker.notes.digest.validate`.

A long meeting is summarised in chunks that fit ``context_chars`` (line numbers stay the
meeting's), and the chunks' summaries are then combined in one more call. An answer that
is not valid JSON is asked for once more. Everything runs under one deadline,
``timeout_s``: past it, or on any failure, :class:`SummarizerError` says why in a
sentence (the API key never appears in it, nor in the log).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import aiohttp

from notetaker.errors import SummarizerError
from notetaker.notes.digest import AnswerError, Digest, NumberedLine, merge, numbered, validate
from notetaker.notes.model import Notes
from notetaker.notes.render import clock

log = logging.getLogger(__name__)
T = TypeVar("T")

_CITED: Final = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "lines": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["text", "lines"],
}
SCHEMA: Final = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "decisions": {"type": "array", "items": _CITED},
        "action_items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "owner": {"type": "string"},
                    "due": {"type": "string"},
                    "lines": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["text", "owner", "lines"],
            },
        },
        "open_questions": {"type": "array", "items": _CITED},
    },
    "required": ["summary", "decisions", "action_items", "open_questions"],
}
COMBINE_SCHEMA: Final = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
}
SYSTEM: Final = (
    "You turn a meeting transcript into notes. Answer with one JSON object only, matching "
    "the schema. Every decision, action item and open question cites the numbers of the "
    "transcript lines it comes from. An action item's owner is one of the participants: "
    "{names}; give its due date only when one was said. Leave a list empty when the "
    "meeting had none. The summary is two to four sentences."
)
COMBINE: Final = (
    "These are summaries of consecutive parts of one meeting. Answer with one JSON object "
    "only: its summary, in two to four sentences."
)


@dataclass(frozen=True)
class LlmConfig:
    base_url: str
    model: str
    timeout_s: float
    api_key: str | None = None
    context_chars: int = 12_000
    #: ``json_schema`` (OpenAI, vLLM, Ollama, llama.cpp's llama-server) or
    #: ``json_object`` (llama-cpp-python's server: the schema rides along as ``schema``)
    response_format: str = "json_schema"

    def describe(self) -> str:
        return f"{self.model or 'the model'} at {self.base_url}"


def transcript_text(lines: Sequence[NumberedLine]) -> str:
    return "\n".join(f"{ln.number} [{clock(ln.start)}] {ln.name}: {ln.text}" for ln in lines)


def chunks(lines: Sequence[NumberedLine], budget: int) -> list[list[NumberedLine]]:
    """Consecutive runs of lines whose text fits ``budget`` characters (a line longer
    than the budget is a chunk of its own)."""
    out: list[list[NumberedLine]] = []
    size = 0
    for ln in lines:
        cost = len(ln.text) + len(ln.name) + 16
        if out and size + cost <= budget:
            out[-1].append(ln)
            size += cost
        else:
            out.append([ln])
            size = cost
    return out


class LlmSummarizer:
    """Digests from a chat-completions endpoint."""

    def __init__(self, config: LlmConfig) -> None:
        self.config = config

    async def digest(self, notes: Notes) -> Digest:
        lines = numbered(notes)
        names = [p.name for p in notes.participants]
        method = f"llm: {self.config.describe()}"
        try:
            async with asyncio.timeout(self.config.timeout_s):
                return await self._digest(lines, names, method)
        except TimeoutError:
            raise SummarizerError(
                f"{self.config.describe()} did not answer within {self.config.timeout_s:g} s"
            ) from None

    async def _digest(self, lines: list[NumberedLine], names: list[str], method: str) -> Digest:
        system = SYSTEM.format(names=", ".join(names) or "none")
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            parts = []
            for part in chunks(lines, self.config.context_chars):
                parts.append(
                    await self._ask(
                        http,
                        system,
                        transcript_text(part),
                        SCHEMA,
                        lambda answer: validate(answer, lines, names, method=method),
                    )
                )
            if len(parts) == 1:
                return parts[0]
            joined = "\n\n".join(f"Part {i}: {p.summary}" for i, p in enumerate(parts, 1))
            summary = await self._ask(http, COMBINE, joined, COMBINE_SCHEMA, _summary_of)
            return merge(parts, summary, method=method)

    async def _ask(
        self,
        http: aiohttp.ClientSession,
        system: str,
        user: str,
        schema: dict[str, Any],
        check: Callable[[Any], T],
    ) -> T:
        """The model's answer as ``check`` reads it; asked a second time when the first
        is not valid JSON or not the object the schema describes."""
        why = ""
        for attempt in (1, 2):
            content = await self._complete(http, system, user, schema)
            try:
                return check(json.loads(content))
            except (json.JSONDecodeError, AnswerError) as exc:
                why = str(exc)
                log.info("the model's answer is not usable (try %s): %s", attempt, why)
        raise SummarizerError(f"{self.config.describe()} answered twice with invalid JSON ({why})")

    async def _complete(
        self, http: aiohttp.ClientSession, system: str, user: str, schema: dict[str, Any]
    ) -> str:
        config = self.config
        if config.response_format == "json_object":
            response_format: dict[str, Any] = {"type": "json_object", "schema": schema}
        else:
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": "meeting_notes", "schema": schema},
            }
        body = {
            "model": config.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0,
            "response_format": response_format,
        }
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        url = config.base_url.rstrip("/") + "/chat/completions"
        try:
            async with http.post(url, json=body, headers=headers) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise SummarizerError(
                        f"{config.describe()} answered HTTP {resp.status}: {_short(text)}"
                    )
        except aiohttp.ClientError as exc:
            raise SummarizerError(f"{config.describe()} cannot be reached: {exc}") from None
        try:
            content = json.loads(text)["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise SummarizerError(
                f"{config.describe()} did not answer as a chat-completions API: {_short(text)}"
            ) from None
        if not isinstance(content, str):
            raise SummarizerError(f"{config.describe()} answered without text")
        return content


def _summary_of(answer: Any) -> str:
    summary = answer.get("summary") if isinstance(answer, dict) else None
    if not isinstance(summary, str) or not summary.strip():
        raise AnswerError("the answer is not a JSON object with a summary")
    return summary.strip()


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["SCHEMA", "AnswerError", "LlmConfig", "LlmSummarizer", "chunks"]
