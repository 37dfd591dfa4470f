"""FAISS: exact search against brute force, recall of the approximate types, filtered search."""

from __future__ import annotations

import numpy as np
import pytest

from qa.index.vectors import build_faiss, search


def test_flat_search_is_exact_against_brute_force() -> None:
    rng = np.random.default_rng(7)
    data = rng.standard_normal((2000, 32)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[:20] + 0.1 * rng.standard_normal((20, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index, _ = build_faiss(data, index_type="flat")
    scores, ids = search(index, queries, 10)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    # Tie-tolerant: compare the score of the k-th neighbour rather than exact id order.
    brute = np.take_along_axis(queries @ data.T, truth, axis=1)
    assert np.allclose(scores, brute, atol=1e-5)
    assert (ids[:, 0] == truth[:, 0]).all()


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_approximate_indexes_reach_high_recall(index_type: str) -> None:
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((50, 32)).astype(np.float32)
    data = centers[rng.integers(0, 50, 5000)] + 0.3 * rng.standard_normal((5000, 32)).astype(
        np.float32
    )
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[rng.choice(5000, 50, replace=False)]
    exact, _ = build_faiss(data, index_type="flat")
    approx, info = build_faiss(data, index_type=index_type)
    assert info["type"] == index_type
    _, truth = search(exact, queries, 10)
    _, got = search(approx, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, got, strict=True)])
    assert recall >= 0.9


def test_filtered_search_on_hnsw_only_returns_allowed_ids() -> None:
    rng = np.random.default_rng(5)
    data = rng.standard_normal((500, 16)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index, _ = build_faiss(data, index_type="hnsw")
    allowed = list(range(0, 500, 7))
    _, ids = search(index, data[:3], 5, allowed=allowed)
    assert set(ids.ravel().tolist()) <= set(allowed)
