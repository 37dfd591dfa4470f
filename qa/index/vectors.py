"""The FAISS part of an index: which index type for which size, building, searching.

Vectors are L2-normalised, so inner product (``METRIC_INNER_PRODUCT``) is cosine similarity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
#: Fewest vectors for IVF-PQ (256 codes per sub-space need about 39 training points each).
PQ_MIN = 10_000


def choose_index_type(n: int, *, exact_threshold: int, approximate: str) -> str:
    """``"flat"`` (exact) below the threshold, the configured approximate type at or above it."""
    return "flat" if n < exact_threshold else approximate


def build_faiss(
    vectors: Vectors,
    *,
    index_type: str,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 256,
) -> tuple[Any, dict[str, Any]]:
    """A FAISS index over ``vectors`` (row i gets id i) and the parameters it was built with."""
    n, dim = vectors.shape
    index: Any
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, {"type": "flat"}
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        index.add(vectors)
        return index, {"type": "hnsw", "m": hnsw_m, "ef_construction": ef_construction}
    if index_type == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(n, size=min(n, nlist * 64), replace=False)]
        index.train(sample)
        index.add(vectors)
        index.nprobe = max(1, nlist // 16)
        return index, {"type": "ivf", "nlist": nlist}
    if index_type == "ivfpq":
        return _build_ivfpq(vectors)
    raise ValueError(f"unknown index type {index_type!r}")


def _build_ivfpq(vectors: Vectors) -> tuple[Any, dict[str, Any]]:
    """IVF with product-quantised codes: ``dim / 8`` bytes a vector instead of ``4 * dim``.

    Its scores are approximate; :func:`search_segment` re-ranks a wide candidate list by the
    exact cosine. Below ``PQ_MIN`` vectors (too few to train 256 codes per sub-space, and small
    enough not to need compression) plain IVF is used.
    """
    n, dim = vectors.shape
    if n < PQ_MIN:
        return build_faiss(vectors, index_type="ivf")
    # sqrt(n) lists probed a quarter at a time: recall@10 0.95 at 100k (docs/benchmarks.md).
    nlist = max(1, int(math.sqrt(n)))
    m = next(d for d in (dim // 8, dim // 4, dim // 2, dim) if d and dim % d == 0)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    sample = vectors[np.sort(rng.choice(n, size=min(n, max(nlist * 50, PQ_MIN)), replace=False))]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    for lo in range(0, n, 100_000):  # in slices: a memory-mapped segment is not copied whole
        index.add(np.ascontiguousarray(vectors[lo : lo + 100_000], dtype=np.float32))
    index.nprobe = max(1, nlist // 4)
    return index, {"type": "ivfpq", "nlist": nlist, "m": m, "nprobe": index.nprobe}


def tune_for_search(index: Any, *, ef_search: int) -> None:
    """Apply query-time parameters after loading (they are not all stored in the file)."""
    if index is not None and isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = ef_search


def search(
    index: Any,
    queries: Vectors,
    k: int,
    *,
    allowed: Sequence[int] | npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-``k`` (scores, ids) per query row; ``allowed`` limits the search to those ids.

    Ids of ``-1`` mark empty slots when fewer than ``k`` vectors qualify.
    """
    k = max(1, min(k, index.ntotal)) if index.ntotal else 1
    if allowed is None:
        scores, ids = index.search(queries, k)
    else:
        lib: Any = faiss  # the type stubs lack the search-parameter classes
        selector = lib.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        if isinstance(index, faiss.IndexHNSW):
            params = lib.SearchParametersHNSW(sel=selector, efSearch=index.hnsw.efSearch)
        elif isinstance(index, faiss.IndexIVF):
            params = lib.SearchParametersIVF(sel=selector, nprobe=index.nprobe)
        else:
            params = lib.SearchParameters(sel=selector)
        scores, ids = index.search(queries, k, params=params)
    return scores, ids


#: An approximate index is asked for this many times ``k`` candidates (at least
#: ``RERANK_MIN``) before the exact re-rank: reading a few hundred stored vectors costs well
#: under a millisecond and makes up for the coarse compressed scores.
OVERSEARCH = 8
RERANK_MIN = 400


def search_segment(
    segment: Any, query: Vectors, k: int, *, excluded: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The ``k`` best local rows of one segment (``excluded`` rows never), best first, with
    their exact cosine recomputed from the stored vectors whatever the index type (ties by row).

    A segment without a FAISS index is searched exactly over its memory-mapped vectors.
    """
    vectors = segment.vectors
    n = len(vectors)
    if n == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if segment.faiss_index is None:
        scores = np.asarray(vectors @ query, dtype=np.float32)
        scores[excluded] = -np.inf
        candidates = np.flatnonzero(~excluded)
        if len(candidates) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            # Everything tied with the k-th score competes, so ties are broken by row alone.
            kth = scores[top].min()
            candidates = np.flatnonzero(scores >= kth)
    else:
        n_excluded = int(np.count_nonzero(excluded))
        want = min(n - n_excluded, max(k * OVERSEARCH, RERANK_MIN))
        if want <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if n_excluded <= want:
            # A few tombstones: ask for that many more and drop them (a selector over every
            # allowed id would cost more than the search).
            _, ids = search(segment.faiss_index, query.reshape(1, -1), want + n_excluded)
            found = ids[0][ids[0] >= 0]
            found = found[~excluded[found]]
        else:
            allowed = np.flatnonzero(~excluded)
            _, ids = search(segment.faiss_index, query.reshape(1, -1), want, allowed=allowed)
            found = ids[0][ids[0] >= 0]
        candidates = np.unique(found)
    exact = np.asarray(vectors[candidates] @ query, dtype=np.float32).reshape(-1)
    order = np.lexsort((candidates, -exact))[:k]
    return candidates[order].astype(np.int64), exact[order]
