"""Managing documents over HTTP: the catalog, uploads, deletions, safe names, limits, the build
lock, and the /documents page. Uses the fake embedder, so everything runs in seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from filelock import FileLock

from qa.config import Settings
from qa.index import builder
from qa.index import storage as store
from tests.docfiles import ARTICLE, QUESTION, make_pdf, make_scanned_pdf
from web.app import create_app
from web.security import BodyGuardMiddleware

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    """The app with an admin token configured."""
    with TestClient(create_app(settings.replace(admin_token=TOKEN))) as c:
        yield c


def seed_files(seeds: Path) -> dict[str, bytes]:
    """Every file under the seeds folder (hidden ones included) and its bytes."""
    return {
        p.relative_to(seeds).as_posix(): p.read_bytes() for p in seeds.rglob("*") if p.is_file()
    }


def all_pages(c: TestClient, **params: Any) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        r = c.get("/api/documents", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        docs.extend(body["documents"])
        cursor = body["next_cursor"]
        if cursor is None:
            return docs
    raise AssertionError("paging never ended")


# -- the catalog -----------------------------------------------------------------------------
def test_catalog_pages_cover_every_document_once_newest_first(
    client: TestClient, settings: Settings
) -> None:
    gen = client.app.state.ctx.service.generation  # type: ignore[attr-defined]
    docs = all_pages(client, limit=2)
    assert sorted(d["source"] for d in docs) == sorted(gen.documents)
    dated = [d["date"] for d in docs if d["date"]]
    assert dated == sorted(dated, reverse=True)
    undated_seen = False
    for d in docs:  # undated documents come after every dated one
        undated_seen = undated_seen or d["date"] is None
        assert not (undated_seen and d["date"] is not None)
    for d in docs:
        meta = gen.documents[d["source"]]
        assert d["content_hash"] == meta["hash"]
        assert d["passages"] == len(meta["passages"])
        assert d["bytes"] == (settings.seeds_dir / d["source"]).stat().st_size
    first = client.get("/api/documents", params={"limit": 2}).json()
    assert first["total"] == len(gen.documents)
    assert len(first["documents"]) == 2


def test_catalog_filters_by_title_and_date(client: TestClient) -> None:
    everything = all_pages(client)
    word = everything[0]["title"].split()[0]
    by_title = all_pages(client, title=word.upper())
    assert by_title
    assert by_title == [d for d in everything if word.lower() in (d["title"] or "").lower()]
    dates = sorted(d["date"] for d in everything if d["date"])
    lo, hi = dates[0], dates[len(dates) // 2]
    ranged = all_pages(client, date_from=lo, date_to=hi)
    assert ranged == [d for d in everything if d["date"] and lo <= d["date"] <= hi]
    assert len(ranged) < len(everything)


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor!"},
        {"cursor": "WyJ4Il0"},  # base64 of ["x"]: valid JSON, not a cursor
        {"date_from": "2024-02-30"},
        {"date_from": "2024-05-01", "date_to": "2024-01-01"},
        {"limit": "0"},
    ],
)
def test_catalog_refuses_bad_parameters_with_422(
    client: TestClient, params: dict[str, str]
) -> None:
    r = client.get("/api/documents", params=params)
    assert r.status_code == 422
    assert r.json()["detail"]


def test_documents_page_lists_documents_without_javascript(client: TestClient) -> None:
    r = client.get("/documents", params={"limit": 2})
    assert r.status_code == 200
    page = r.context["page"]  # type: ignore[attr-defined]
    assert len(page.documents) == 2
    for d in page.documents:
        assert f'href="/documents/{d.source}"' in r.text
    assert r.context["next_url"] in r.text.replace("&amp;", "&")  # type: ignore[attr-defined]
    assert 'action="/documents/upload"' not in r.text  # no token configured: no forms
    assert "Delete" not in r.text


# -- authorisation ---------------------------------------------------------------------------
def test_changes_are_403_without_a_configured_token(client: TestClient, seeds_dir: Path) -> None:
    before = seed_files(seeds_dir)
    r = client.put("/api/documents/new.txt", content=ARTICLE.encode(), headers=AUTH)
    assert r.status_code == 403
    assert "QA_ADMIN_TOKEN" in r.json()["detail"]
    name = next(iter(before))
    assert client.delete(f"/api/documents/{name}", headers=AUTH).status_code == 403
    assert seed_files(seeds_dir) == before


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_changes_are_401_with_a_missing_or_wrong_token(
    admin: TestClient, seeds_dir: Path, headers: dict[str, str]
) -> None:
    before = seed_files(seeds_dir)
    r = admin.put("/api/documents/new.txt", content=ARTICLE.encode(), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert admin.delete(f"/api/documents/{next(iter(before))}", headers=headers).status_code == 401
    assert seed_files(seeds_dir) == before


# -- adding, replacing, deleting ------------------------------------------------------------
def test_put_wait_makes_the_article_answerable_then_delete_removes_it(
    admin: TestClient, seeds_dir: Path
) -> None:
    r = admin.put("/api/documents/museum/lanterns.txt?wait=true", content=ARTICLE, headers=AUTH)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["action"], body["status"]) == ("created", "live")
    assert body["build"]["added"] == 1
    assert body["generation"] == admin.get("/healthz").json()["generation"]
    assert body["searchable_at"]
    assert (seeds_dir / "museum/lanterns.txt").read_text(encoding="utf-8") == ARTICLE
    answer = admin.get("/api/ask", params={"q": QUESTION}).json()["answer"]
    assert answer is not None
    assert answer["source"] == "museum/lanterns.txt"
    doc = admin.get("/api/documents/museum/lanterns.txt").json()
    assert doc["text"][answer["start"] : answer["end"]] == answer["text"]
    assert "Quorvath Belisande" in answer["text"]
    listed = {d["source"]: d for d in all_pages(admin)}
    assert listed["museum/lanterns.txt"]["date"] == "2024-03-02"

    r = admin.delete("/api/documents/museum/lanterns.txt?wait=true", headers=AUTH)
    assert r.status_code == 200
    assert (r.json()["action"], r.json()["status"]) == ("deleted", "live")
    assert r.json()["build"]["removed"] == 1
    assert not (seeds_dir / "museum").exists()  # the folder the upload made goes with it
    assert "museum/lanterns.txt" not in {d["source"] for d in all_pages(admin)}
    after = admin.get("/api/ask", params={"q": QUESTION}).json()
    assert all(p["source"] != "museum/lanterns.txt" for p in after["passages"])


def test_put_replaces_and_reports_unchanged(admin: TestClient) -> None:
    url = "/api/documents/lanterns.md?wait=true"
    assert admin.put(url, content=ARTICLE, headers=AUTH).status_code == 201
    edited = ARTICLE.replace("four hundred", "nine hundred")
    r = admin.put(url, content=edited, headers=AUTH)
    assert (r.status_code, r.json()["action"], r.json()["build"]["updated"]) == (200, "replaced", 1)
    r = admin.put(url, content=edited, headers=AUTH)
    assert (r.status_code, r.json()["action"], r.json()["build"]["changed"]) == (
        200,
        "unchanged",
        False,
    )
    assert admin.get("/api/documents/lanterns.md").json()["text"] == edited


def test_put_without_wait_is_202_and_becomes_searchable(admin: TestClient) -> None:
    r = admin.put("/api/documents/lanterns.txt", content=ARTICLE, headers=AUTH)
    assert r.status_code == 202
    assert (r.json()["status"], r.json()["build"], r.json()["searchable_at"]) == (
        "building",
        None,
        None,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if "lanterns.txt" in {d["source"] for d in all_pages(admin)}:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the document never became searchable")


def test_deleting_a_missing_document_is_404(admin: TestClient, seeds_dir: Path) -> None:
    before = seed_files(seeds_dir)
    r = admin.delete("/api/documents/no-such-article.txt", headers=AUTH)
    assert r.status_code == 404
    assert "no-such-article.txt" in r.json()["detail"]
    assert seed_files(seeds_dir) == before


# -- safe names, sizes and contents -----------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("..%2F..%2Fetc%2Fpasswd.txt", 422, "'..'"),
        ("sub%2F..%2F..%2Fescape.txt", 422, "'..'"),
        ("%2Fetc%2Fcron.txt", 422, "absolute"),
        ("C:%2Fwindows%2Fx.txt", 422, "absolute"),
        ("a%5C..%5Cb.txt", 422, "backslash"),
        (".hidden.txt", 422, "hidden"),
        ("sub/.git/config.txt", 422, "hidden"),
        ("CON.txt", 422, "device"),
        ("nul", 422, "device"),
        ("a%00b.txt", 422, "control character"),
        ("x" * 250 + ".txt", 422, "longer than"),
        ("trailing%20/a.txt", 422, "trailing"),
        ("program.exe", 415, "allowed"),
        ("README", 415, "allowed"),
    ],
)
def test_unsafe_names_are_refused_and_nothing_is_written(
    admin: TestClient, seeds_dir: Path, path: str, status: int, words: str
) -> None:
    before = seed_files(seeds_dir)
    generation = admin.get("/healthz").json()["generation"]
    r = admin.put(f"/api/documents/{path}?wait=true", content=ARTICLE, headers=AUTH)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert seed_files(seeds_dir) == before
    assert not list(seeds_dir.parent.glob("*.txt"))  # nothing escaped the seeds folder
    assert admin.get("/healthz").json()["generation"] == generation


def test_put_refuses_a_symlinked_folder_on_the_way(
    admin: TestClient, seeds_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (seeds_dir / "link").symlink_to(outside, target_is_directory=True)
    r = admin.put("/api/documents/link/x.txt?wait=true", content=ARTICLE, headers=AUTH)
    assert r.status_code == 422
    assert "not a plain folder" in r.json()["detail"]
    assert not list(outside.iterdir())


def test_zero_byte_upload_is_422(admin: TestClient, seeds_dir: Path) -> None:
    r = admin.put("/api/documents/empty.txt", content=b"", headers=AUTH)
    assert r.status_code == 422
    assert "'empty.txt' is empty" in r.json()["detail"]
    assert not (seeds_dir / "empty.txt").exists()


def test_oversized_upload_is_413(settings: Settings, seeds_dir: Path) -> None:
    small = settings.replace(admin_token=TOKEN, max_document_bytes=len(ARTICLE) - 1)
    with TestClient(create_app(small)) as c:
        r = c.put("/api/documents/big.txt", content=ARTICLE, headers=AUTH)
        assert r.status_code == 413
        assert str(len(ARTICLE) - 1) in r.json()["detail"]

        def stream() -> Iterator[bytes]:  # no Content-Length: the guard counts while reading
            yield ARTICLE.encode()

        r = c.put("/api/documents/big.txt", content=stream(), headers=AUTH)
        assert r.status_code == 413
        assert c.put("/api/documents/ok.txt", content=ARTICLE[:50], headers=AUTH).status_code in (
            201,
            202,
        )
    assert not (seeds_dir / "big.txt").exists()


def test_uploads_may_be_larger_than_the_json_body_limit(admin: TestClient) -> None:
    long = ARTICLE + "The lanterns are old.\n" * 4000  # about 100 KB, over the 64 KiB API limit
    r = admin.put("/api/documents/long.txt?wait=true", content=long, headers=AUTH)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("name", "content", "content_type", "status", "words"),
    [
        ("report.txt", "pdf", None, 415, "a PDF document"),
        ("report.pdf", ARTICLE.encode(), None, 415, "its content is text"),
        ("report.docx", "pdf", None, 415, "a PDF document"),
        ("report.txt", ARTICLE.encode(), "application/pdf", 415, "Content-Type"),
        ("report.txt", ARTICLE.encode(), "text/plain; charset=latin-1", 415, "UTF-8"),
        ("report.txt", ARTICLE.encode(), "image/png", 415, "image/png"),
        ("report.txt", b"\x89PNG\r\n\x1a\n....", None, 415, "PNG image"),
        ("report.txt", "caf\xe9".encode("latin-1"), None, 422, "not UTF-8"),
        ("report.pdf", b"%PDF-1.7\nnot really", None, 422, "damaged PDF"),
        ("scan.pdf", "scanned", None, 422, "'scan.pdf' has no text layer"),
    ],
)
def test_content_that_is_not_what_the_name_says_is_refused(
    admin: TestClient,
    seeds_dir: Path,
    name: str,
    content: bytes | str,
    content_type: str | None,
    status: int,
    words: str,
) -> None:
    if content == "pdf":
        content = make_pdf([["Quorvath Belisande founded the museum."]])
    elif content == "scanned":
        content = make_scanned_pdf()
    assert isinstance(content, bytes)
    before = seed_files(seeds_dir)
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    r = admin.put(f"/api/documents/{name}?wait=true", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert seed_files(seeds_dir) == before


# -- the build lock --------------------------------------------------------------------------
def test_put_while_another_build_holds_the_lock_is_409_and_writes_nothing(
    admin: TestClient, settings: Settings, seeds_dir: Path
) -> None:
    before = seed_files(seeds_dir)
    with FileLock(str(settings.index_dir / store.LOCK)):
        r = admin.put("/api/documents/lanterns.txt?wait=true", content=ARTICLE, headers=AUTH)
        assert r.status_code == 409
        assert "already running" in r.json()["detail"]
        name = next(iter(before))
        assert admin.delete(f"/api/documents/{name}", headers=AUTH).status_code == 409
    assert seed_files(seeds_dir) == before


def test_put_with_lock_wait_waits_for_the_running_build(
    admin: TestClient, settings: Settings
) -> None:
    lock = FileLock(str(settings.index_dir / store.LOCK), thread_local=False)
    lock.acquire()
    release = threading.Timer(0.5, lock.release)
    release.start()
    try:
        r = admin.put(
            "/api/documents/lanterns.txt?wait=true&lock_wait=30", content=ARTICLE, headers=AUTH
        )
    finally:
        release.join()
    assert r.status_code == 201, r.text
    assert r.json()["build"]["added"] == 1


def test_uploads_racing_a_reindex_are_409_or_done_and_queries_never_fail(
    admin: TestClient, seeds_dir: Path
) -> None:
    failures: list[str] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            r = admin.get("/api/ask", params={"q": QUESTION})
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text}")

    asker = threading.Thread(target=ask)
    asker.start()
    results: list[int] = []

    def reindex() -> None:
        for _ in range(5):
            results.append(admin.post("/api/reindex?rebuild=true", headers=AUTH).status_code)

    rebuilder = threading.Thread(target=reindex)
    rebuilder.start()
    statuses = []
    for i in range(8):
        body = ARTICLE.replace("four hundred", f"{i} hundred")
        r = admin.put(f"/api/documents/race{i}.txt?wait=true", content=body, headers=AUTH)
        statuses.append(r.status_code)
        written = (seeds_dir / f"race{i}.txt").exists()
        assert written == (r.status_code == 201), r.text
    rebuilder.join()
    stop.set()
    asker.join()
    assert not failures
    assert set(statuses) <= {201, 409}
    assert set(results) <= {200, 409}
    listed = {d["source"] for d in all_pages(admin)}
    assert {f"race{i}.txt" for i, s in enumerate(statuses) if s == 201} <= listed


def test_a_failed_build_puts_the_old_file_back(
    admin: TestClient, seeds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = sorted(seed_files(seeds_dir))[0]
    old = (seeds_dir / name).read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(builder, "_build_locked", broken)
    r = admin.put(f"/api/documents/{name}?wait=true", content=ARTICLE, headers=AUTH)
    assert r.status_code == 500
    assert (seeds_dir / name).read_bytes() == old
    r = admin.put("/api/documents/fresh.txt?wait=true", content=ARTICLE, headers=AUTH)
    assert r.status_code == 500
    assert not (seeds_dir / "fresh.txt").exists()


# -- the page's forms --------------------------------------------------------------------------
def test_page_forms_upload_and_delete_with_the_token(admin: TestClient, seeds_dir: Path) -> None:
    page = admin.get("/documents")
    assert 'action="/documents/upload"' in page.text
    assert 'type="password"' in page.text
    files = {"file": ("lanterns.txt", ARTICLE.encode(), "text/plain")}
    r = admin.post("/documents/upload", data={"token": "wrong"}, files=files)
    assert r.status_code == 401
    assert "admin token" in r.context["error"]  # type: ignore[attr-defined]
    assert not (seeds_dir / "lanterns.txt").exists()
    r = admin.post("/documents/upload", data={"token": TOKEN}, files=files, follow_redirects=False)
    assert r.status_code == 303
    r = admin.get(r.headers["location"])
    assert "searchable now" in r.context["notice"]  # type: ignore[attr-defined]
    assert "lanterns.txt" in {d.source for d in r.context["page"].documents}  # type: ignore[attr-defined]
    r = admin.post(
        "/documents/delete",
        data={"token": TOKEN, "source": "lanterns.txt"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert not (seeds_dir / "lanterns.txt").exists()
    r = admin.post("/documents/delete", data={"token": TOKEN, "source": "lanterns.txt"})
    assert r.status_code == 404
    assert "lanterns.txt" in r.context["error"]  # type: ignore[attr-defined]


def _guard_run(
    guard: BodyGuardMiddleware, method: str, path: str, chunks: list[bytes]
) -> tuple[list[dict[str, Any]], bytes | None]:
    """Send a body in ``chunks`` through the guard: what it answered, and what the app got."""
    import anyio

    got: list[bytes] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard.app = app
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    anyio.run(guard, scope, receive, send)
    return sent, got[0] if got else None


def test_body_guard_lets_binary_uploads_through_up_to_the_document_limit() -> None:
    guard = BodyGuardMiddleware(lambda *a: None, max_bytes=100, upload_max_bytes=1000)  # type: ignore[arg-type]
    binary = [b"%PDF-\xff" * 50, b"\xfe" * 600]  # 900 bytes, not UTF-8, over the JSON limit
    sent, got = _guard_run(guard, "PUT", "/api/documents/a.pdf", binary)
    assert (sent[0]["status"], got) == (200, b"".join(binary))
    sent, got = _guard_run(guard, "PUT", "/api/documents/a.pdf", [*binary, b"x" * 101])
    assert (sent[0]["status"], got) == (413, None)
    assert b"1000" in sent[1]["body"]
    for method, path in (("POST", "/api/ask"), ("PUT", "/api/reindex")):
        sent, got = _guard_run(guard, method, path, binary)  # elsewhere the JSON limit holds
        assert (sent[0]["status"], got) == (413, None)


def test_an_upload_holds_the_lock_that_cli_builds_and_the_watcher_take(
    admin: TestClient, settings: Settings, seeds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an upload is being written, ``qa index`` and the service's own builds (the watcher
    and ``POST /api/reindex`` call ``reindex``) are refused, and they work again after it."""
    from qa import cli
    from qa.ask import changes

    writing, release = threading.Event(), threading.Event()
    real_write = changes.store.write_atomic

    def slow_write(path: Path, data: bytes) -> None:
        writing.set()
        release.wait(10)
        real_write(path, data)

    monkeypatch.setattr(changes.store, "write_atomic", slow_write)
    put: list[int] = []
    uploader = threading.Thread(
        target=lambda: put.append(
            admin.put(
                "/api/documents/held.txt?wait=true", content=ARTICLE, headers=AUTH
            ).status_code
        )
    )
    uploader.start()
    assert writing.wait(10)
    argv = [
        "index",
        "--seeds",
        str(seeds_dir),
        "--index",
        str(settings.index_dir),
        "--model",
        "fake",
    ]
    try:
        assert cli.main([*argv, "--wait", "0"]) == 2  # busy: refused with a message
        assert admin.post("/api/reindex", headers=AUTH).status_code == 409
    finally:
        release.set()
        uploader.join()
    assert put == [201]
    assert cli.main(argv) == 0


def test_page_notes_are_shown_only_when_the_index_bears_them_out(client: TestClient) -> None:
    name = all_pages(client)[0]["source"]
    saved = client.get("/documents", params={"done": "created", "source": name})
    assert name in saved.context["notice"]  # type: ignore[attr-defined]
    for forged in ({"done": "deleted", "source": name}, {"done": "created", "source": "x.txt"}):
        assert client.get("/documents", params=forged).context["notice"] is None  # type: ignore[attr-defined]
