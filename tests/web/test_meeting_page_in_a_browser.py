"""The meeting page in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium against ``notetaker web``'s app served by uvicorn on
loopback, over a meeting recorded on disk (real Ogg Opus tracks, the real index).

It signs in with the printed token, opens the meeting, clicks bob's line and checks that
the player loaded bob's track, moved to that line's time and plays on from there. A
screenshot is kept (NOTETAKER_ARTIFACTS, default the test's tmp folder).

Runs in its own nox session (nox -s web).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="nox -s web installs selenium")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra: pip install 'notetaker[web]'")

from recorded_meeting import BOB, LINES, record_meeting  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from notetaker.config import Settings  # noqa: E402
from notetaker.web.app import Access, create_app  # noqa: E402
from notetaker.web.auth import load_secret, sign_link  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 30.0
TOKEN = "browser-test-token"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    record_meeting(data)
    return data


@pytest.fixture(scope="module")
def site(data: Path) -> Iterator[str]:
    app = create_app(Settings(data_dir=data), Access(TOKEN, load_secret(data)))
    # Listening before uvicorn starts: the browser's first request waits in the backlog
    # rather than the test waiting for the server.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(WAIT_S)
    sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail(
            "needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("NOTETAKER_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _player(browser: Any) -> dict[str, Any]:
    return browser.execute_script(
        "const p = document.getElementById('player');"
        "return {src: p.currentSrc, t: p.currentTime, paused: p.paused,"
        " error: p.error && p.error.code};"
    )


def test_clicking_a_line_plays_that_moment_of_that_speakers_track(
    site: str, browser: Any, tmp_path: Path
) -> None:
    browser.get(f"{site}/?token={TOKEN}")
    assert "token=" not in browser.current_url  # moved into a cookie
    browser.get(f"{site}/meetings/1")
    lines = browser.find_elements(By.CSS_SELECTOR, "li.line")
    assert [li.text.split(": ", 1)[1] for li in lines] == [text for *_, text in LINES]
    uid, start, _end, _text = LINES[1]
    assert uid == BOB
    line = next(li for li in lines if li.get_attribute("data-user") == str(BOB))
    line.click()
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda b: _player(b)["src"].endswith(f"/meetings/1/tracks/{BOB}"))
    wait.until(lambda b: _player(b)["t"] >= start and not _player(b)["paused"])
    first = _player(browser)
    assert first["error"] is None and first["t"] < start + 1.0  # it went to the line
    wait.until(lambda b: _player(b)["t"] > first["t"] + 0.2)  # and plays on from there
    assert "playing" in line.get_attribute("class")
    browser.save_screenshot(str(_artifacts(tmp_path) / "meeting-page.png"))


def test_a_signed_link_opens_the_page_in_a_fresh_browser(
    site: str, browser: Any, data: Path
) -> None:
    browser.delete_all_cookies()
    browser.get(f"{site}/meetings/1")
    assert "Not signed in" in browser.page_source
    link = sign_link(load_secret(data), 1, int(time.time() + 600))
    browser.get(f"{site}/meetings/1?link={link}")
    assert browser.find_elements(By.CSS_SELECTOR, "li.line")
    browser.get(site + "/")
    assert "Not signed in" in browser.page_source  # the link opens its meeting only
