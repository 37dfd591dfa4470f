"""Finding passages for a question: dense (FAISS), lexical (BM25), or both fused by RRF.

Reciprocal rank fusion adds ``1 / (rrf_k + rank)`` over the two rankings, so a passage that
both retrievers like comes first while names and numbers found only by BM25 still surface.
Passages overlapping an already chosen passage of the same article are skipped, so one stretch
of text does not fill the top-k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qa.config import RetrievalMode
from qa.errors import InvalidQueryError
from qa.index.generation import IndexGeneration
from qa.ingest.passages import Passage


@dataclass(frozen=True, slots=True)
class Filters:
    """Optional limits on which passages may be returned. Dates are ISO ``YYYY-MM-DD``."""

    sources: frozenset[str] | None = None
    date_from: str | None = None
    date_to: str | None = None

    def active(self) -> bool:
        """Whether any limit is set."""
        return bool(self.sources) or self.date_from is not None or self.date_to is not None

    def allows(self, p: Passage) -> bool:
        """Whether passage ``p`` passes every limit (undated passages fail a date limit)."""
        return self.allows_document(p.source, p.date)

    def allows_document(self, source: str, date: str | None) -> bool:
        """Whether the passages of document ``source`` dated ``date`` pass every limit."""
        if self.sources and source not in self.sources:
            return False
        if self.date_from is not None and (date is None or date < self.date_from):
            return False
        return not (self.date_to is not None and (date is None or date > self.date_to))


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved passage with its scores. ``score`` orders the results of the chosen mode."""

    rank: int
    row: int
    passage: Passage
    score: float
    dense_score: float | None
    lexical_score: float | None


def _allowed_rows(gen: IndexGeneration, filters: Filters) -> npt.NDArray[np.int64]:
    """Rows of the documents that pass ``filters`` (a passage carries its document's date)."""
    return gen.document_rows(filters.allows_document)


def retrieve(
    gen: IndexGeneration,
    question: str,
    vector: npt.NDArray[np.float32] | None,
    *,
    k: int,
    mode: RetrievalMode,
    candidates: int = 50,
    rrf_k: int = 60,
    dense_weight: float = 1.0,
    filters: Filters | None = None,
) -> list[Hit]:
    """The best ``k`` passages of ``gen`` for ``question``, diversified, best first."""
    if mode not in ("dense", "bm25", "hybrid"):
        raise InvalidQueryError(f"mode must be 'dense', 'bm25' or 'hybrid', got {mode!r}")
    if not gen.passages:
        return []
    allowed: npt.NDArray[np.int64] | None = None
    if filters is not None and filters.active():
        allowed = _allowed_rows(gen, filters)
        if not len(allowed):
            return []
    pool = max(candidates, 4 * k)
    dense: dict[int, float] = {}
    lexical: dict[int, float] = {}
    if mode in ("dense", "hybrid"):
        if vector is None:
            raise InvalidQueryError("dense retrieval needs the question's vector")
        dense = dict(gen.dense_search(vector, pool, allowed=allowed))
    if mode in ("bm25", "hybrid"):
        lexical = dict(gen.lexical_search(question, pool, allowed=allowed))

    if mode == "dense":
        fused = dense
    elif mode == "bm25":
        fused = lexical
    else:
        fused = _fuse(dense, lexical, rrf_k=rrf_k, dense_weight=dense_weight)
    return _diversified(gen, fused, dense, lexical, vector, k)


def _fuse(
    dense: dict[int, float], lexical: dict[int, float], *, rrf_k: int, dense_weight: float
) -> dict[int, float]:
    """Weighted reciprocal rank fusion of the two rankings (BM25 weighs 1.0)."""
    fused: dict[int, float] = {}
    for ranking, weight in ((dense, dense_weight), (lexical, 1.0)):
        for rank, row in enumerate(sorted(ranking, key=lambda r: -ranking[r]), start=1):
            fused[row] = fused.get(row, 0.0) + weight / (rrf_k + rank)
    return fused


def _diversified(
    gen: IndexGeneration,
    fused: dict[int, float],
    dense: dict[int, float],
    lexical: dict[int, float],
    vector: npt.NDArray[np.float32] | None,
    k: int,
) -> list[Hit]:
    """The best ``k`` rows by fused score, skipping a passage that overlaps a better one of
    the same source, each with its cosine to the question (computed when dense did not run)."""
    hits: list[Hit] = []
    chosen: dict[str, list[tuple[int, int]]] = {}
    for row in sorted(fused, key=lambda r: (-fused[r], r)):
        p = gen.passages[row]
        spans = chosen.setdefault(p.source, [])
        if any(p.start < e and s < p.end for s, e in spans):
            continue
        spans.append((p.start, p.end))
        cosine = dense.get(row)
        if cosine is None and vector is not None:
            cosine = float(np.dot(gen.vector(row), vector.reshape(-1)))
        hits.append(
            Hit(
                rank=len(hits) + 1,
                row=row,
                passage=p,
                score=fused[row],
                dense_score=cosine,
                lexical_score=lexical.get(row),
            )
        )
        if len(hits) == k:
            break
    return hits
