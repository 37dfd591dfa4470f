"""The JSON API over HTTP: the ask contract with exact provenance, errors, documents, reindex,
health, metrics and security headers. Uses the fake embedder, so everything runs in seconds."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from filelock import FileLock

from qa.ask.service import QAService
from qa.config import Settings
from qa.errors import IndexCorruptError
from qa.index import storage as store
from web.app import create_app
from web.deps import get_service
from web.security import MAX_BODY_BYTES, BodyGuardMiddleware

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
QUESTION = "Who is chairman of the West Chester Township Board of Trustees?"


@pytest.fixture
def seeds(seeds_dir: Path) -> Path:
    """The private seed copy behind the ``settings`` and ``client`` fixtures of conftest."""
    return seeds_dir


def source_text(seeds: Path, source: str) -> str:
    return (seeds / source).read_bytes().decode("utf-8")


def assert_provenance(seeds: Path, body: dict[str, Any]) -> None:
    assert body["passages"], "expected passages"
    for p in body["passages"]:
        assert source_text(seeds, p["source"])[p["start"] : p["end"]] == p["text"]


# -- asking ----------------------------------------------------------------------------------
def test_post_ask_returns_the_contract_with_exact_provenance(
    client: TestClient, seeds: Path
) -> None:
    r = client.post("/api/ask", json={"question": QUESTION, "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["question"] == QUESTION
    assert {"question", "answer", "passages", "took_ms", "abstain_reason"} <= body.keys()
    assert [p["rank"] for p in body["passages"]] == [1, 2, 3]
    for p in body["passages"]:
        assert {"rank", "score", "text", "source", "title", "date", "start", "end", "chunk_id"} <= (
            p.keys()
        )
    assert_provenance(seeds, body)
    answer = body["answer"]
    assert answer is not None
    assert "Lee Wong" in answer["text"]
    assert source_text(seeds, answer["source"])[answer["start"] : answer["end"]] == answer["text"]
    assert answer["citations"]
    by_rank = {p["rank"]: p for p in body["passages"]}
    for n in answer["citations"]:
        cited = by_rank[n]
        assert cited["source"] == answer["source"]
        assert cited["start"] <= answer["start"]
        assert answer["end"] <= cited["end"]
        assert answer["text"] in cited["text"]
    assert answer["rendered"].startswith(answer["text"])


def test_get_ask_gives_the_same_passages_as_post(client: TestClient, seeds: Path) -> None:
    posted = client.post("/api/ask", json={"question": QUESTION, "k": 4}).json()
    r = client.get("/api/ask", params={"q": QUESTION, "k": 4})
    assert r.status_code == 200
    got = r.json()
    assert_provenance(seeds, got)
    assert [p["chunk_id"] for p in got["passages"]] == [p["chunk_id"] for p in posted["passages"]]
    assert got["answer"] == posted["answer"]


def test_answer_false_returns_passages_only(client: TestClient) -> None:
    body = client.post("/api/ask", json={"question": QUESTION, "answer": False}).json()
    assert body["answer"] is None
    assert body["abstain_reason"] is None
    assert len(body["passages"]) == 5


def test_filters_limit_sources_and_dates(client: TestClient) -> None:
    only = "004_e482e4571cd424a3.txt"
    body = client.post(
        "/api/ask", json={"question": "Chongqing", "k": 10, "sources": [only]}
    ).json()
    assert body["passages"]
    assert {p["source"] for p in body["passages"]} == {only}
    body = client.get(
        "/api/ask", params={"q": "Chongqing", "k": 10, "date_from": "2024-01-01"}
    ).json()
    assert body["passages"]
    assert all(p["date"] is not None and p["date"] >= "2024-01-01" for p in body["passages"])
    body = client.post(
        "/api/ask", json={"question": "Chongqing", "mode": "bm25", "answer": False}
    ).json()
    assert body["mode"] == "bm25"


@pytest.mark.parametrize(
    "question",
    [
        "重庆和加利福尼亚的合作是什么?",
        "Chongqing 🚄 high-speed rail 🇺🇸",
        "ما هي العلاقة بين تشونغتشينغ وكاليفورنيا؟",
    ],
)
def test_non_latin_questions_get_an_exact_quote_or_a_reason(
    client: TestClient, seeds: Path, question: str
) -> None:
    r = client.post("/api/ask", json={"question": question})
    assert r.status_code == 200
    body = r.json()
    assert body["question"] == question
    assert_provenance(seeds, body)
    answer = body["answer"]
    if answer is None:
        assert body["abstain_reason"]
        return
    raw = source_text(seeds, answer["source"])
    assert raw[answer["start"] : answer["end"]] == answer["text"]
    assert answer["citations"]
    for n in answer["citations"]:
        p = body["passages"][n - 1]
        assert p["source"] == answer["source"]
        assert p["start"] <= answer["start"]
        assert answer["end"] <= p["end"]
    if answer["span"] is not None:
        assert raw[answer["span"]["start"] : answer["span"]["end"]] == answer["span"]["text"]
        assert answer["start"] <= answer["span"]["start"] <= answer["span"]["end"] <= answer["end"]


# -- client errors: always 4xx with a detail naming the problem ------------------------------
BAD_BODIES = [
    ({"k": 3}, 422, "question"),
    ({"question": ""}, 422, "empty"),
    ({"question": "   \n\t"}, 422, "blank"),
    ({"question": "x" * 2001}, 422, "2001 characters"),
    ({"question": 42}, 422, "question"),
    ({"question": ["a"]}, 422, "question"),
    ({"question": "ok", "k": "5"}, 422, "k"),
    ({"question": "ok", "k": 5.0}, 422, "k"),
    ({"question": "ok", "k": True}, 422, "k"),
    ({"question": "ok", "k": 0}, 422, "greater than or equal to 1"),
    ({"question": "ok", "k": 51}, 422, "less than or equal to 50"),
    ({"question": "ok", "answer": "yes"}, 422, "answer"),
    ({"question": "ok", "answer": 1}, 422, "answer"),
    ({"question": "ok", "mode": "fuzzy"}, 422, "mode"),
    ({"question": "ok", "sources": "a.txt"}, 422, "sources"),
    ({"question": "ok", "date_from": "2023-02-30"}, 422, "date_from"),
    ({"question": "ok", "date_from": "May 2023"}, 422, "date_from"),
    ({"question": "ok", "date_from": "2024-01-01", "date_to": "2023-01-01"}, 422, "after"),
    ({"question": "ok", "questoin": "typo"}, 422, "unknown field"),
    ({"question": "nul\u0000byte"}, 422, "control character (U+0000)"),
    ({"question": "bell\u0007"}, 422, "control character (U+0007)"),
    ([], 422, "body"),
    ("just a string", 422, "body"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_BODIES)
def test_bad_json_values_are_4xx_with_detail(
    client: TestClient, body: object, status: int, fragment: str
) -> None:
    r = client.post("/api/ask", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    assert fragment in detail


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b'{"question": "ok",', 400, "malformed JSON"),
        (b"{'question': 'ok'}", 400, "malformed JSON"),
        (b'{"question": "caf\xe9"}', 400, "not valid UTF-8 (byte 0xe9 at offset 17)"),
        (b'{"question": "\\ud800 lone"}', 422, "unpaired surrogate"),
        (b"", 422, "body"),
    ],
)
def test_malformed_bodies_are_4xx_with_detail(
    client: TestClient, raw: bytes, status: int, fragment: str
) -> None:
    r = client.post("/api/ask", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert fragment in r.json()["detail"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "q"),
        ({"q": ""}, "empty"),
        ({"q": "ok", "k": "abc"}, "k"),
        ({"q": "ok", "k": "99"}, "k"),
        ({"q": "ok", "answer": "maybe"}, "answer"),
        ({"q": "a\x00b"}, "control character"),
        ({"q": "ok", "date_to": "tomorrow"}, "date_to"),
    ],
)
def test_bad_query_strings_are_422(
    client: TestClient, params: dict[str, str], fragment: str
) -> None:
    r = client.get("/api/ask", params=params)
    assert r.status_code == 422, r.text
    assert fragment in r.json()["detail"]


def test_oversized_body_is_413_by_declared_length(client: TestClient) -> None:
    body = json.dumps({"question": "x" * (MAX_BODY_BYTES + 10)})
    r = client.post("/api/ask", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "65536 bytes" in r.json()["detail"]


def test_oversized_chunked_body_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    r = client.post("/api/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


async def _drive(middleware: BodyGuardMiddleware, headers: list[tuple[bytes, bytes]]) -> Any:
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}  # endless

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/ask", "headers": headers}
    await middleware(scope, receive, send)
    return received, sent


def test_body_guard_stops_reading_at_the_limit() -> None:
    import anyio

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be called")

    guard = BodyGuardMiddleware(app, max_bytes=8 * 1024)
    received, sent = anyio.run(_drive, guard, [])
    assert sent[0]["status"] == 413
    assert received == 9  # 9 KiB read, then refused: never the whole (endless) body
    received, sent = anyio.run(_drive, guard, [(b"content-length", b"1000000000")])
    assert sent[0]["status"] == 413
    assert received == 0


def test_unexpected_errors_are_a_bare_500_and_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def ask(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals")

    app = create_app(settings)
    app.dependency_overrides[get_service] = Broken
    with TestClient(app) as c:
        r = c.post("/api/ask", json={"question": "anything"})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error"}
    assert "secret" not in r.text
    assert "Traceback" not in r.text
    assert "secret internals" in caplog.text  # logged with its traceback for the operator


def test_index_errors_are_503_with_the_reason(settings: Settings) -> None:
    class Corrupt:
        def ask(self, *args: object, **kwargs: object) -> None:
            raise IndexCorruptError("index file 'x/index.faiss' is missing; rebuild it")

    app = create_app(settings)
    app.dependency_overrides[get_service] = Corrupt
    with TestClient(app) as c:
        r = c.get("/api/ask", params={"q": "anything"})
    assert r.status_code == 503
    assert "index.faiss' is missing" in r.json()["detail"]


def test_not_loaded_service_gives_503_until_an_index_exists(settings: Settings) -> None:
    service = QAService(settings)  # passed in unstarted: the caller owns its lifecycle
    try:
        with TestClient(create_app(service=service)) as c:
            r = c.get("/healthz")
            assert r.status_code == 503
            assert r.json()["status"] == "starting"
            r = c.post("/api/ask", json={"question": "Chongqing"})
            assert r.status_code == 503
            assert "no index" in r.json()["detail"]
            service.reindex()
            assert c.get("/healthz").status_code == 200
            assert c.post("/api/ask", json={"question": "Chongqing"}).status_code == 200
    finally:
        service.close()


def test_a_broken_seeds_folder_at_startup_serves_the_old_index(settings: Settings) -> None:
    with TestClient(create_app(settings)):
        pass  # builds the index
    shutil.rmtree(settings.seeds_dir)
    with TestClient(create_app(settings)) as c:
        health = c.get("/healthz")
        assert health.status_code == 200
        assert health.json()["documents"] == 5
        assert "does not exist" in health.json()["detail"]
        assert "seeds folder" in c.get("/").text  # the page says the index is not up to date
        assert c.post("/api/ask", json={"question": "Chongqing"}).status_code == 200


# -- documents -------------------------------------------------------------------------------
def test_document_returns_fresh_text_and_metadata(client: TestClient, seeds: Path) -> None:
    source = "001_f9d77ace89610aea.txt"
    r = client.get(f"/api/documents/{source}")
    assert r.status_code == 200
    doc = r.json()
    assert doc["text"] == source_text(seeds, source)
    assert doc["title"] == "Chinese industry delegation starts first visit to US in three years"
    assert doc["date"] == "2023-05-25"
    assert doc["passages"] >= 1
    assert doc["changed_since_indexed"] is False
    (seeds / source).write_text("Replaced text.\n", encoding="utf-8")
    doc = client.get(f"/api/documents/{source}").json()
    assert doc["text"] == "Replaced text.\n"
    assert doc["changed_since_indexed"] is True


@pytest.mark.parametrize(
    "path",
    [
        "/api/documents/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/documents/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/api/documents/%2e%2e%2fsecret.txt",
        "/api/documents/%2Fetc%2Fpasswd",
        "/api/documents//etc/passwd",
        "/api/documents/..%5Csecret.txt",
        "/api/documents/nope.txt",
        "/api/documents/000_b12d02cff80cfccd.txt%00.png",
    ],
)
def test_document_refuses_anything_outside_the_seeds(
    client: TestClient, seeds: Path, path: str
) -> None:
    (seeds.parent / "secret.txt").write_text("TOP SECRET", encoding="utf-8")
    r = client.get(path)
    assert r.status_code == 404, r.text
    assert "TOP SECRET" not in r.text
    assert "root:" not in r.text
    assert "no document" in r.json()["detail"]


def test_document_refuses_an_indexed_file_replaced_by_an_outside_symlink(
    client: TestClient, seeds: Path
) -> None:
    secret = seeds.parent / "secret.txt"
    secret.write_text("TOP SECRET", encoding="utf-8")
    source = "000_b12d02cff80cfccd.txt"
    (seeds / source).unlink()
    (seeds / source).symlink_to(secret)
    r = client.get(f"/api/documents/{source}")
    assert r.status_code == 404
    assert "TOP SECRET" not in r.text


# -- reindex ---------------------------------------------------------------------------------
def test_reindex_is_disabled_without_a_token(client: TestClient) -> None:
    r = client.post("/api/reindex", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403
    assert "disabled" in r.json()["detail"]


def test_reindex_needs_the_right_token_and_picks_up_new_seeds(
    settings: Settings, seeds: Path
) -> None:
    with TestClient(create_app(settings.replace(admin_token="s3cret-token"))) as c:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}]:
            r = c.post("/api/reindex", headers=headers)
            assert r.status_code == 401, headers
            assert "token" in r.json()["detail"]
            assert r.headers["WWW-Authenticate"] == "Bearer"
        before = c.get("/healthz").json()
        shutil.copy(seeds / "001_f9d77ace89610aea.txt", seeds / "copy-then-edit.txt")
        with open(seeds / "new.txt", "w", encoding="utf-8") as fh:
            fh.write("A new article\n\nThe lighthouse keeper counted 4242 gulls on Tuesday.\n")
        r = c.post("/api/reindex", headers={"Authorization": "Bearer s3cret-token"})
        assert r.status_code == 200
        summary = r.json()
        assert summary["added"] == 2
        assert summary["unchanged"] == 5
        assert summary["changed"] is True
        after = c.get("/healthz").json()
        assert after["documents"] == before["documents"] + 2
        assert after["passages"] > before["passages"]
        assert after["generation"] == summary["generation"] != before["generation"]
        hit = c.get("/api/ask", params={"q": "lighthouse keeper gulls", "k": 1}).json()
        assert hit["passages"][0]["source"] == "new.txt"


def test_reindex_while_another_build_holds_the_lock_is_409(settings: Settings) -> None:
    with TestClient(create_app(settings.replace(admin_token="t"))) as c:
        lock = FileLock(str(settings.index_dir / store.LOCK))
        with lock:
            r = c.post("/api/reindex", headers={"Authorization": "Bearer t"})
        assert r.status_code == 409
        assert "already running" in r.json()["detail"]
        assert c.post("/api/reindex", headers={"Authorization": "Bearer t"}).status_code == 200


def test_queries_during_rebuilds_are_all_answered_consistently(
    settings: Settings, seeds: Path
) -> None:
    """Readers never see a half-built index: every passage matches some version of its file."""
    versions: dict[str, list[str]] = {p.name: [source_text(seeds, p.name)] for p in seeds.iterdir()}
    problems: list[str] = []
    answered: list[int] = []
    stop = threading.Event()

    def check(body: dict[str, Any]) -> None:
        for p in body["passages"]:
            texts = versions.get(p["source"], [])
            if not any(t[p["start"] : p["end"]] == p["text"] for t in texts):
                problems.append(f"{p['source']}:{p['start']}-{p['end']} matches no version")

    with TestClient(create_app(settings.replace(admin_token="t"))) as c:

        def ask_loop() -> None:
            questions = ["Chongqing", "California trade office", "delegation visit", "rail"]
            i = 0
            while not stop.is_set():
                r = c.get("/api/ask", params={"q": questions[i % 4], "k": 8})
                i += 1
                if r.status_code != 200:
                    problems.append(f"status {r.status_code}: {r.text[:200]}")
                else:
                    check(r.json())
                    answered.append(1)

        threads = [threading.Thread(target=ask_loop) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for round_ in range(5):
                name = sorted(versions)[round_ % len(versions)]
                text = versions[name][-1].replace("Chongqing", "Chongqing City", 1)
                text = f"Edited {round_}: a new first line shifts every offset.\n" + text
                versions[name].append(text)
                (seeds / name).write_text(text, encoding="utf-8")
                r = c.post("/api/reindex", headers={"Authorization": "Bearer t"})
                assert r.status_code == 200
                assert r.json()["updated"] == 1
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    assert not problems, problems[:5]
    assert len(answered) >= 10  # the queries really ran alongside the rebuilds


# -- health, metrics, headers ----------------------------------------------------------------
def test_healthz_reports_the_live_index(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["documents"] == 5
    assert body["passages"] > 5
    assert body["model"] == "fake-hash-64"
    assert body["generation"]
    assert body["built_at"]


def test_metrics_count_requests_per_app(settings: Settings, client: TestClient) -> None:
    client.post("/api/ask", json={"question": "Chongqing"})
    client.post("/api/ask", json={"question": ""})
    text = client.get("/metrics").text
    for name in [
        "seedqa_http_requests_total",
        "seedqa_http_request_duration_seconds_bucket",
        "seedqa_index_documents 5.0",
        "seedqa_index_passages",
        "seedqa_index_last_build_timestamp_seconds",
        "seedqa_index_last_build_duration_seconds",
    ]:
        assert name in text
    assert 'route="/api/ask",status="200"} 1.0' in text
    assert 'route="/api/ask",status="422"} 1.0' in text
    with TestClient(create_app(settings)) as other:  # its own registry: starts from zero
        assert 'route="/api/ask"' not in other.get("/metrics").text


def test_security_headers_and_no_cors(client: TestClient) -> None:
    for path in ["/", "/?q=Chongqing", "/documents/000_b12d02cff80cfccd.txt", "/api/ask?q=x"]:
        r = client.get(path, headers={"Origin": "https://evil.example"})
        assert r.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src")
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "access-control-allow-origin" not in r.headers


def test_question_is_escaped_in_the_page(client: TestClient) -> None:
    r = client.get("/", params={"q": "<script>alert(1)</script>"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_openapi_describes_strict_inputs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ask = spec["components"]["schemas"]["AskRequest"]
    assert ask["additionalProperties"] is False
    assert ask["properties"]["k"]["maximum"] == 50
    assert ask["properties"]["k"]["minimum"] == 1
    assert "AskResponse" in spec["components"]["schemas"]
    responses = spec["paths"]["/api/ask"]["post"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorOut")


# -- serve.py --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_py_serves_and_stops_cleanly_on_sigterm(tmp_path: Path, seeds: Path) -> None:
    import httpx

    port = _free_port()
    env = {**os.environ, "QA_MODEL": "fake", "QA_ANSWER_THRESHOLD": "0"}
    cmd = [sys.executable, str(REPO / "serve.py"), "--port", str(port), "--seeds", str(seeds)]
    cmd += ["--index", str(tmp_path / "emb")]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "serve.py did not come up"
                time.sleep(0.2)
        assert r.status_code == 200
        assert r.json()["documents"] == 5
        assert "server" not in r.headers
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the parent sees why it ended.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        log = proc.stderr.read() if proc.stderr else ""
        assert "Application shutdown complete" in log  # the lifespan closed the service
        assert "Traceback" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_openapi_docs_work_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    # Every script and stylesheet comes from this server: the page must work without internet.
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets
    assert all(a.startswith("/") for a in assets), assets
    for asset in assets:
        if asset.endswith((".js", ".css")):
            assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").json()["paths"]["/api/ask"]
