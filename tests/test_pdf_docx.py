"""PDF and Word articles: extraction, metadata, the text kept with the index, exact offsets end
to end, scanned PDFs skipped, and each file extracted once per content hash."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa.config import Settings
from qa.errors import DocumentContentError
from qa.index.builder import build_index
from qa.index.generation import load_index, read_documents
from qa.ingest import extract
from qa.ingest.extract import EXTRACTIONS, Extracted, sniff
from tests.docfiles import make_docx, make_pdf, make_scanned_pdf
from web.app import create_app

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PDF_PAGES = [
    [
        "Harbour lamps of Essmere",
        "Velmora Quistad restored the Essmere harbour lamps in the spring.",
        "The lamps burn whale oil no longer.",
    ],
    ["Second page: the restoration cost nine thousand crowns."],
]
PDF_QUESTION = "Who restored the Essmere harbour lamps?"
DOCX_PARAGRAPHS = [
    "The Brindlecombe choir",
    "Taddeus Orrinwood conducts the Brindlecombe choir every winter.",
    "The choir sings in the old granary.",
]
DOCX_QUESTION = "Who conducts the Brindlecombe choir?"


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    """Each test starts with an empty extraction cache, as a new process would."""
    EXTRACTIONS.clear()
    yield
    EXTRACTIONS.clear()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files actually extracted (PDF or Word), in order."""
    seen: list[str] = []
    real_pdf, real_docx = extract._pdf, extract._docx

    def pdf(source: str, data: bytes) -> Extracted:
        seen.append(source)
        return real_pdf(source, data)

    def docx(source: str, data: bytes) -> Extracted:
        seen.append(source)
        return real_docx(source, data)

    monkeypatch.setattr(extract, "_pdf", pdf)
    monkeypatch.setattr(extract, "_docx", docx)
    return seen


# -- extraction ------------------------------------------------------------------------------
def test_pdf_text_title_and_date_come_from_the_file() -> None:
    data = make_pdf(PDF_PAGES, title="Essmere lamps", created="D:20230525120000Z")
    got = extract.extract("lamps.pdf", data)
    for line in PDF_PAGES[0] + PDF_PAGES[1]:
        assert got.text.count(line) == 1
    assert got.text.index(PDF_PAGES[0][-1]) < got.text.index(PDF_PAGES[1][0])
    assert (got.title, got.date) == ("Essmere lamps", "2023-05-25")


def test_docx_text_keeps_paragraphs_and_tables_in_order() -> None:
    data = make_docx(
        DOCX_PARAGRAPHS,
        title="Choir notes",
        created=datetime(2022, 3, 4, 5, 6),
        table=[["tenor", "Orrinwood"]],
    )
    got = extract.extract("choir.docx", data)
    lines = got.text.split("\n")
    assert lines == [DOCX_PARAGRAPHS[0], "tenor\tOrrinwood", *DOCX_PARAGRAPHS[1:]]
    assert (got.title, got.date) == ("Choir notes", "2022-03-04")


def test_tool_placeholders_are_not_taken_as_metadata() -> None:
    # reportlab titles every PDF "untitled"; python-docx dates every file like its template.
    assert extract.extract("a.pdf", make_pdf(PDF_PAGES)).title is None
    plain = extract.extract("a.docx", make_docx(DOCX_PARAGRAPHS))
    assert (plain.title, plain.date) == (None, None)


def test_a_scanned_pdf_is_refused_by_name() -> None:
    with pytest.raises(DocumentContentError, match=r"'scan\.pdf' has no text layer"):
        extract.extract("scan.pdf", make_scanned_pdf())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.4\n", "pdf"),
        (b"plain words", "text"),
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"PK\x03\x04broken", "a damaged ZIP archive"),
    ],
)
def test_sniff_names_what_the_bytes_are(data: bytes, expected: str) -> None:
    assert sniff(data) == expected


def test_sniff_tells_word_from_other_zip_files() -> None:
    assert sniff(make_docx(DOCX_PARAGRAPHS)) == "docx"


# -- in the seeds folder ---------------------------------------------------------------------
def _assert_offsets(client: TestClient, body: dict[str, object]) -> None:
    passages = body["passages"]
    assert isinstance(passages, list)
    assert passages
    texts: dict[str, str] = {}
    for p in passages:
        if p["source"] not in texts:
            texts[p["source"]] = client.get(f"/api/documents/{p['source']}").json()["text"]
        assert texts[p["source"]][p["start"] : p["end"]] == p["text"]
    answer = body["answer"]
    assert isinstance(answer, dict)
    assert texts[answer["source"]][answer["start"] : answer["end"]] == answer["text"]


def test_pdf_and_docx_in_the_folder_are_answered_with_exact_offsets(
    settings: Settings, seeds_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pdf = make_pdf(PDF_PAGES, title="Essmere lamps", created="D:20230525120000Z")
    (seeds_dir / "lamps.pdf").write_bytes(pdf)
    (seeds_dir / "choir.docx").write_bytes(make_docx(DOCX_PARAGRAPHS))
    (seeds_dir / "scan.pdf").write_bytes(make_scanned_pdf())
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as c:
        for question, source in ((PDF_QUESTION, "lamps.pdf"), (DOCX_QUESTION, "choir.docx")):
            body = c.get("/api/ask", params={"q": question}).json()
            assert body["answer"]["source"] == source
            _assert_offsets(c, body)
        doc = c.get("/api/documents/lamps.pdf").json()
        assert doc["text"] == extract.extract("lamps.pdf", pdf).text
        assert (doc["title"], doc["date"], doc["bytes"]) == (
            "Essmere lamps",
            "2023-05-25",
            len(pdf),
        )
        assert c.get("/api/documents/choir.docx").json()["title"] == DOCX_PARAGRAPHS[0]
        listed = {d["source"]: d for d in c.get("/api/documents").json()["documents"]}
        assert (listed["lamps.pdf"]["format"], listed["choir.docx"]["format"]) == ("pdf", "docx")
        assert "scan.pdf" not in listed
        skipped = c.app.state.ctx.service.last_build.skipped_files  # type: ignore[attr-defined]
    assert any(s.source == "scan.pdf" and "no text layer" in s.reason for s in skipped)
    assert any(
        "scan.pdf" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )


def test_offsets_stay_right_after_the_pdf_changes_on_disk(
    settings: Settings, seeds_dir: Path
) -> None:
    (seeds_dir / "lamps.pdf").write_bytes(make_pdf(PDF_PAGES))
    with TestClient(create_app(settings.replace(reload_interval=0.0))) as c:
        body = c.get("/api/ask", params={"q": PDF_QUESTION}).json()
        (seeds_dir / "lamps.pdf").write_bytes(make_pdf([["Something else entirely."]]))
        doc = c.get("/api/documents/lamps.pdf").json()
        assert doc["changed_since_indexed"] is True
        _assert_offsets(c, body)


# -- through the API -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "make", "question"),
    [
        ("uploads/lamps.pdf", lambda: make_pdf(PDF_PAGES), PDF_QUESTION),
        ("uploads/choir.docx", lambda: make_docx(DOCX_PARAGRAPHS), DOCX_QUESTION),
    ],
)
def test_uploaded_pdf_and_docx_are_answered_with_exact_offsets(
    settings: Settings, name: str, make: object, question: str, calls: list[str]
) -> None:
    assert callable(make)
    data = make()
    with TestClient(create_app(settings.replace(admin_token=TOKEN))) as c:
        r = c.put(f"/api/documents/{name}?wait=true", content=data, headers=AUTH)
        assert r.status_code == 201, r.text
        body = c.get("/api/ask", params={"q": question}).json()
        assert body["answer"]["source"] == name
        _assert_offsets(c, body)
    assert calls == [name]  # checked on upload, and the build reused that extraction


def test_each_file_is_extracted_once_per_content_hash(
    settings: Settings, seeds_dir: Path, calls: list[str]
) -> None:
    (seeds_dir / "lamps.pdf").write_bytes(make_pdf(PDF_PAGES))
    first = build_index(settings)
    assert calls == ["lamps.pdf"]
    kept = read_documents(settings.index_dir, str(first.generation))["lamps.pdf"]["extracted"]
    assert kept is not None
    lamps = [p for p in load_index(settings).passages if p.source == "lamps.pdf"]
    assert lamps
    assert all(kept["text"][p.start : p.end] == p.text for p in lamps)
    EXTRACTIONS.clear()  # a new process: only the index remembers
    (seeds_dir / "lamps.pdf").rename(seeds_dir / "renamed.pdf")
    (seeds_dir / "extra.txt").write_text("Another article about granaries.\n", encoding="utf-8")
    second = build_index(settings)
    assert (second.renamed, second.added) == (1, 1)
    assert calls == ["lamps.pdf"]  # the rename reused the text kept with the index
    (seeds_dir / "renamed.pdf").write_bytes(make_pdf([["A new edition of the lamps story."]]))
    assert build_index(settings).updated == 1
    assert calls == ["lamps.pdf", "renamed.pdf"]  # new content: extracted again
