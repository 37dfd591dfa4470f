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
from qa.index.vectors import search as faiss_search
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
        if self.sources and p.source not in self.sources:
            return False
        if self.date_from is not None and (p.date is None or p.date < self.date_from):
            return False
        return not (self.date_to is not None and (p.date is None or p.date > self.date_to))


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved passage with its scores. ``score`` orders the results of the chosen mode."""

    rank: int
    row: int
    passage: Passage
    score: float
    dense_score: float | None
    lexical_score: float | None


def _top(scores: npt.NDArray[np.float32], n: int) -> list[int]:
    n = min(n, len(scores))
    if n <= 0:
        return []
    idx = np.argpartition(-scores, n - 1)[:n]
    return [int(i) for i in idx[np.argsort(-scores[idx], kind="stable")] if scores[i] > 0]


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
    allowed: list[int] | None = None
    if filters is not None and filters.active():
        allowed = [i for i, p in enumerate(gen.passages) if filters.allows(p)]
        if not allowed:
            return []
    pool = max(candidates, 4 * k)
    dense: dict[int, float] = {}
    lexical: dict[int, float] = {}
    if mode in ("dense", "hybrid"):
        if vector is None:
            raise InvalidQueryError("dense retrieval needs the question's vector")
        scores, ids = faiss_search(gen.faiss_index, vector.reshape(1, -1), pool, allowed=allowed)
        dense = {int(i): float(s) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0}
    if mode in ("bm25", "hybrid"):
        bm = gen.lexical.scores(question)
        if allowed is not None:
            mask = np.zeros(len(bm), dtype=bool)
            mask[allowed] = True
            bm = np.where(mask, bm, 0.0).astype(np.float32)
        lexical = {i: float(bm[i]) for i in _top(bm, pool)}

    if mode == "dense":
        fused = dense
    elif mode == "bm25":
        fused = lexical
    else:
        fused = {}
        for ranking, weight in ((dense, dense_weight), (lexical, 1.0)):
            for rank, row in enumerate(sorted(ranking, key=lambda r: -ranking[r]), start=1):
                fused[row] = fused.get(row, 0.0) + weight / (rrf_k + rank)

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
            cosine = float(np.dot(gen.vectors[row], vector.reshape(-1)))
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
