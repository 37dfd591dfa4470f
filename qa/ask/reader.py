"""The answering seam: what any reader of the top hits must do, and what it gets to do it.

A reader takes the question, the retrieved hits (best first) and a :class:`ReaderContext` (what
it may need from the live index generation: the question's vector, each hit's sentence
cosines, which words the index knows) and returns either an :class:`~qa.ask.answer.Answer` (an
exact quote with offsets, an optional short span, a calibrated confidence, citations) or an
:class:`~qa.ask.answer.Abstention` saying why not.

The built-in readers score sentences (:mod:`qa.ask.answer`, :mod:`qa.answerer`); a reader built on
a user-supplied extractive QA model or a cross-encoder implements the same method by mapping its
spans back to the hits' offsets (``hit.passage.start + offset in hit.passage.text``) and turning
its no-answer score into an abstention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from qa.ask.answer import ANSWER_PASSAGES, Abstention, Answer, extract_answer
from qa.ask.retrieval import Hit

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ReaderContext:
    """Per-question context from the live generation that a reader may use or ignore."""

    #: The question's unit vector (``None`` when the question was not embedded).
    vector: Vector | None
    #: Cosine of each sentence of passage ``row`` with the question, in sentence order.
    sentence_scores: Callable[[int], list[float]] | None = None
    #: Whether any indexed article mentions a word (names the index never mentions are refused).
    knows: Callable[[str], bool] | None = None
    #: The (stemmed) terms of one article, by source.
    article_terms: Callable[[str], frozenset[str]] | None = None


@runtime_checkable
class Reader(Protocol):
    """Anything that answers a question from its top hits, or says why it cannot."""

    def answer(
        self, question: str, hits: Sequence[Hit], context: ReaderContext
    ) -> Answer | Abstention:
        """The best answer among ``hits`` (exact offsets into their sources), or a refusal."""
        ...


@dataclass(frozen=True, slots=True)
class HandSetReader:
    """The hand-weighted sentence scorer of :mod:`qa.ask.answer` behind the reader seam."""

    template: Path
    threshold: float
    passages: int = ANSWER_PASSAGES

    def answer(
        self, question: str, hits: Sequence[Hit], context: ReaderContext
    ) -> Answer | Abstention:
        """The best sentence of the top hits, or why none is supported enough."""
        scores = None
        if context.sentence_scores is not None:
            scores = {h.row: context.sentence_scores(h.row) for h in hits[: self.passages]}
        return extract_answer(
            question,
            list(hits),
            threshold=self.threshold,
            template=self.template,
            sentence_scores=scores,
            known=context.knows,
            article_terms=context.article_terms,
            passages=self.passages,
        )
