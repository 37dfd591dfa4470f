"""From exceptions to HTTP responses: domain errors to status codes, the rest to a bare 500.

Every error body is ``{"detail": "<what was wrong>"}`` (plus ``errors`` for validation), or, for
a browser asking for a page, the same message in an HTML page with the same status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.errors import (
    ConfigError,
    DocumentContentError,
    DocumentNotFoundError,
    DocumentTooLargeError,
    ExecutorError,
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    InvalidDocumentNameError,
    InvalidQueryError,
    ModelLoadError,
    QAError,
    ReaderError,
    SeedFileError,
    UnsupportedDocumentError,
)

log = logging.getLogger(__name__)

#: Domain errors and their status codes; the first matching class wins.
STATUS_FOR: tuple[tuple[type[QAError], int], ...] = (
    (InvalidQueryError, 422),
    (InvalidDocumentNameError, 422),
    (DocumentContentError, 422),  # before SeedFileError, its base: the client sent it
    (UnsupportedDocumentError, 415),
    (DocumentTooLargeError, 413),
    (DocumentNotFoundError, 404),
    (IndexBusyError, 409),
    (IndexNotFoundError, 503),
    (IndexCorruptError, 503),
    (IndexMismatchError, 503),
    (ModelLoadError, 503),
    (ExecutorError, 503),
    (ReaderError, 503),  # before ConfigError, its base: a model folder that cannot be used
    (SeedFileError, 503),
    (ConfigError, 500),
)
#: Paths answered in JSON whatever the client accepts.
_API_PREFIXES = ("/api/", "/healthz", "/metrics", "/openapi.json")


def status_for(exc: QAError) -> int:
    """The HTTP status code for a domain error."""
    for cls, status in STATUS_FOR:
        if isinstance(exc, cls):
            return status
    return 500


def printable(text: str) -> str:
    """``text`` made encodable as UTF-8 (a lone surrogate from a JSON escape would not be)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def wants_html(request: Request) -> bool:
    """Whether the error should be an HTML page: a page URL asked for by a browser."""
    if request.url.path.startswith(_API_PREFIXES):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_response(
    request: Request,
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """An error in the form the client wants: an HTML page or ``{"detail": ...}``."""
    detail = printable(detail)
    if wants_html(request):
        templates = request.app.state.ctx.templates
        return templates.TemplateResponse(  # type: ignore[no-any-return]
            request,
            "error.html",
            {"status": status, "detail": detail},
            status_code=status,
            headers=headers,
        )
    return JSONResponse({"detail": detail, **(extra or {})}, status_code=status, headers=headers)


def _describe(error: dict[str, Any]) -> str:
    if error["type"] == "json_invalid":
        reason = error.get("ctx", {}).get("error", "invalid JSON")
        return f"malformed JSON in the request body: {reason} (at character {error['loc'][-1]})"
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"{where}: field required"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    return f"{where}: {error['msg']}"


async def _validation_error(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    # A JSON syntax error is malformed syntax (400); anything else is an unacceptable value.
    status = 400 if any(e["type"] == "json_invalid" for e in errors) else 422
    issues = [
        {
            "loc": [p if isinstance(p, int) else printable(str(p)) for p in e["loc"]],
            "msg": printable(e["msg"]),
            "type": e["type"],
        }
        for e in errors
    ]
    detail = "; ".join(_describe(e) for e in errors) or "invalid request"
    return error_response(request, status, detail, extra={"errors": issues})


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method some route accepts for this path (Starlette names the first route's only).

    Routes are asked with ``matches()``: FastAPI nests included routers, so walking their path
    patterns would miss routes.
    """
    routes = request.app.router.routes
    return ", ".join(
        m
        for m in _METHODS
        if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):  # pragma: no cover - registration guarantees
        raise exc
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": allowed_methods(request)}
    return error_response(request, exc.status_code, detail, headers=headers)


async def _domain_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, QAError):  # pragma: no cover - registration guarantees
        raise exc
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(request, status, str(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error a ``detail`` and the right status."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(QAError, _domain_error)


class UnexpectedErrorMiddleware:
    """Turns any unhandled exception into a generic 500 JSON body, logged with its traceback.

    Starlette's own handler for ``Exception`` re-raises after answering, so the server would
    log every error a second time; catching here logs it once and never shows a traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; answer 500 if it raises before it has answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a response went out; only the server can close the connection
            response = JSONResponse({"detail": "internal server error"}, status_code=500)
            await response(scope, receive, send)
