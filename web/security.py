"""Defences at the HTTP edge: response headers, request body limits, admin tokens, safe paths."""

from __future__ import annotations

import hmac
import json

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Bodies above this many bytes are refused with 413 (the API's bodies are a few hundred bytes).
MAX_BODY_BYTES = 64 * 1024
#: Room for a multipart form's boundaries, headers and small fields around an uploaded file.
FORM_OVERHEAD_BYTES = 64 * 1024


def is_upload(scope: Scope) -> bool:
    """Whether a request carries a document file (binary, up to the document size limit)."""
    method, path = scope.get("method"), scope.get("path", "")
    return (method == "PUT" and path.startswith("/api/documents/")) or (
        method == "POST" and path == "/documents/upload"
    )


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Swagger UI at /docs (served locally, see web/docs.py) starts with an inline script and sets
# inline styles; our policy would blank it, so only these paths go without it (no user content).
_CSP_EXEMPT = frozenset({"/docs", "/docs/oauth2-redirect"})


class SecurityHeadersMiddleware:
    """Adds the content security policy and related headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on and add the headers to the response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if scope["path"] not in _CSP_EXEMPT:
                    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Frame-Options"] = "DENY"
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _send_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuardMiddleware:
    """Refuses request bodies that are too large (413) or not UTF-8 (400) before any route.

    A declared ``Content-Length`` over the limit is refused without reading a byte; otherwise
    the body is read only up to the limit, so a client streaming gigabytes costs 64 KiB.
    The body is then handed to the app unchanged. Document uploads (:func:`is_upload`) are
    binary and may be up to ``upload_max_bytes`` (plus room for a form's fields).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = MAX_BODY_BYTES,
        upload_max_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_max_bytes = upload_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the body, then pass the request on with the body replayed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = self.upload_max_bytes is not None and is_upload(scope)
        limit = self.max_bytes
        too_large = f"request body is larger than the limit of {limit} bytes"
        if upload and self.upload_max_bytes is not None:
            limit = self.upload_max_bytes + (
                FORM_OVERHEAD_BYTES if scope["method"] == "POST" else 0
            )
            too_large = (
                f"the document is larger than the limit of {self.upload_max_bytes} bytes "
                "(setting max_document_bytes)"
            )
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, f"invalid Content-Length header {declared!r}")
                return
            if int(declared) > limit:
                await _send_error(send, 413, too_large)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; there is no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_error(send, 413, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            if not upload:  # a document's bytes are checked against its format by the library
                body.decode("utf-8")
        except UnicodeDecodeError as exc:
            await _send_error(
                send,
                400,
                f"request body is not valid UTF-8 (byte 0x{body[exc.start]:02x} "
                f"at offset {exc.start})",
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as usual

        await self.app(scope, replay, send)


def token_matches(given: str, expected: str) -> bool:
    """Whether a bearer token is the admin token, compared in constant time."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_admin(expected: str | None, given: str | None, what: str) -> None:
    """Raise 403 when no admin token is configured, 401 when ``given`` is missing or wrong."""
    if not expected:
        raise HTTPException(
            403, f"{what} over HTTP is disabled; set QA_ADMIN_TOKEN on the server to enable it"
        )
    if given is None or not token_matches(given, expected):
        raise HTTPException(
            401,
            "missing or wrong admin token; send 'Authorization: Bearer <QA_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
