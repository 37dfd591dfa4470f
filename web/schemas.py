"""Pydantic models of the JSON API: strict input schemas, and output schemas for the OpenAPI docs.

Input is strict (a number is not a string, ``1`` is not ``true``) and unknown fields are refused,
so a typo such as ``"questoin"`` is reported instead of silently ignored. Output models allow
extra fields: the library may add fields to the JSON contract and they pass through unchanged.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from qa.ask.answer import Answer
from qa.ask.retrieval import Hit
from qa.ask.service import AskResult
from qa.config import MAX_K, MAX_QUESTION_CHARS, RetrievalMode

#: The most sources one request may filter on.
MAX_SOURCES = 100

#: What the service accepts as a question, for the OpenAPI document only: the service checks it
#: itself (after stripping surrounding space) and says exactly what is wrong, which a pattern
#: mismatch from pydantic would not. At least one non-space; no control characters except tab,
#: newline and carriage return. (Lone surrogates are refused too; a pattern for them is not
#: portable between regex engines.)
_CONTROL = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F"
QUESTION_SCHEMA: dict[str, Any] = {
    "minLength": 1,
    "maxLength": MAX_QUESTION_CHARS,
    "pattern": rf"^[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$",
}


def _iso_date(value: str) -> str:
    # Strict mode refuses strings for ``date`` fields, so dates stay strings checked here.
    date.fromisoformat(value)
    return value


IsoDate = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        examples=["2023-05-25"],
        json_schema_extra={"format": "date"},
    ),
    AfterValidator(_iso_date),
]
K = Annotated[int, Field(ge=1, le=MAX_K, description="How many passages to return.")]


class AskRequest(BaseModel):
    """The body of ``POST /api/ask``."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={"examples": [{"question": "Who visited Chongqing?", "k": 5}]},
    )

    question: str = Field(
        description=f"The question; at most {MAX_QUESTION_CHARS} characters, no control characters "
        "(tab, newline and carriage return aside).",
        json_schema_extra=QUESTION_SCHEMA,
    )
    k: K = 5
    answer: bool = Field(default=True, description="Extract an answer, or return passages only.")
    mode: RetrievalMode | None = Field(
        default=None, description="Retrieval mode; the server's setting when omitted."
    )
    sources: Annotated[list[str], Field(max_length=MAX_SOURCES)] | None = Field(
        default=None, description="Only passages of these seed files (paths as in `source`)."
    )
    date_from: IsoDate | None = Field(default=None, description="Only articles dated on/after.")
    date_to: IsoDate | None = Field(default=None, description="Only articles dated on/before.")


class _Output(BaseModel):
    model_config = ConfigDict(extra="allow")


class SpanOut(_Output):
    """The short answer: ``text`` is exactly the source file's text ``[start:end]``."""

    text: str
    start: int
    end: int


class AnswerOut(_Output):
    """An extractive answer: ``text`` is exactly the source file's text ``[start:end]``."""

    text: str
    citations: list[int] = Field(description="Ranks of the passages that contain the answer.")
    rendered: str = Field(description="The answer rendered by the answer template (plain text).")
    source: str
    start: int
    end: int
    score: float
    support: float = Field(description="The answer's confidence (what the refusal compares).")
    span: SpanOut | None = Field(
        default=None,
        description="The short answer inside `text` (a name, number, date or phrase), or null.",
    )

    @classmethod
    def from_answer(cls, a: Answer) -> AnswerOut:
        """The response form of the library's :class:`Answer`."""
        return cls(
            text=a.text,
            citations=a.citations,
            rendered=a.rendered,
            source=a.source,
            start=a.start,
            end=a.end,
            score=a.score,
            support=a.support,
            span=None
            if a.span is None
            else SpanOut(text=a.span.text, start=a.span.start, end=a.span.end),
        )


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


class PassageOut(_Output):
    """One retrieved passage: ``text`` is exactly the source file's text ``[start:end]``."""

    rank: int
    score: float
    dense_score: float | None
    lexical_score: float | None
    text: str
    source: str
    title: str | None
    date: str | None
    start: int
    end: int
    chunk_id: str

    @classmethod
    def from_hit(cls, hit: Hit) -> PassageOut:
        """The response form of one retrieved passage, with its provenance and scores."""
        p = hit.passage
        return cls(
            rank=hit.rank,
            score=round(hit.score, 6),
            dense_score=_rounded(hit.dense_score),
            lexical_score=_rounded(hit.lexical_score),
            text=p.text,
            source=p.source,
            title=p.title,
            date=p.date,
            start=p.start,
            end=p.end,
            chunk_id=p.chunk_id,
        )


class AskResponse(_Output):
    """The body of a successful ``/api/ask``."""

    question: str
    answer: AnswerOut | None
    abstain_reason: str | None = Field(description="Why no answer was given, if none was.")
    passages: list[PassageOut]
    support: float | None = Field(
        description="Best sentence similarity to the question (null when no answer was asked for)."
    )
    took_ms: float
    mode: RetrievalMode
    generation: str
    timings: dict[str, float]

    @classmethod
    def from_result(cls, r: AskResult) -> AskResponse:
        """The response form of everything one question produced."""
        return cls(
            question=r.question,
            answer=AnswerOut.from_answer(r.answer) if r.answer is not None else None,
            abstain_reason=r.abstain_reason,
            support=r.support,
            passages=[PassageOut.from_hit(h) for h in r.passages],
            took_ms=r.took_ms,
            mode=r.mode,
            generation=r.generation,
            timings=r.timings,
        )


class DocumentOut(BaseModel):
    """A seed article of the live index, read fresh from disk."""

    source: str
    title: str | None
    date: str | None
    publisher: str | None
    passages: int = Field(description="How many passages of this article are indexed.")
    bytes: int
    text: str = Field(description="The whole file as UTF-8 text; passage offsets index into it.")
    changed_since_indexed: bool = Field(
        description="The file differs from the indexed version, so offsets may be stale."
    )


class SkippedFileOut(BaseModel):
    """A seed file the build did not index, and why."""

    source: str
    reason: str


class BuildSummaryOut(_Output):
    """What ``POST /api/reindex`` did."""

    added: int
    updated: int
    removed: int
    unchanged: int
    renamed: int
    skipped: int
    passages: int
    embedded: int
    took_ms: float
    generation: str | None
    changed: bool
    skipped_files: list[SkippedFileOut]


class HealthOut(_Output):
    """The body of ``GET /healthz``."""

    status: Literal["ok", "starting", "unavailable"]
    detail: str | None = None
    documents: int | None = None
    passages: int | None = None
    built_at: str | None = None
    generation: str | None = None
    model: str | None = None
    last_build_at: float | None = None


class ValidationIssue(BaseModel):
    """One problem with a request, located by ``loc`` (e.g. ``["body", "k"]``)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="What was wrong, in words.")
    errors: list[ValidationIssue] | None = Field(
        default=None, description="Each problem found, for request validation errors."
    )


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error status codes."""
    text = {
        400: "Malformed request (bad JSON or not UTF-8)",
        401: "Missing or wrong bearer token",
        403: "Reindexing over HTTP is disabled",
        404: "Not found",
        409: "A build is already running",
        413: "Request body too large",
        415: "The document is not in a format seedqa reads, or not the one its name says",
        422: "The request is well-formed but its values are not acceptable",
        503: "The index is not available (not built yet, corrupt, or built for other settings)",
    }
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}


class DocumentEntryOut(BaseModel):
    """One indexed document in the catalog."""

    source: str
    title: str | None
    date: str | None
    publisher: str | None
    bytes: int = Field(description="Size of the file in the seeds folder when it was indexed.")
    passages: int = Field(description="How many passages of this document are indexed.")
    content_hash: str = Field(description="SHA-256 of the file's bytes.")
    format: Literal["text", "pdf", "docx"]


class DocumentListOut(BaseModel):
    """The body of ``GET /api/documents``: one page, newest first, undated last."""

    documents: list[DocumentEntryOut]
    total: int = Field(description="How many documents match the filters, on all pages.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")
    generation: str


class DocumentChangeOut(BaseModel):
    """What ``PUT`` or ``DELETE /api/documents/{source}`` did."""

    source: str
    action: Literal["created", "replaced", "unchanged", "deleted"]
    status: Literal["live", "building"] = Field(
        description="`live`: questions see the change now; `building`: the index is updating."
    )
    bytes: int
    build: BuildSummaryOut | None = Field(description="What the build did, once it has run.")
    generation: str | None
    searchable_at: str | None = Field(
        description="When the change became visible to questions (ISO 8601, UTC)."
    )
    took_ms: float
