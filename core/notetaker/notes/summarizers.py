"""The built-in summarizers and the one call that gives notes their digest.

``extractive`` (the default) keeps the quoted lines the notes already carry; ``llm``
asks the ``[llm]`` endpoint (:mod:`notetaker.notes.llm`). Whatever a summarizer does,
:func:`add_digest` returns notes: when it fails, they keep the extractive summary and a
sentence at the top says why.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

from notetaker.config import Settings
from notetaker.errors import NotetakerError
from notetaker.notes.digest import Digest, speech_lines
from notetaker.notes.model import Notes
from notetaker.registry import Registry, SummarizerSpec

log = logging.getLogger(__name__)


class Summarizer(Protocol):
    async def digest(self, notes: Notes) -> Digest | None:
        """The notes' digest, or None to keep the extractive summary."""
        ...


class Extractive:
    """Today's summary: lines quoted from the transcript (already in the notes)."""

    async def digest(self, notes: Notes) -> Digest | None:
        return None


def extractive(settings: Settings) -> Extractive:
    return Extractive()


def llm(settings: Settings) -> Any:
    from notetaker.notes.llm import LlmConfig, LlmSummarizer

    c = settings.llm
    return LlmSummarizer(
        LlmConfig(
            base_url=c.base_url,
            model=c.model,
            timeout_s=c.timeout_s,
            api_key=c.api_key.get_secret_value() if c.api_key else None,
            context_chars=c.context_chars,
            response_format=c.response_format,
        )
    )


async def add_digest(
    settings: Settings, notes: Notes, summarizers: Registry[SummarizerSpec]
) -> Notes:
    """``notes`` with the configured summarizer's digest, or with a notice saying why
    the summary stayed extractive."""
    if not speech_lines(notes):
        return notes
    name = settings.summarizer
    spec = summarizers.get(name)
    why: str
    if spec is None:
        why = f"no summarizer {name!r} is installed ({', '.join(summarizers.names())})"
    else:
        try:
            digest = await spec.factory(settings).digest(notes)
        except NotetakerError as exc:
            why = str(exc)
        except Exception as exc:  # a summarizer's bug costs the notes nothing
            log.exception("summarizer %s failed", name)
            why = f"the {name} summarizer failed ({type(exc).__name__}; the bot's log has it)"
        else:
            return dataclasses.replace(notes, digest=digest) if digest is not None else notes
    log.warning("meeting summary stays extractive: %s", why)
    notice = f"The summary is extractive: {why}."
    return dataclasses.replace(notes, notices=(*notes.notices, notice))
