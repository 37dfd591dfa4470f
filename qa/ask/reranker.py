"""Bring-your-own reranker: a sentence-transformers CrossEncoder folder, offline, on the CPU.

A cross-encoder reads the question and a passage together and gives one relevance score per
pair; :func:`rerank_hits` sorts the retrieved hits by it before an answer is looked for.
sentence-transformers (and so torch) is imported only when a reranker is built.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qa.ask.hf_folder import check_model_folder
from qa.ask.retrieval import Hit
from qa.errors import ReaderError

log = logging.getLogger(__name__)

#: Pairs per forward pass.
PAIR_BATCH = 16


class CrossEncoderReranker:
    """Scores (question, text) pairs with a local cross-encoder; higher is more relevant."""

    def __init__(self, *, path: Path, device: str = "cpu") -> None:
        self.path = Path(path)
        self.device = device
        config = check_model_folder(
            self.path,
            role="reranker",
            suffix="ForSequenceClassification",
            kind="a cross-encoder (sequence classification)",
        )
        labels = int(getattr(config, "num_labels", 1))
        if labels != 1:
            raise ReaderError(
                f"reranker folder '{self.path}' is a classifier with {labels} labels; "
                "a cross-encoder reranker gives one score per pair (num_labels = 1)"
            )
        self._model = _load(self.path, device)
        # One shared fast tokenizer is reconfigured on every call (see hf_reader.py); the
        # forward passes would compete for the same cores anyway.
        self._lock = threading.Lock()

    def score(self, question: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text, in the order given."""
        if not texts:
            return []
        with self._lock:
            scores = self._model.predict(
                [(question, t) for t in texts],
                batch_size=PAIR_BATCH,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return [float(s) for s in scores]

    def order(self, question: str, texts: Sequence[str]) -> list[int]:
        """Indices of ``texts`` from the most to the least relevant (ties keep their order)."""
        return _descending(self.score(question, texts))


def _load(path: Path, device: str) -> Any:
    """The CrossEncoder of ``path``, or :class:`ReaderError` saying why not."""
    from sentence_transformers import CrossEncoder

    try:
        model = CrossEncoder(str(path), device=device, local_files_only=True)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise ReaderError(
            f"reranker folder '{path}' cannot be loaded as a cross-encoder: {exc}"
        ) from exc
    log.info("loaded reranker %s on %s", path, device)
    return model


def rerank_hits(reranker: CrossEncoderReranker, question: str, hits: Sequence[Hit]) -> list[Hit]:
    """``hits`` reordered by the cross-encoder: ranks renumbered from 1, ``score`` its score.

    The dense and lexical scores are kept, so a client still sees what retrieval thought.
    """
    scores = reranker.score(question, [h.passage.text for h in hits])
    return [
        dataclasses.replace(hits[i], rank=rank, score=scores[i])
        for rank, i in enumerate(_descending(scores), start=1)
    ]


def _descending(scores: Sequence[float]) -> list[int]:
    """Indices from the highest score to the lowest; equal scores keep their order."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])
