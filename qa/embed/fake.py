"""The deterministic hashing embedder used by tests (``model = "fake"``): no model, exact scores."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from qa.config import FAKE_MODEL
from qa.embed.base import Embedder, Vectors

_WORD = re.compile(r"\w+|[^\w\s]")


class FakeEmbedder(Embedder):
    """Deterministic bag-of-words hashing embedder for tests: fast, no model, exact scores.

    Texts sharing words get similar vectors, so retrieval tests behave sensibly.
    """

    def __init__(self, *, dimension: int = 64, max_seq_length: int = 256) -> None:
        self.model_id = f"{FAKE_MODEL}-hash-{dimension}"
        self.dimension = dimension
        self.max_seq_length = max_seq_length
        #: Passages embedded through :meth:`embed_passages` (tests check incremental builds).
        self.embedded = 0

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[Sequence[tuple[int, int]]],
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        self.embedded += len(texts)
        return super().embed_passages(
            texts, sentence_spans, batch_size=batch_size, progress=progress
        )

    def encode_batch(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for tok in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
            else:
                out[row, 0] = 1.0
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]
