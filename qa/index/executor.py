"""Where a build's embedding work runs: the seam between the build and its executors.

A build decides *what* to embed (content hashes, see :mod:`qa.index.builder`); an executor
decides *where*: :class:`LocalExecutor` runs the embedder in this process (the default), and
:class:`qa.index.ray_executor.RayExecutor` spreads the same batches over a Ray cluster. Every
executor returns exactly what :meth:`qa.embed.base.Embedder.embed_passages` returns, in order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from qa.embed.base import Embedder, Vectors

Spans = Sequence[Sequence[tuple[int, int]]]


class Executor(ABC):
    """Turns the passages a build must embed into passage and sentence vectors."""

    #: Passages embedded through this executor (tests check that incremental builds stay small).
    embedded: int = 0

    @abstractmethod
    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Spans,
        *,
        embedder: Embedder,
        batch_size: int,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """Passage vectors and per-passage sentence vectors, in the order of ``texts``.

        ``embedder`` is the driver's model (already loaded for chunking); executors that run
        elsewhere only use it for its identity and dimension.
        """

    def close(self) -> None:  # noqa: B027  # optional hook; most executors hold nothing
        """Release what the executor holds (clusters it connected to, actors)."""


class LocalExecutor(Executor):
    """Today's path: the driver's own embedder, in this process, batched as it batches."""

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Spans,
        *,
        embedder: Embedder,
        batch_size: int,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """Embed in this process."""
        self.embedded += len(texts)
        return embedder.embed_passages(
            texts, sentence_spans, batch_size=batch_size, progress=progress
        )
