"""The llm summarizer's wire behaviour against a chat-completions endpoint served here
(aiohttp on loopback): what it sends, the retry on invalid JSON, chunking, and every
failure as one sentence within the deadline, the API key never in it. The same client
against a real llama.cpp server: tests/llm (nox -s llm)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from release_notes import NOTES

from notetaker.config import Settings
from notetaker.errors import SummarizerError
from notetaker.notes.llm import SCHEMA, LlmConfig, LlmSummarizer
from notetaker.notes.summarizers import add_digest
from notetaker.plugins import load

KEY = "sk-test-never-shown-0123456789"
GOOD = json.loads(
    (Path(__file__).parent / "fixtures" / "llm" / "good.json").read_text(encoding="utf-8")
)


class Endpoint:
    """A chat-completions endpoint whose answers the test scripts."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.answers: list[Callable[[dict[str, Any]], Any]] = []
        self.url = ""
        self.release = asyncio.Event()  # set at teardown: a hanging answer ends

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.answers.pop(0)(body) if self.answers else GOOD
        if isinstance(reply, web.StreamResponse):
            return reply
        if reply == "hang":
            await self.release.wait()
        content = reply if isinstance(reply, str) else json.dumps(reply)
        return web.json_response({"choices": [{"message": {"content": content}}]})


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", ep.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ep.url = f"http://127.0.0.1:{port}/v1"
    yield ep
    ep.release.set()
    await runner.cleanup()


def summarizer(ep: Endpoint, **kw: Any) -> LlmSummarizer:
    config = {"base_url": ep.url, "model": "tiny", "timeout_s": 5.0, "api_key": KEY, **kw}
    return LlmSummarizer(LlmConfig(**config))


async def test_asks_for_json_against_the_schema_with_numbered_lines(endpoint: Endpoint) -> None:
    digest = await summarizer(endpoint).digest(NOTES)
    assert digest.method == f"llm: tiny at {endpoint.url}"
    assert [a.owner for a in digest.actions] == ["bob", "alice"]
    (body,) = endpoint.requests
    assert body["model"] == "tiny" and body["temperature"] == 0
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    system, user = body["messages"]
    assert "participants: bob, alice" in system["content"]
    assert (
        user["content"].splitlines()[1]
        == "2 [01:10] bob: I'll draft the release notes by Thursday."
    )
    assert endpoint.headers[0]["Authorization"] == f"Bearer {KEY}"


async def test_json_object_mode_sends_the_schema_inline(endpoint: Endpoint) -> None:
    await summarizer(endpoint, response_format="json_object").digest(NOTES)
    assert endpoint.requests[0]["response_format"] == {"type": "json_object", "schema": SCHEMA}


async def test_invalid_json_is_asked_for_once_more(endpoint: Endpoint) -> None:
    endpoint.answers = [lambda b: "{not json", lambda b: GOOD]
    digest = await summarizer(endpoint).digest(NOTES)
    assert len(endpoint.requests) == 2 and digest.decisions


async def test_invalid_json_twice_is_a_sentence(endpoint: Endpoint) -> None:
    endpoint.answers = [lambda b: "{not json", lambda b: {"no": "summary"}]
    with pytest.raises(SummarizerError, match="answered twice with invalid JSON"):
        await summarizer(endpoint).digest(NOTES)


async def test_a_long_meeting_is_summarised_in_chunks_then_combined(endpoint: Endpoint) -> None:
    def part(first: int) -> Callable[[dict[str, Any]], Any]:
        return lambda b: {
            "summary": f"part from {first}",
            "decisions": [{"text": f"decided at {first}", "lines": [first]}],
            "action_items": [],
            "open_questions": [],
        }

    endpoint.answers = [part(1), part(3), lambda b: {"summary": "The whole meeting."}]
    digest = await summarizer(endpoint, context_chars=110).digest(NOTES)
    transcripts = [r["messages"][1]["content"] for r in endpoint.requests[:2]]
    assert transcripts[0].startswith("1 [00:05]") and transcripts[1].startswith("3 [02:10]")
    assert "Part 1: part from 1" in endpoint.requests[2]["messages"][1]["content"]
    assert digest.summary == "The whole meeting."
    assert [d.lines for d in digest.decisions] == [(1,), (3,)]  # the meeting's numbers


@pytest.mark.parametrize(
    ("reply", "sentence"),
    [
        ("hang", "did not answer within 0.3 s"),
        (web.Response(status=500, text="model not loaded"), "answered HTTP 500: model not loaded"),
        (web.json_response({"error": "x"}), "did not answer as a chat-completions API"),
    ],
    ids=["timeout", "http-500", "not-openai"],
)
async def test_failures_are_one_sentence_without_the_key(
    endpoint: Endpoint, reply: Any, sentence: str, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.answers = [lambda b: reply]
    with caplog.at_level(logging.DEBUG), pytest.raises(SummarizerError) as failed:
        await summarizer(endpoint, timeout_s=0.3).digest(NOTES)
    assert sentence in str(failed.value)
    assert KEY not in str(failed.value) and KEY not in caplog.text


async def test_an_endpoint_that_is_down_is_a_sentence() -> None:
    config = LlmConfig(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=5, api_key=KEY)
    with pytest.raises(SummarizerError, match="cannot be reached") as failed:
        await LlmSummarizer(config).digest(NOTES)
    assert KEY not in str(failed.value)


async def test_notes_fall_back_to_extractive_saying_why(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        summarizer="llm",
        llm={"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": KEY},
    )
    notes = await add_digest(settings, NOTES, load().summarizers)
    assert notes.digest is None and notes.summary == NOTES.summary
    (notice,) = notes.notices
    assert notice.startswith("The summary is extractive: m at http://127.0.0.1:9/v1 cannot be")
    assert KEY not in notice


async def test_an_unknown_summarizer_is_named_in_the_notice(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, summarizer="gpt-99")
    notes = await add_digest(settings, NOTES, load().summarizers)
    assert notes.notices == (
        "The summary is extractive: no summarizer 'gpt-99' is installed (extractive, llm).",
    )


async def test_the_llm_summarizer_from_the_settings_reaches_the_endpoint(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path, summarizer="llm", llm={"base_url": endpoint.url, "model": "tiny"}
    )
    notes = await add_digest(settings, NOTES, load().summarizers)
    assert notes.digest is not None and notes.notices == ()
    assert "Authorization" not in endpoint.headers[0]  # no key configured, none sent
