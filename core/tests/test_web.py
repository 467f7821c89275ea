"""The meeting page (notetaker web) over a meeting recorded on disk: what each page shows,
tracks served with range requests, and who gets in — the operator's token, a signed link
for one meeting until it expires — with every way around that refused."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("starlette", reason="the web extra: pip install 'notetaker[web]'")
from recorded_meeting import ALICE, BOB, LINES, STARTED, record_meeting
from starlette.testclient import TestClient

from notetaker.cli import cli
from notetaker.config import Settings
from notetaker.meeting import meeting_page, notes_for
from notetaker.recorder import MeetingIndex
from notetaker.web.app import Access, create_app
from notetaker.web.auth import TOKEN_COOKIE, load_secret, sign_link

TOKEN = "operator-token-abc"
NOW = STARTED + 3600


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    record_meeting(data)
    record_meeting(data, guild_id=9)  # meeting 2, another server
    return data


@pytest.fixture
def settings(data: Path) -> Settings:
    return Settings(data_dir=data)


@pytest.fixture
def secret(data: Path) -> bytes:
    return load_secret(data)


@pytest.fixture
def client(settings: Settings, secret: bytes) -> TestClient:
    app = create_app(settings, Access(TOKEN, secret, now=lambda: NOW))
    return TestClient(app, follow_redirects=False)


def signed_in(client: TestClient) -> TestClient:
    client.cookies.set(TOKEN_COOKIE, TOKEN)
    return client


@pytest.mark.parametrize(
    "path",
    ["/", "/search?q=release", "/meetings/1", "/meetings/1/tracks/1", "/meetings/1/notes/notes.md"],
)
def test_without_the_token_every_page_is_401_saying_how_to_get_in(
    client: TestClient, path: str
) -> None:
    for attempt in (path, path + ("&" if "?" in path else "?") + "token=wrong"):
        resp = client.get(attempt)
        assert resp.status_code == 401
        assert "notetaker web</code> printed" in resp.text


def test_the_token_becomes_a_cookie_and_leaves_the_address(client: TestClient) -> None:
    resp = client.get(f"/?token={TOKEN}")
    assert resp.status_code == 303 and resp.headers["location"].endswith("/")
    cookie = resp.headers["set-cookie"]
    assert f"{TOKEN_COOKIE}={TOKEN}" in cookie and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert client.get("/").status_code == 200  # the cookie alone now


def test_the_meetings_list(client: TestClient, data: Path) -> None:
    index = MeetingIndex.open(data)
    live = index.create_meeting(guild_id=5, channel_id=7, started_by=ALICE, started_at=NOW)
    index.close()
    page = signed_in(client).get("/").text
    assert '<a href="/meetings/1">1</a>' in page and "standup" in page
    assert "alice, bob" in page and "2026-09-21" in page and "transcribing" in page
    assert re.search(rf'<a href="/meetings/{live}">{live}</a>.*?● recording', page, re.S)


def test_a_meeting_page_has_lanes_transcript_and_summary(client: TestClient) -> None:
    page = signed_in(client).get("/meetings/1").text
    for uid, start, _end, text in LINES:
        assert f'data-user="{uid}" data-start="{start}"' in page and text in page
    assert page.count('class="lane"') == 2 and 'class="speech"' in page
    assert "Lines quoted from the transcript." in page
    assert '<a href="/meetings/1/tracks/' + str(ALICE) + '">track of alice</a>' in page


def test_tracks_are_served_with_range_requests(client: TestClient, data: Path) -> None:
    c = signed_in(client)
    whole = c.get(f"/meetings/1/tracks/{BOB}")
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/ogg"
    assert whole.content[:4] == b"OggS" and whole.headers["accept-ranges"] == "bytes"
    part = c.get(f"/meetings/1/tracks/{BOB}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert c.get("/meetings/1/tracks/12345").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/meetings/1/tracks/..%2F..%2Fweb-secret",
        "/meetings/1/notes/..%2F..%2F..%2Fweb-secret",
        "/meetings/1/notes/%2E%2E%2Fnotetaker.sqlite3",
        "/meetings/1/notes/notetaker.sqlite3",
        "/meetings/..%2F..%2Fetc%2Fpasswd",
        "/meetings/1%2F..%2F2",
        "/meetings/-1",
        "/meetings/99",
    ],
)
def test_traversal_attempts_and_unknown_ids_are_404(client: TestClient, path: str) -> None:
    resp = signed_in(client).get(path)
    assert resp.status_code == 404
    assert b"\x00" not in resp.content and "OggS" not in resp.text


async def test_notes_files_download_once_written(settings: Settings) -> None:
    index = MeetingIndex.open(settings.data_dir)
    try:
        await notes_for(settings, index, 1)
    finally:
        index.close()
    app = create_app(settings, Access(TOKEN, load_secret(settings.data_dir), now=lambda: NOW))
    c = signed_in(TestClient(app, follow_redirects=False))
    page = c.get("/meetings/1").text
    assert '<a href="/meetings/1/notes/timeline.png">timeline.png</a>' in page
    md = c.get("/meetings/1/notes/notes.md")
    assert md.status_code == 200 and "Good morning, the release is ready." in md.text
    import io
    import zipfile

    bundle = zipfile.ZipFile(io.BytesIO(c.get("/meetings/1/notes.zip").content))
    assert sorted(bundle.namelist()) == sorted(
        f"meeting-1/{n}"
        for n in ("notes.md", "notes.json", "notes.srt", "notes.vtt", "timeline.png")
    )
    assert c.get("/meetings/2/notes.zip").status_code == 404  # no notes written yet


def test_a_signed_link_opens_its_meeting_only(client: TestClient, secret: bytes) -> None:
    link = sign_link(secret, 1, int(NOW + 60))
    resp = client.get(f"/meetings/1?link={link}")
    assert resp.status_code == 303
    assert "Path=/meetings/1" in resp.headers["set-cookie"]
    assert client.get("/meetings/1").status_code == 200  # by its cookie
    assert client.get(f"/meetings/1/tracks/{ALICE}").status_code == 200  # the audio too
    assert client.get(f"/meetings/2?link={link}").status_code == 401
    assert client.get(f"/?link={link}").status_code == 401
    assert client.get("/search?q=release").status_code == 401


@pytest.mark.parametrize(
    "forge",
    [
        lambda secret: sign_link(secret, 1, int(NOW - 1)),  # expired
        lambda secret: sign_link(b"another secret", 1, int(NOW + 60)),
        lambda secret: (
            str(int(NOW + 9e6)) + "." + sign_link(secret, 1, int(NOW + 60)).split(".")[1]
        ),
        lambda secret: sign_link(secret, 2, int(NOW + 60)),  # meeting 2's, used on 1
        lambda secret: "",
        lambda secret: "garbage",
    ],
    ids=["expired", "other-secret", "moved-expiry", "other-meeting", "empty", "garbage"],
)
def test_forged_or_expired_links_are_refused(client: TestClient, secret: bytes, forge) -> None:  # type: ignore[no-untyped-def]
    assert client.get(f"/meetings/1?link={forge(secret)}").status_code == 401


def test_search_page(client: TestClient) -> None:
    c = signed_in(client)
    page = c.get("/search?q=friday").text
    assert page.count('<a href="/meetings/') == 2  # both meetings said it
    assert '<span class="t">[00:02]</span> bob: Then we ship it on Friday.</li>' in page
    assert "Give a word to search for" in c.get("/search?q=%3F%21").text


def test_the_notes_message_links_to_the_page_with_a_working_link(
    settings: Settings, secret: bytes
) -> None:
    assert meeting_page(settings, 1) == ""  # no web_base_url: no link
    web = settings.model_copy(update={"web_base_url": "https://notes.example.org/"})
    line = meeting_page(web, 1, now=NOW)
    assert line.startswith(
        "Meeting page (until 2026-09-28): https://notes.example.org/meetings/1?link="
    )
    link = line.split("?link=")[1]
    app = create_app(settings, Access(TOKEN, secret, now=lambda: NOW))
    assert (
        TestClient(app, follow_redirects=False).get(f"/meetings/1?link={link}").status_code == 303
    )


def test_the_secret_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    first = load_secret(tmp_path)
    assert load_secret(tmp_path) == first and len(first) == 32
    assert os.stat(tmp_path / "web-secret").st_mode & 0o077 == 0


def test_cli_web_help() -> None:
    out = CliRunner().invoke(cli, ["web", "--help"]).output
    assert "--host" in out and "127.0.0.1" in out and "token" in out


def test_nothing_on_a_page_changes_anything(client: TestClient) -> None:
    c = signed_in(client)
    for path in ("/", "/meetings/1", f"/meetings/1/tracks/{ALICE}", "/search"):
        assert c.post(path).status_code == 405
        assert c.delete(path).status_code == 405
    asyncio.get_event_loop_policy()  # (no background work left behind)
