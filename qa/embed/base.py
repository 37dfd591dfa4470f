"""The embedder interface: one abstract batch method; batching, ordering and sentence pooling.

Subclasses implement :meth:`Embedder.encode_batch` and the two tokenizer methods; the base class
does batching, length sorting (less padding) and the progress bar. Vectors are L2-normalised
float32, so inner product between them is cosine similarity.
"""

from __future__ import annotations

import logging
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


class Embedder(ABC):
    """Turns texts into unit vectors and counts tokens the way the model sees them."""

    #: Stable identifier recorded in the index manifest.
    model_id: str
    dimension: int
    #: The model's maximum sequence length, special tokens included.
    max_seq_length: int
    #: How many special tokens (e.g. [CLS], [SEP]) the model adds to every input.
    special_tokens: int = 2

    @property
    def max_tokens(self) -> int:
        """The most content tokens one input can hold without being truncated."""
        return self.max_seq_length - self.special_tokens

    @abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors for one batch of texts, shape ``(len(texts), dimension)``."""

    @abstractmethod
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of content tokens (no special tokens) of each text."""

    @abstractmethod
    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each content token of ``text``."""

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False
    ) -> Vectors:
        """Unit vectors for any number of texts, in the order given."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for idx in length_sorted_batches(texts, batch_size, progress=progress):
            out[idx] = self.encode_batch([texts[i] for i in idx])
        return out

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[Sequence[tuple[int, int]]],
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """Passage vectors, and for each passage one unit vector per sentence span of its text.

        This generic version embeds each sentence on its own; models that expose token
        embeddings override it to pool them from the passage's single forward pass.
        """
        vectors = self.embed(texts, batch_size=batch_size, progress=progress)
        flat = [texts[i][s:e] for i, spans in enumerate(sentence_spans) for s, e in spans]
        pooled = self.embed(flat, batch_size=batch_size)
        out, pos = [], 0
        for spans in sentence_spans:
            out.append(pooled[pos : pos + len(spans)])
            pos += len(spans)
        return vectors, out


def length_sorted_batches(
    texts: Sequence[str], batch_size: int, *, progress: bool
) -> Iterator[list[int]]:
    """Index batches, longest texts first so each batch pads to similar lengths."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    bar = _progress_bar(len(texts), enabled=progress)
    try:
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            yield idx
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()


def _unit(v: Vectors) -> Vectors:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def pool_sentences(
    tokens: Vectors,
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
    passage_vector: Vectors,
) -> Vectors:
    """One unit vector per character span: the mean of the contextual embeddings of the tokens
    inside it (special tokens have empty offsets and never count). A span with no token of its
    own gets the passage vector."""
    rows = []
    for s, e in spans:
        take = [t for t, (a, b) in enumerate(offsets) if b > a and a >= s and b <= e]
        rows.append(_unit(tokens[take].mean(axis=0)) if take else passage_vector)
    return np.asarray(rows, dtype=np.float32).reshape(-1, tokens.shape[1])


def _progress_bar(total: int, *, enabled: bool) -> Any:
    if not enabled or total < 64 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="passage", desc="embedding", file=sys.stderr)
