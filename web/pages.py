"""The HTML pages: the question page (works without JavaScript) and the document page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from qa.ask.documents import highlight, read_document
from qa.config import MAX_K
from qa.errors import InvalidQueryError
from web.deps import Context, ServiceDep, TemplatesDep, get_service
from web.schemas import AskResponse

router = APIRouter(default_response_class=HTMLResponse, include_in_schema=False)

#: Choices offered in the page's "passages" menu (any 1..50 works in the URL).
K_CHOICES = (3, 5, 10, 20)
DEFAULT_K = 5


def _parse_int(raw: str | None, name: str, *, low: int, high: int) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidQueryError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidQueryError(f"{name} must be between {low} and {high}, got {value}")
    return value


@router.get("/", name="home")
def home(
    request: Request,
    ctx: Context,
    templates: TemplatesDep,
    q: Annotated[str | None, Query()] = None,
    k: Annotated[str | None, Query()] = None,
) -> Response:
    """The question form and, with ``?q=``, the answer and passages rendered on the server."""
    context: dict[str, Any] = {
        "q": q or "",
        "k": DEFAULT_K,
        "k_choices": K_CHOICES,
        "result": None,
        "answer_title": None,
        "error": None,
        "startup_error": ctx.startup_error,
    }
    status = 200
    if q is not None:
        try:
            context["k"] = _parse_int(k, "k", low=1, high=MAX_K) or DEFAULT_K
            result = get_service(ctx).ask(q, k=context["k"])
            context["result"] = AskResponse.from_result(result)
            if result.answer is not None:
                context["answer_title"] = next(
                    (
                        h.passage.title
                        for h in result.passages
                        if h.passage.source == result.answer.source
                    ),
                    None,
                )
        except InvalidQueryError as exc:
            # Shown in the page, next to the form, with a 4xx status for scripts and crawlers.
            context["error"] = str(exc)
            status = 422
    if context["k"] not in K_CHOICES:
        context["k_choices"] = tuple(sorted({*K_CHOICES, context["k"]}))
    return templates.TemplateResponse(request, "index.html", context, status_code=status)


@router.get("/documents/{source:path}", name="document")
def document(
    request: Request,
    source: str,
    service: ServiceDep,
    templates: TemplatesDep,
    start: Annotated[str | None, Query()] = None,
    end: Annotated[str | None, Query()] = None,
    q: Annotated[str, Query()] = "",
) -> Response:
    """A whole article with the passage ``[start:end]`` marked (``#hl`` scrolls to it)."""
    gen = service.generation
    doc = read_document(gen.documents, service.settings.seeds_dir, source, generation=gen.path)
    begin = _parse_int(start, "start", low=0, high=len(doc.text))
    finish = _parse_int(end, "end", low=0, high=len(doc.text))
    # Split on the server and let autoescape escape each part: the mark is the only markup.
    parts = highlight(doc.text, begin, finish)
    context = {"doc": doc, "parts": parts, "start": begin, "end": finish, "q": q}
    return templates.TemplateResponse(request, "document.html", context)
