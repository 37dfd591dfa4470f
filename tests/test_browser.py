"""The page in a real browser (Debian's chromium driven by Playwright), with and without JavaScript.

Set ``QA_UPDATE_SCREENSHOT=1`` to write the results-page screenshot to ``docs/screenshot.png``
(the model-marked test); otherwise it goes to the test's temporary folder, so a test run never
changes tracked files.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from qa.config import Settings
from web.app import create_app

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
QUESTION = "Who is chairman of the West Chester Township Board of Trustees?"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving the app in a background thread on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120  # the real model takes a while to load
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _settings(tmp_path: Path, **changes: Any) -> Settings:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    base = Settings(seeds_dir=seeds, index_dir=tmp_path / "emb", model="fake", answer_threshold=0.0)
    return base.replace(**changes)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "chromium is not installed: run `make browser` (apt-get install chromium); "
            "never `playwright install`"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(_settings(tmp_path_factory.mktemp("live"))) as live:
        yield live


@pytest.fixture
def problems() -> list[str]:
    """Console errors, script errors and dialogs seen by ``page``; the test fails on any."""
    return []


@pytest.fixture
def page(browser: Any, problems: list[str]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    # Any CSP violation or script error means something on the page is broken.
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    yield pg
    context.close()
    assert not problems, problems


def _results_text(page: Any) -> str:
    """The visible text and links of the results, without the timing that differs per run."""
    text = page.inner_text("#results")
    links = page.eval_on_selector_all("#results a", "els => els.map(e => e.getAttribute('href'))")
    marks = page.eval_on_selector_all("#results mark", "els => els.map(e => e.textContent)")
    return "\n".join([re.sub(r"found in \d+ ms", "", text), *links, *marks])


def test_ask_with_javascript_then_open_the_passage(page: Any, server: LiveServer) -> None:
    page.goto(server.url + "/")
    assert page.evaluate("document.activeElement.id") == "q"  # autofocus on the question
    page.fill("#q", QUESTION)
    with page.expect_response(lambda r: r.url.endswith("/api/ask")) as response_info:
        page.press("#q", "Enter")
    assert response_info.value.status == 200
    page.wait_for_selector(".answer .answer-text")
    assert "Lee Wong" in page.inner_text(".answer-text")
    span = response_info.value.json()["answer"]["span"]
    assert page.inner_text(".answer-text strong.answer-span") == span["text"]
    assert "q=Who+is+chairman" in page.url  # the URL can be shared and reloaded
    passages = page.locator("li.passage")
    assert passages.count() == 5
    assert page.locator("li.passage mark").count() > 0
    assert page.inner_text(".answer-source a").startswith("Midwest USA Continues Striving")
    # The script renders what the server renders: reloading the URL gives the same results.
    by_script = _results_text(page)
    page.reload()
    page.wait_for_selector("li.passage")
    assert _results_text(page) == by_script
    cite = page.locator("a.cite").first
    assert cite.get_attribute("href") == "#p1"
    passage_text = page.locator("#p1 .passage-text").text_content()
    page.locator("#p1 .passage-title a").click()
    page.wait_for_selector("mark#hl")
    assert "/documents/" in page.url
    assert page.url.endswith("#hl")
    assert page.locator("mark#hl").text_content() == passage_text
    assert page.locator("mark#hl").is_visible()
    box = page.locator("mark#hl").bounding_box()
    assert box is not None
    assert 0 <= box["y"] < 900
    page.go_back()
    page.wait_for_selector("li.passage")
    assert page.locator("li.passage").count() == 5


def test_the_page_works_without_javascript(browser: Any, server: LiveServer) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        pg = context.new_page()
        pg.goto(server.url + "/")
        pg.fill("#q", QUESTION)
        pg.press("#q", "Enter")  # a plain GET form submission
        pg.wait_for_selector("li.passage")
        assert "q=Who+is+chairman" in pg.url
        assert "Lee Wong" in pg.inner_text(".answer-text")
        text = pg.locator("#p1 .passage-text").text_content()
        pg.locator("#p1 .passage-title a").click()
        pg.wait_for_selector("mark#hl")
        assert pg.locator("mark#hl").text_content() == text
    finally:
        context.close()


def test_markup_in_a_question_stays_text(page: Any, server: LiveServer) -> None:
    page.goto(server.url + "/")
    page.fill("#q", '<img src=x onerror="alert(1)"> Chongqing')
    page.press("#q", "Enter")
    page.wait_for_selector("li.passage")
    assert page.locator("#results img").count() == 0
    page.goto(server.url + "/?q=" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert page.input_value("#q") == "<script>alert(1)</script>"


def test_errors_are_shown_in_the_page(page: Any, server: LiveServer, problems: list[str]) -> None:
    page.goto(server.url + "/")
    # The input's maxlength stops this in a browser; a script or an old URL can still send it.
    page.evaluate("document.getElementById('q').removeAttribute('maxlength')")
    page.fill("#q", "x" * 2001)
    page.press("#q", "Enter")
    page.wait_for_selector(".notice.error")
    assert "the limit is 2000" in page.inner_text(".notice.error")
    # The browser logs the 422 of /api/ask as a console error: expected here, and only that.
    assert problems == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ]
    problems.clear()


def test_phone_layout_has_no_horizontal_scroll(browser: Any, server: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        pg = context.new_page()
        pg.goto(server.url + "/?q=Chongqing+California+trade+office")
        pg.wait_for_selector("li.passage")
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
    finally:
        context.close()


@pytest.mark.model
def test_screenshot_of_the_results_page(browser: Any, tmp_path: Path) -> None:
    """The real bundled model answers; the screenshot shows the page as users see it."""
    with LiveServer(_settings(tmp_path, model="bundled", answer_threshold=0.4)) as live:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        try:
            pg = context.new_page()
            pg.goto(live.url + "/")
            pg.fill("#q", "When was the China-California Business Forum held?")
            pg.press("#q", "Enter")
            pg.wait_for_selector(".answer .answer-text")
            assert "May 22, 2023" in pg.inner_text(".answer-text")
            pg.evaluate("document.activeElement.blur()")
            target = tmp_path / "screenshot.png"
            if os.environ.get("QA_UPDATE_SCREENSHOT") == "1":
                target = REPO / "docs" / "screenshot.png"
            pg.screenshot(path=str(target))
            assert target.stat().st_size > 10_000
        finally:
            context.close()
