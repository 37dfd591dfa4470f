"""Managing documents over HTTP: the catalog (JSON and the ``/documents`` page), uploads and
deletions (JSON API and the page's forms, which work without JavaScript).

The routes only translate: listing, checking and changing documents is :mod:`qa.catalog` and
:mod:`qa.changes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import Response

from qa.ask.changes import DocumentChange, delete_document, put_document
from qa.errors import InvalidQueryError, QAError
from qa.index.catalog import MAX_LIMIT, CatalogQuery, DocumentPage, list_documents
from web.api import bearer
from web.deps import AppContext, Context, ServiceDep, TemplatesDep
from web.errors import status_for
from web.schemas import DocumentChangeOut, DocumentListOut, IsoDate, error_responses
from web.security import check_admin

router = APIRouter()
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
#: Longest a writer may wait for a running build before it is refused with 409.
MAX_LOCK_WAIT = 600.0
WaitLive = Annotated[
    bool, Query(description="Return only once the change is live (questions see it).")
]
LockWait = Annotated[
    float,
    Query(ge=0, le=MAX_LOCK_WAIT, description="Seconds to wait for a running build, else 409."),
]
_WHAT = "managing documents"


def _catalog(
    ctx: Context,
    title: str | None,
    date_from: str | None,
    date_to: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[DocumentPage, str]:
    service = ctx.service
    if service is None:
        raise HTTPException(503, ctx.startup_error or "the service is not started")
    gen = service.generation
    query = CatalogQuery(
        title=title or None,
        date_from=date_from or None,
        date_to=date_to or None,
        limit=limit,
        cursor=cursor or None,
    )
    return list_documents(gen.documents, query), gen.generation


@router.get(
    "/api/documents",
    response_model=DocumentListOut,
    responses=error_responses(422, 503),
    tags=["documents"],
)
def list_api(
    ctx: Context,
    title: Annotated[str | None, Query(max_length=200, description="Text in the title.")] = None,
    date_from: Annotated[IsoDate | None, Query()] = None,
    date_to: Annotated[IsoDate | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> dict[str, Any]:
    """Indexed documents, newest first (undated last), with their metadata; paged by cursor."""
    page, generation = _catalog(ctx, title, date_from, date_to, limit, cursor)
    return {**asdict(page), "generation": generation}


def _change_json(change: DocumentChange) -> JSONResponse:
    body = asdict(change)
    body["build"] = change.build.to_json() if change.build is not None else None
    status = 201 if change.action == "created" else 200
    if change.status == "building":
        status = 202
    return JSONResponse(body, status_code=status)


#: The PUT body is the file itself (read raw, so it is declared here for the OpenAPI document).
#: Two media types stand for all: the fuzzing tool can generate bodies only for these.
_FILE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "The document file. Its name's suffix says the format; a Content-Type, if given, "
            "must agree: text/* (UTF-8), application/pdf, application/vnd.openxmlformats-"
            "officedocument.wordprocessingml.document, or application/octet-stream."
        ),
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in ("text/plain", "application/octet-stream")
        },
    }
}
_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": DocumentChangeOut, "description": "Accepted: the index is being updated"},
    **error_responses(401, 403, 409, 413, 415, 422, 503),
}


@router.put(
    "/api/documents/{source:path}",
    response_model=DocumentChangeOut,
    responses={201: {"model": DocumentChangeOut, "description": "Created"}, **_CHANGE_RESPONSES},
    tags=["documents"],
    openapi_extra=_FILE_BODY,
)
async def put_api(
    source: str,
    request: Request,
    ctx: Context,
    service: ServiceDep,
    credentials: Credentials,
    wait: WaitLive = False,
    lock_wait: LockWait = 0.0,
) -> JSONResponse:
    """Add or replace a document (the request body is the file; needs the admin token).

    The format follows the name's suffix (.txt .md .markdown .html .htm .pdf .docx); a
    ``Content-Type`` that says otherwise, or content that is something else, gets 415.
    """
    check_admin(ctx.settings.admin_token, credentials.credentials if credentials else None, _WHAT)
    data = await request.body()
    change = await run_in_threadpool(
        put_document,
        service,
        source,
        data,
        content_type=request.headers.get("content-type"),
        wait_live=wait,
        lock_wait=lock_wait,
    )
    return _change_json(change)


@router.delete(
    "/api/documents/{source:path}",
    response_model=DocumentChangeOut,
    responses={**_CHANGE_RESPONSES, **error_responses(404)},
    tags=["documents"],
)
async def delete_api(
    source: str,
    ctx: Context,
    service: ServiceDep,
    credentials: Credentials,
    wait: WaitLive = False,
    lock_wait: LockWait = 0.0,
) -> JSONResponse:
    """Delete a document from the seeds folder and the index (needs the admin token)."""
    check_admin(ctx.settings.admin_token, credentials.credentials if credentials else None, _WHAT)
    change = await run_in_threadpool(
        delete_document, service, source, wait_live=wait, lock_wait=lock_wait
    )
    return _change_json(change)


# -- the page ----------------------------------------------------------------------------------
def _page_int(raw: str | None) -> int:
    if raw is None or raw.strip() == "":
        return 50
    try:
        return int(raw)
    except ValueError:
        raise InvalidQueryError(f"limit must be a whole number, got {raw!r}") from None


def _page_context(
    ctx: AppContext, filters: dict[str, str], limit: str | None, cursor: str | None
) -> tuple[dict[str, Any], int]:
    """The documents page's context, and its status (422 when a filter is unacceptable)."""
    context: dict[str, Any] = {
        "filters": filters,
        "page": None,
        "next_url": None,
        "error": None,
        "notice": None,
        "can_manage": bool(ctx.settings.admin_token),
        "max_bytes": ctx.settings.max_document_bytes,
    }
    try:
        size = _page_int(limit)
        page, _ = _catalog(
            ctx, filters["title"], filters["date_from"], filters["date_to"], size, cursor
        )
    except InvalidQueryError as exc:
        context["error"] = str(exc)
        return context, 422
    context["page"] = page
    if page.next_cursor:
        params = {k: v for k, v in filters.items() if v}
        context["next_url"] = "/documents?" + urlencode(
            {**params, "limit": size, "cursor": page.next_cursor}
        )
    return context, 200


@router.get("/documents", response_class=HTMLResponse, include_in_schema=False)
def documents_page(
    request: Request,
    ctx: Context,
    templates: TemplatesDep,
    title: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
    done: str | None = None,
    source: str | None = None,
) -> Response:
    """Every indexed document, with filters, paging, and (with a token set) upload and delete."""
    filters = {"title": title or "", "date_from": date_from or "", "date_to": date_to or ""}
    context, status = _page_context(ctx, filters, limit, cursor)
    indexed = ctx.service.generation.documents if ctx.service is not None else {}
    context["notice"] = _notice(done, source, indexed)
    return templates.TemplateResponse(request, "documents.html", context, status_code=status)


def _notice(done: str | None, source: str | None, indexed: Mapping[str, object]) -> str | None:
    """The note after a form's change; only one the index bears out (the URL can be forged)."""
    if source is None or (source in indexed) != (done != "deleted"):
        return None
    if done == "created" or done == "replaced" or done == "unchanged":
        return (
            f"'{source}' is {'unchanged' if done == 'unchanged' else 'saved'} and searchable now."
        )
    if done == "deleted":
        return f"'{source}' is deleted; questions no longer see it."
    return None


async def _form_change(
    request: Request, ctx: Context, templates: TemplatesDep, op: str
) -> Response:
    """Run a page form's change; on failure show the page again with the reason and status."""
    try:
        async with request.form(max_files=1, max_fields=4) as form:
            token = form.get("token")
            check_admin(ctx.settings.admin_token, token if isinstance(token, str) else None, _WHAT)
            service = ctx.service
            if service is None:
                raise HTTPException(503, ctx.startup_error or "the service is not started")
            if op == "delete":
                name = str(form.get("source") or "")
                change = await run_in_threadpool(delete_document, service, name, wait_live=True)
            else:
                upload = form.get("file")
                if not isinstance(upload, UploadFile) or not upload.filename:
                    raise InvalidQueryError("choose a file to upload")
                name = str(form.get("name") or "").strip() or upload.filename
                data = await upload.read()
                change = await run_in_threadpool(
                    put_document,
                    service,
                    name,
                    data,
                    content_type=upload.content_type,
                    wait_live=True,
                )
    except (QAError, HTTPException) as exc:
        code = status_for(exc) if isinstance(exc, QAError) else exc.status_code
        detail = str(exc) if isinstance(exc, QAError) else str(exc.detail)
        context, _ = _page_context(ctx, {"title": "", "date_from": "", "date_to": ""}, None, None)
        context["error"] = detail
        return templates.TemplateResponse(request, "documents.html", context, status_code=code)
    query = urlencode({"done": change.action, "source": change.source})
    return RedirectResponse(f"/documents?{query}", status_code=303)


@router.post("/documents/upload", include_in_schema=False)
async def upload_form(request: Request, ctx: Context, templates: TemplatesDep) -> Response:
    """The page's upload form (multipart: ``token``, ``file``, optional ``name``)."""
    return await _form_change(request, ctx, templates, "upload")


@router.post("/documents/delete", include_in_schema=False)
async def delete_form(request: Request, ctx: Context, templates: TemplatesDep) -> Response:
    """The page's delete buttons (form fields ``token`` and ``source``)."""
    return await _form_change(request, ctx, templates, "delete")
