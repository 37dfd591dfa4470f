"""The JSON API: ``/api/ask``, ``/api/documents/...``, ``/api/reindex``, health and metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from qa.ask.documents import read_document
from qa.ask.retrieval import Filters
from qa.ask.service import QAService
from qa.config import MAX_K, RetrievalMode
from qa.errors import IndexBusyError, InvalidQueryError
from web.deps import Context, ServiceDep
from web.schemas import (
    MAX_SOURCES,
    QUESTION_SCHEMA,
    AskRequest,
    AskResponse,
    BuildSummaryOut,
    DocumentOut,
    HealthOut,
    IsoDate,
    error_responses,
)
from web.security import check_admin

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="The admin token (`QA_ADMIN_TOKEN`).")


def _check_surrogates(text: str, name: str) -> None:
    # JSON may spell a lone surrogate ("\ud800"); it is no character and cannot be encoded.
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            raise InvalidQueryError(
                f"{name} contains an unpaired surrogate (U+{ord(ch):04X}) at position {i}"
            )


def _ask(service: QAService, body: AskRequest) -> AskResponse:
    _check_surrogates(body.question, "question")
    for source in body.sources or ():
        _check_surrogates(source, "a source")
    if body.date_from and body.date_to and body.date_from > body.date_to:
        raise InvalidQueryError(f"date_from {body.date_from} is after date_to {body.date_to}")
    filters = None
    if body.sources or body.date_from or body.date_to:
        filters = Filters(
            sources=frozenset(body.sources) if body.sources else None,
            date_from=body.date_from,
            date_to=body.date_to,
        )
    result = service.ask(
        body.question, k=body.k, answer=body.answer, mode=body.mode, filters=filters
    )
    return AskResponse.from_result(result)


@router.post(
    "/api/ask",
    response_model=AskResponse,
    responses=error_responses(400, 413, 422, 503),
    tags=["ask"],
)
def ask_post(body: AskRequest, service: ServiceDep) -> AskResponse:
    """Answer a question: the top ``k`` passages with exact offsets, and an extracted answer."""
    return _ask(service, body)


@router.get(
    "/api/ask", response_model=AskResponse, responses=error_responses(422, 503), tags=["ask"]
)
def ask_get(
    service: ServiceDep,
    q: Annotated[str, Query(description="The question.", json_schema_extra=QUESTION_SCHEMA)],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 5,
    answer: bool = True,
    mode: RetrievalMode | None = None,
    source: Annotated[
        list[str] | None, Query(max_length=MAX_SOURCES, description="Repeat to allow several.")
    ] = None,
    date_from: Annotated[IsoDate | None, Query()] = None,
    date_to: Annotated[IsoDate | None, Query()] = None,
) -> AskResponse:
    """The same as ``POST /api/ask``, with the question in the query string."""
    try:
        body = AskRequest(
            question=q,
            k=k,
            answer=answer,
            mode=mode,
            sources=source,
            date_from=date_from,
            date_to=date_to,
        )
    except ValidationError as exc:  # the query checks above should make this unreachable
        raise RequestValidationError(exc.errors(include_url=False)) from None
    return _ask(service, body)


@router.get(
    "/api/documents/{source:path}",
    response_model=DocumentOut,
    responses=error_responses(404, 422, 503),
    tags=["documents"],
)
def get_document(source: str, service: ServiceDep) -> DocumentOut:
    """A seed article of the live index: its text (read fresh) and metadata."""
    gen = service.generation
    doc = read_document(gen.documents, service.settings.seeds_dir, source, generation=gen.path)
    return DocumentOut(**asdict(doc))


@router.post(
    "/api/reindex",
    response_model=BuildSummaryOut,
    responses=error_responses(401, 403, 409, 422, 503),
    tags=["admin"],
)
async def reindex(
    ctx: Context,
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    rebuild: Annotated[bool, Query(description="Ignore the index and embed everything.")] = False,
) -> dict[str, Any]:
    """Bring the index up to date with the seeds folder now (needs the admin token)."""
    check_admin(
        ctx.settings.admin_token, credentials.credentials if credentials else None, "reindexing"
    )
    # The service would queue a second build behind the first; a client is better told now.
    if not ctx.reindex_lock.acquire(blocking=False):
        raise IndexBusyError("a reindex is already running; try again when it has finished")
    try:
        summary = await run_in_threadpool(service.reindex, wait=0.0, rebuild=rebuild)
    finally:
        ctx.reindex_lock.release()
    return summary.to_json()


@router.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}})
def healthz(ctx: Context) -> JSONResponse:
    """200 with index facts once an index is loaded, 503 before (or if it cannot be loaded)."""
    service = ctx.service
    if service is None or not service.ready:
        body = HealthOut(
            status="unavailable" if ctx.startup_error else "starting", detail=ctx.startup_error
        )
        return JSONResponse(body.model_dump(), status_code=503)
    gen = service.generation
    body = HealthOut(
        status="ok",
        detail=ctx.startup_error,  # serving an older index because the update failed
        documents=len(gen.documents),
        passages=len(gen.passages),
        built_at=gen.built_at,
        generation=gen.generation,
        model=gen.manifest.get("model", {}).get("id"),
        last_build_at=service.last_build_at,
    )
    return JSONResponse(body.model_dump())


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(ctx: Context) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(ctx.metrics.render(ctx.service), media_type=CONTENT_TYPE_LATEST)
