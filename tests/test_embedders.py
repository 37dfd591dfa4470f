"""One contract, every backend: the fake, torch and ONNX Runtime embedders behave alike.

What the rest of seedqa relies on: unit float32 vectors in the order given, whatever the
batching; token counts that agree with token offsets; one unit sentence vector per span.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qa.config import BUNDLED_MODEL, FAKE_MODEL, Settings
from qa.embed.base import Embedder
from qa.embed.fake import FakeEmbedder
from qa.embed.registry import load_embedder

TEXTS = [
    "Chongqing has approved 535 US-funded enterprises.",
    "Which US city is a friendly city of Changchun?",
    "Short.",
    "Los Angeles and Chongqing signed an agreement on trade, tourism and culture in 2014.",
]

BACKENDS = [
    pytest.param("fake", id="fake"),
    pytest.param("torch", id="torch", marks=pytest.mark.model),
    pytest.param("onnx", id="onnx", marks=pytest.mark.model),
]


@pytest.fixture(scope="module", params=BACKENDS)
def embedder(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Embedder]:
    if request.param == "fake":
        yield FakeEmbedder()
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEEDQA_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
        yield load_embedder(Settings(model=BUNDLED_MODEL, backend=request.param, device="cpu"))


def test_vectors_are_unit_float32_rows_of_the_declared_dimension(embedder: Embedder) -> None:
    vectors = embedder.embed(TEXTS, batch_size=2)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), embedder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_or_reorder_vectors(embedder: Embedder) -> None:
    together = embedder.embed(TEXTS, batch_size=3)
    alone = np.stack([embedder.embed([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # Different texts give different vectors, so the comparison above can tell rows apart.
    assert float(together[0] @ together[1]) < 0.99


def test_token_counts_agree_with_token_offsets(embedder: Embedder) -> None:
    counts = embedder.count_tokens(TEXTS)
    for text, count in zip(TEXTS, counts, strict=True):
        offsets = embedder.token_offsets(text)
        assert len(offsets) == count > 0
        assert all(0 <= s < e <= len(text) for s, e in offsets)
        assert [s for s, _ in offsets] == sorted(s for s, _ in offsets)
    assert embedder.max_tokens == embedder.max_seq_length - embedder.special_tokens


def test_passages_get_one_unit_vector_per_sentence_span(embedder: Embedder) -> None:
    text = TEXTS[0] + " " + TEXTS[3]
    spans = [(0, len(TEXTS[0])), (len(TEXTS[0]) + 1, len(text))]
    vectors, sentences = embedder.embed_passages([text, TEXTS[2]], [spans, [(0, 6)]])
    assert vectors.shape == (2, embedder.dimension)
    assert [s.shape for s in sentences] == [(2, embedder.dimension), (1, embedder.dimension)]
    for block in sentences:
        np.testing.assert_allclose(np.linalg.norm(block, axis=1), 1.0, atol=1e-3)
    # Each sentence vector is closer to its own sentence than to the other one.
    own = embedder.embed([TEXTS[0], TEXTS[3]])
    scores = sentences[0] @ own.T
    assert scores[0, 0] > scores[0, 1]
    assert scores[1, 1] > scores[1, 0]


def test_the_registry_gives_the_fake_for_the_fake_model(tmp_path: Path) -> None:
    assert isinstance(load_embedder(Settings(model=FAKE_MODEL, index_dir=tmp_path)), FakeEmbedder)
