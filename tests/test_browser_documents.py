"""Managing documents on the page in a real browser: upload an article, ask what only it
answers, delete it, and ask again to see the refusal (fake embedder, so it is quick)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.config import Settings
from tests.docfiles import ARTICLE, QUESTION
from tests.test_browser import CHROMIUM_ARGS, SEEDS, LiveServer

pytestmark = pytest.mark.browser

TOKEN = "page-token"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    settings = Settings(
        seeds_dir=seeds,
        index_dir=tmp_path / "emb",
        model="fake",
        answer_threshold=0.0,
        admin_token=TOKEN,
    )
    with LiveServer(settings) as server:
        yield server


@pytest.fixture
def page(live: LiveServer) -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: run `make browser`; never `playwright install`")
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        pg = browser.new_page()
        pg.set_default_timeout(15_000)
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(str(e)))
        yield pg
        browser.close()
    assert not problems, problems


def _ask(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/")
    page.fill("#q", QUESTION)
    with page.expect_response(lambda r: r.url.endswith("/api/ask")):
        page.press("#q", "Enter")
    page.wait_for_selector("#answer-heading")


def test_upload_ask_delete_ask_again(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/documents")
    assert page.locator("table.documents tbody tr").count() == len(list(SEEDS.glob("*.txt")))
    page.set_input_files(
        "#up-file",
        files=[{"name": "lanterns.txt", "mimeType": "text/plain", "buffer": ARTICLE.encode()}],
    )
    page.fill("#up-token", TOKEN)
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("text=searchable now")
    row = page.locator("table.documents tr", has_text="lanterns.txt")
    assert row.locator("a").inner_text() == ARTICLE.splitlines()[0]

    _ask(page, live)
    assert "Quorvath Belisande" in page.inner_text(".answer .answer-text")
    assert (
        page.locator(".answer-source a").get_attribute("href").startswith("/documents/lanterns.txt")
    )

    page.goto(live.url + "/documents")
    page.fill("#delete-token", TOKEN)
    page.click("button[aria-label='Delete lanterns.txt']")
    page.wait_for_selector("text=is deleted")
    assert page.locator("table.documents tr", has_text="lanterns.txt").count() == 0

    _ask(page, live)
    assert page.locator(".answer .answer-text").count() == 0
    reason = page.inner_text(".abstain-reason")
    assert "Tidewater" in reason
