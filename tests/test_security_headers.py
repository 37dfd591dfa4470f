"""HTTP hardening: no CORS, a strict CSP on every page, constant-time token comparison."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa.config import Settings
from web.app import create_app

from .conftest import SEED_NAMES


def test_no_cors_even_for_a_preflight(client: TestClient) -> None:
    evil = {"Origin": "https://evil.example"}
    preflight = client.options(
        "/api/ask",
        headers={
            **evil,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    r = client.post("/api/ask", json={"question": "Chongqing"}, headers=evil)
    assert r.status_code == 200
    for response in (preflight, r):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/?q=Chongqing",
        f"/documents/{SEED_NAMES[0]}",
        f"/documents/{SEED_NAMES[0]}?start=0&end=10",
        "/documents/missing.txt",
        "/static/app.js",
        "/api/ask?q=x",
    ],
)
def test_csp_allows_only_this_origin(client: TestClient, path: str) -> None:
    r = client.get(path, headers={"Accept": "text/html"})
    directives = {}
    for part in r.headers["Content-Security-Policy"].split(";"):
        if part.strip():
            name, *sources = part.split()
            directives[name] = set(sources)
    for name in ("default-src", "script-src", "style-src"):
        assert directives[name] == {"'self'"}, name
    for name in ("object-src", "base-uri", "frame-ancestors"):
        assert directives[name] == {"'none'"}, name
    assert directives["img-src"] <= {"'self'", "data:"}
    allowed = set().union(*directives.values())
    assert allowed <= {"'self'", "'none'", "data:"}, allowed  # no host, scheme, *, unsafe-*


def test_admin_token_is_compared_in_constant_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with TestClient(create_app(settings.replace(admin_token="s3cret-token"))) as c:
        wrong = c.post("/api/reindex", headers={"Authorization": "Bearer s3cret-tokem"})
        right = c.post("/api/reindex", headers={"Authorization": "Bearer s3cret-token"})
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert calls == [(b"s3cret-tokem", b"s3cret-token"), (b"s3cret-token", b"s3cret-token")]
