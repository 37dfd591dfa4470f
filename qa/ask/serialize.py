"""Plain-JSON forms of results, shared by the CLI and the HTTP layer (the JSON API contract)."""

from __future__ import annotations

from typing import Any

from qa.ask.retrieval import Hit
from qa.ask.service import AskResult


def hit_json(hit: Hit) -> dict[str, Any]:
    """One passage of a result, with its provenance and scores."""
    p = hit.passage
    return {
        "rank": hit.rank,
        "score": round(hit.score, 6),
        "dense_score": None if hit.dense_score is None else round(hit.dense_score, 6),
        "lexical_score": None if hit.lexical_score is None else round(hit.lexical_score, 6),
        "text": p.text,
        "source": p.source,
        "title": p.title,
        "date": p.date,
        "start": p.start,
        "end": p.end,
        "chunk_id": p.chunk_id,
    }


def ask_result_json(result: AskResult) -> dict[str, Any]:
    """The body of ``/api/ask`` and of ``qa ask --json``."""
    answer = None
    if result.answer is not None:
        a = result.answer
        answer = {
            "text": a.text,
            "citations": a.citations,
            "rendered": a.rendered,
            "source": a.source,
            "start": a.start,
            "end": a.end,
            "score": a.score,
            "support": a.support,
            "span": None
            if a.span is None
            else {"text": a.span.text, "start": a.span.start, "end": a.span.end},
        }
    return {
        "question": result.question,
        "answer": answer,
        "abstain_reason": result.abstain_reason,
        "support": result.support,
        "passages": [hit_json(h) for h in result.passages],
        "took_ms": result.took_ms,
        "mode": result.mode,
        "generation": result.generation,
        "timings": result.timings,
    }
