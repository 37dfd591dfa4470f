"""The HTML pages rendered on the server (the path that works without JavaScript)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa.config import Settings
from web.app import STATIC_DIR, TEMPLATES_DIR, create_app
from web.render import document_url, highlight, question_terms

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
QUESTION = "Who is chairman of the West Chester Township Board of Trustees?"
HTML = {"Accept": "text/html"}


@pytest.fixture
def seeds(seeds_dir: Path) -> Path:
    """The private seed copy behind the ``settings`` and ``client`` fixtures of conftest."""
    return seeds_dir


def text_of(fragment: str) -> str:
    """What a browser shows for an HTML fragment (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_empty_home_page_has_an_accessible_form(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<form class="ask" id="ask-form" action="/" method="get" role="search">' in page
    assert '<label class="ask-label" for="q">' in page
    assert 'id="q" name="q"' in page
    assert '<label for="k">' in page
    assert 'name="k"' in page
    assert 'href="#main"' in page
    assert 'id="main"' in page
    assert '<meta name="viewport"' in page
    assert r.context["result"] is None
    assert r.context["error"] is None
    assert 'class="passage"' not in page


def test_results_page_shows_answer_citations_and_passage_links(
    client: TestClient, seeds: Path
) -> None:
    r = client.get("/", params={"q": QUESTION, "k": 3})
    assert r.status_code == 200
    result = r.context["result"].model_dump()  # type: ignore[attr-defined]
    api = client.get("/api/ask", params={"q": QUESTION, "k": 3}).json()
    assert [p["chunk_id"] for p in result["passages"]] == [p["chunk_id"] for p in api["passages"]]
    page = r.text
    answer = result["answer"]
    # The answer is on the page verbatim once the bold short-answer mark is removed.
    (quote,) = re.findall(
        r'<p class="answer-text">(.*?)(?: <a class="cite"|</p>)', page, flags=re.S
    )
    assert text_of(quote) == answer["text"]
    for n in answer["citations"]:
        assert f'<a class="cite" href="#p{n}"' in page
    for p in result["passages"]:
        assert f'<li class="passage" id="p{p["rank"]}">' in page
        link = html.escape(document_url(p["source"], p["start"], p["end"], QUESTION))
        assert f'href="{link}"' in page
        assert f"{p['source']} · {p['start']}–{p['end']}" in page
    # The passage text is on the page verbatim once the highlighting marks are removed.
    bodies = re.findall(r'<p class="passage-text">(.*?)</p>', page, flags=re.S)
    assert [text_of(b) for b in bodies] == [p["text"] for p in result["passages"]]
    assert "<mark>Chester</mark>" in page
    assert "<mark>Township</mark>" in page
    assert "selected>3</option>" in page
    title = next(p["title"] for p in result["passages"] if p["source"] == answer["source"])
    assert r.context["answer_title"] == title  # type: ignore[attr-defined]
    answer_link = document_url(answer["source"], answer["start"], answer["end"], QUESTION)
    assert f'<a href="{html.escape(answer_link)}">{html.escape(title)}</a>' in page


def test_answer_link_highlights_exactly_the_answer(client: TestClient) -> None:
    answer = client.get("/api/ask", params={"q": QUESTION}).json()["answer"]
    url = document_url(answer["source"], answer["start"], answer["end"]).removesuffix("#hl")
    marked = re.search(r'<mark id="hl" tabindex="-1">(.*?)</mark>', client.get(url).text, re.S)
    assert marked is not None
    assert html.unescape(marked.group(1)) == answer["text"]


def test_abstention_shows_the_reason_and_still_the_passages(
    settings: Settings,
) -> None:
    strict = settings.replace(answer_threshold=1.01)  # no cosine reaches it
    with TestClient(create_app(strict)) as c:
        r = c.get("/", params={"q": QUESTION})
    assert r.status_code == 200
    result = r.context["result"].model_dump()  # type: ignore[attr-defined]
    assert result["answer"] is None
    assert "No answer:</strong> " + result["abstain_reason"] in r.text
    assert "needed 1.01" in r.text
    assert r.text.count('class="passage"') == 5


def test_empty_index_shows_the_no_results_state(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    settings = Settings(seeds_dir=tmp_path / "empty", index_dir=tmp_path / "emb", model="fake")
    with TestClient(create_app(settings)) as c:
        r = c.get("/", params={"q": "anything at all"})
    assert r.status_code == 200
    assert "No passages match this question." in r.text
    assert 'class="passage"' not in r.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "   "}, "question is empty or blank"),
        ({"q": "x" * 2001}, "question is 2001 characters long; the limit is 2000"),
        ({"q": "vertical\x0btab"}, "control character (U+000B) at position 8"),
        ({"q": "Chongqing", "k": "lots"}, "k must be a whole number, got &#39;lots&#39;"),
        ({"q": "Chongqing", "k": "99"}, "k must be between 1 and 50, got 99"),
    ],
)
def test_invalid_questions_are_shown_in_the_page_with_422(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    r = client.get("/", params=params)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert message in r.text
    assert 'role="alert"' in r.text
    assert 'id="ask-form"' in r.text


def test_document_page_highlights_the_exact_offsets(client: TestClient, seeds: Path) -> None:
    hit = client.get("/api/ask", params={"q": QUESTION, "k": 1}).json()["passages"][0]
    url = document_url(hit["source"], hit["start"], hit["end"], QUESTION)
    assert url.endswith("#hl")
    r = client.get(url.removesuffix("#hl"))
    assert r.status_code == 200
    text = (seeds / hit["source"]).read_bytes().decode("utf-8")
    body = re.search(r'<div class="doc-text">(.*?)</div>', r.text, flags=re.S)
    assert body is not None
    before, marked, after = re.split(r'<mark id="hl" tabindex="-1">|</mark>', body.group(1))
    assert html.unescape(marked) == text[hit["start"] : hit["end"]] == hit["text"]
    assert html.unescape(before) == text[: hit["start"]]
    assert html.unescape(after) == text[hit["end"] :]
    assert r.context["parts"][1] == hit["text"]  # type: ignore[attr-defined]
    assert "Back to the results for" in r.text
    assert 'href="/?q=Who+is+chairman' in r.text


def test_document_page_without_offsets_shows_the_whole_text(
    client: TestClient, seeds: Path
) -> None:
    r = client.get("/documents/003_e91a4a3bcb4d6e86.txt")
    assert r.status_code == 200
    assert "<mark" not in r.text
    text = (seeds / "003_e91a4a3bcb4d6e86.txt").read_text(encoding="utf-8")
    body = re.search(r'<div class="doc-text">(.*?)</div>', r.text, flags=re.S)
    assert body is not None
    assert html.unescape(body.group(1)) == text
    assert "2024-07-09" in r.text
    assert "iChongqing" in r.text


def test_seed_content_is_escaped(settings: Settings, seeds: Path) -> None:
    evil = 'Evil title <img src=x onerror="alert(1)">\n\n<script>alert("seed")</script> gulls\n'
    (seeds / "evil.txt").write_text(evil, encoding="utf-8")
    with TestClient(create_app(settings)) as c:
        results = c.get("/", params={"q": "gulls evil script"}).text
        doc = c.get("/documents/evil.txt?start=0&end=10").text
    for page in (results, doc):
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        unmarked = re.sub(r"</?(strong|mark)[^>]*>", "", page)
        assert "&lt;script&gt;alert(&#34;seed&#34;)&lt;/script&gt;" in unmarked


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=10", "give both start and end"),
        ("start=20&end=10", "start (20) is after end (10)"),
        ("start=0&end=999999", "end must be between 0 and"),
        ("start=-1&end=5", "start must be between 0 and"),
        ("start=a&end=5", "start must be a whole number"),
    ],
)
def test_document_page_rejects_bad_offsets(client: TestClient, query: str, message: str) -> None:
    r = client.get(f"/documents/000_b12d02cff80cfccd.txt?{query}", headers=HTML)
    assert r.status_code == 422
    assert message in r.text
    assert r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "path", ["/documents/..%2F..%2Fetc%2Fpasswd", "/documents/%2e%2e/x.txt", "/documents/nope.txt"]
)
def test_document_page_404_is_an_html_page(client: TestClient, path: str) -> None:
    r = client.get(path, headers=HTML)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Not found" in r.text
    assert "no document" in r.text


def test_pages_have_no_inline_code_and_no_other_hosts(client: TestClient) -> None:
    pages = [client.get("/", params={"q": QUESTION}).text]
    pages.append(client.get("/documents/000_b12d02cff80cfccd.txt?start=0&end=5").text)
    pages.append(client.get("/nope", headers=HTML).text)
    for page in pages:
        for tag in re.findall(r"<script[^>]*>", page):
            assert tag == '<script src="/static/app.js" defer>'
        assert "<style" not in page
        assert " style=" not in page
        assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers
        assert "http://" not in page
        assert "https://" not in page
    templates = " ".join(p.read_text(encoding="utf-8") for p in TEMPLATES_DIR.glob("*.html"))
    assert "|safe" not in templates
    assert "autoescape false" not in templates


def test_static_files_are_served(client: TestClient) -> None:
    css = client.get("/static/style.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = client.get("/static/app.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    # The script builds results from text nodes only: no HTML string from the server is parsed.
    source = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
    assert "innerHTML" not in source
    assert "insertAdjacentHTML" not in source


def test_highlight_escapes_before_marking() -> None:
    out = highlight("<b>Chongqing</b> & chongqing's rail", "chongqing <b>")
    assert str(out) == (
        "&lt;b&gt;<mark>Chongqing</mark>&lt;/b&gt; &amp; <mark>chongqing</mark>&#39;s rail"
    )
    assert str(highlight("<i>x</i>", "")) == "&lt;i&gt;x&lt;/i&gt;"
    assert str(highlight("visited visits revisit", "visit")) == (
        "<mark>visited</mark> <mark>visits</mark> revisit"
    )
    assert str(highlight("重庆是一座城市", "重庆")) == "<mark>重庆</mark>是一座城市"


def test_question_terms_drop_stopwords_and_sort_longest_first() -> None:
    assert question_terms("Who is the chairman of West Chester?") == ["chairman", "chester", "west"]
    assert question_terms("a an the") == []


def test_document_url_quotes_the_source() -> None:
    url = document_url("sub dir/a#b?.txt", 3, 9, "q & a")
    assert url == "/documents/sub%20dir/a%23b%3F.txt?start=3&end=9&q=q+%26+a#hl"
    assert document_url("a.txt") == "/documents/a.txt"
