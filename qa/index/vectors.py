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
    raise ValueError(f"unknown index type {index_type!r}")


def tune_for_search(index: Any, *, ef_search: int) -> None:
    """Apply query-time parameters after loading (they are not all stored in the file)."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = ef_search


def search(
    index: Any, queries: Vectors, k: int, *, allowed: Sequence[int] | None = None
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
