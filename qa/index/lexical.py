"""The lexical (BM25) part of an index, via bm25s, with English stemming and stop words.

Numbers and names matter in news ("535", "Little Rock"), so tokens keep digits and
single characters, and only common English stop words are dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_TOKEN = re.compile(r"\w+")


@lru_cache(maxsize=1)
def _bm25s() -> Any:
    import bm25s

    # bm25s sets its own logger to DEBUG on import; our entry points decide what is shown.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens without stop words."""
    stop = _stopwords()
    words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
    return list(_stemmer().stemWords(words))


class LexicalIndex:
    """BM25 over passage texts; row ``i`` is passage ``i`` of the generation."""

    def __init__(self, model: Any, size: int) -> None:
        self._model = model
        self.size = size
        self._vocabulary: frozenset[str] | None = None

    @classmethod
    def build(cls, texts: Sequence[str]) -> LexicalIndex:
        """Index ``texts`` (title + passage, as embedded)."""
        model = _bm25s().BM25()
        # bm25s cannot index an empty corpus or empty documents; a placeholder token keeps it valid.
        model.index([tokenize(t) or ["\x00"] for t in texts] or [["\x00"]], show_progress=False)
        return cls(model, len(texts))

    def save(self, folder: Path) -> None:
        """Write the index files into ``folder``."""
        self._model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, size: int) -> LexicalIndex:
        """Read an index written by :meth:`save`."""
        return cls(_bm25s().BM25.load(str(folder), show_progress=False), size)

    @property
    def vocabulary(self) -> frozenset[str]:
        """Every (stemmed) term in the indexed passages."""
        if self._vocabulary is None:
            self._vocabulary = frozenset(self._model.vocab_dict)
        return self._vocabulary

    def knows(self, term: str) -> bool:
        """Whether a word of a question occurs in the index, allowing for derived forms
        ('Chilean' is known when 'Chile' is)."""
        vocab = self.vocabulary
        stems = tokenize(term)
        return all(
            any(stem[:n] in vocab for n in range(len(stem), min(3, len(stem)) - 1, -1))
            for stem in stems
        )

    def scores(self, question: str) -> npt.NDArray[np.float32]:
        """BM25 score of every passage for ``question`` (zeros when no word matches)."""
        tokens = tokenize(question)
        if not tokens or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._model.get_scores(tokens), dtype=np.float32)[: self.size]
