"""Property-based fuzzing of the JSON API from its own OpenAPI document (schemathesis).

Every operation the schema describes gets up to 50 generated requests, valid and invalid,
sent in-process to the ASGI app with its lifespan entered (so the index is really built, with
the fake embedder). Checks: no 5xx, and every response (status, content type, headers, body)
conforms to the schema. ``/api/reindex`` is fuzzed too, on an app without an admin token:
every request to it must be refused (403; 405 for another method, 422 for a malformed query)
and nothing is rebuilt. So are ``PUT`` and ``DELETE /api/documents/{source}``: without the
token every change is refused (403, or 422 for a malformed query) and nothing is written.

The schema comes from ``create_app().openapi()``: building an app is cheap and loads nothing,
and the document does not depend on the settings. (``schemathesis.pytest.from_fixture`` would
load it from the running app instead, but it breaks on pytest 9: it sets ``Function._nodeid``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.python import asgi as schemathesis_asgi

from qa.config import Settings
from qa.index.storage import current_generation
from web.app import create_app

#: Examples per operation and phase: enough to reach every validator branch, bounded in time.
MAX_EXAMPLES = 50

schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    """The app over the seed copy, without an admin token, its lifespan entered."""
    assert settings.admin_token is None  # reindexing over HTTP is off: every call is refused
    application = create_app(settings)
    # schemathesis enters the lifespan on the first request and keeps it running for every
    # later one; enter it now (the index is built) and shut it down (the service is closed)
    # when the test ends.
    try:
        with schemathesis_asgi.get_client(application) as client:
            health = client.get("/healthz")
        assert health.status_code == 200, health.text
        yield application
    finally:
        schemathesis_asgi.shutdown_lifespans()


def _refused_by_design(case: Any) -> bool:
    """Schema-valid input that the API refuses (422) on purpose, pinned by tests/test_api.py."""
    values = case.body if isinstance(case.body, dict) else (case.query or {})
    start, end = values.get("date_from"), values.get("date_to")
    # date_from after date_to: a rule between two fields, which JSON Schema cannot express.
    if isinstance(start, str) and isinstance(end, str) and start > end:
        return True
    # A paging cursor the server never issued: opaque to the schema, refused (422) by design.
    if isinstance(case.query, dict) and case.query.get("cursor") is not None:
        return True
    # k = 5.0: JSON Schema's "integer" includes it, the strict body model does not.
    return isinstance(case.body, dict) and isinstance(case.body.get("k"), float)


def _mutated_parameter(case: Any) -> str | None:
    # Which parameter a negative case broke (schemathesis' metadata; None if it moves).
    return getattr(getattr(case.meta.phase, "data", None), "parameter", None)


def _changes_documents(case: Any) -> bool:
    return case.operation.path == "/api/documents/{source}" and case.operation.method in (
        "put",
        "delete",
    )


def excluded_checks(case: Any) -> list[Any]:
    """The checks that do not apply to this case, each exclusion with its reason.

    If schemathesis moves the metadata ``_mutated_parameter`` reads, the exclusion lapses and
    the test fails loudly rather than checking less.
    """
    checks = schemathesis.checks
    excluded = []
    if case.operation.path == "/api/reindex" or case.operation.method in ("put", "delete"):
        # Without an admin token, writing is off for everyone: a missing token is 403, not 401.
        excluded.append(checks.missing_required_header)
    if _refused_by_design(case):
        excluded.append(checks.positive_data_acceptance)
    if case.operation.method == "get" and _mutated_parameter(case) == "source":
        # A query string is text: a "non-string" source such as true arrives as the string
        # "true", which is a valid source name (and simply matches no document).
        excluded.append(checks.negative_data_rejection)
    return excluded


def test_every_operation_is_fuzzed() -> None:
    """A new endpoint is fuzzed automatically; this pins what is fuzzed today."""
    labels = {op.ok().label for op in schema.get_all_operations()}
    assert labels == {
        "GET /api/ask",
        "POST /api/ask",
        "GET /api/documents",
        "GET /api/documents/{source}",
        "PUT /api/documents/{source}",
        "DELETE /api/documents/{source}",
        "POST /api/reindex",
        "GET /healthz",
    }


@schema.parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # One app (one built index) serves every example of an operation, on purpose.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_conforms_to_its_schema_and_never_fails(
    case: Any, app: FastAPI, settings: Settings
) -> None:
    """No 5xx, responses as the schema says, and no rebuild without the admin token."""
    generation = current_generation(settings.index_dir)
    seeds = sorted(p.name for p in settings.seeds_dir.rglob("*"))
    response = case.call_and_validate(app=app, excluded_checks=excluded_checks(case))
    assert response.status_code < 500, response.text
    if case.operation.path == "/api/reindex" or _changes_documents(case):
        # Refused whatever is sent (403; 405 for another method, 422 for a bad query).
        assert response.status_code in (403, 405, 422), response.text
    # Nothing a client sends without the admin token may rebuild the index.
    assert current_generation(settings.index_dir) == generation
    assert sorted(p.name for p in settings.seeds_dir.rglob("*")) == seeds


@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS"])
def test_405_lists_every_method_of_the_path(client: TestClient, method: str) -> None:
    """RFC 9110 15.5.6: a 405 carries the methods the resource supports, all of them."""
    r = client.request(method, "/api/ask")
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}
