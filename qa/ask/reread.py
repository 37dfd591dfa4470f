"""The span reader re-reads the answerer's best sentences to choose the quote and to judge it.

A span reader trained with sentences that do not answer (``qa train-span-reader
--negatives``) scores each sentence's best span against its [CLS] "no answer" span. The
answerer gives it its :data:`REREAD` best sentences in one batch; the quote is the sentence with
the best ``logit + weight x (span - null)``, and the best ``span - null`` of the batch (the
*read margin*) tells the refusal whether any of them answers at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from qa.ask.answer_features import Candidate
from qa.ask.span_model import SpanChoice

#: How many of the sentence model's best sentences the span reader re-reads.
REREAD = 3
#: Weight of the span reader's answer-vs-null margin beside the sentence model's logit; chosen
#: on XQuAD fold 0 alone (readers and weights fitted on folds 1-3) from 0.5, 1 and 2.
REREAD_WEIGHT = 0.5
#: The read margin when no sentence could be read at all (no token inside any of them).
UNREAD_MARGIN = -50.0


class SpanFinder(Protocol):
    """Picks the answer span of a sentence (:class:`qa.ask.span_model.SpanModel`)."""

    @property
    def reads_no_answer(self) -> bool:
        """Whether its [CLS] (null) score was trained to say "not in this sentence"."""
        ...

    @property
    def weights_sha256(self) -> str | None:
        """The SHA-256 of its weights file, when it was loaded from one."""
        ...

    def find(
        self, question: str, context: str, window: tuple[int, int] | None = None
    ) -> SpanChoice | None:
        """The best span of ``context`` inside ``window``, or ``None``."""
        ...

    def find_many(
        self, items: Sequence[tuple[str, str, tuple[int, int]]]
    ) -> list[SpanChoice | None]:
        """:meth:`find` for many (question, context, window) triples at once."""
        ...


@dataclass(frozen=True, slots=True)
class Reread:
    """What the span reader made of the best sentences."""

    #: Index (into the candidates) of the sentence to quote.
    chosen: int
    #: Its span, as the reader found it.
    read: SpanChoice | None
    #: The best ``span - null`` score among the sentences read: > 0 means "one answers".
    margin: float


def reread(
    finder: SpanFinder | None,
    question: str,
    cands: Sequence[Candidate],
    logits: Any,
    *,
    count: int = REREAD,
    weight: float = REREAD_WEIGHT,
) -> Reread | None:
    """The span reader's reading of the ``count`` best candidates by ``logits``, or ``None``
    when there is no reader that can judge sentences (or nothing to read)."""
    if finder is None or not finder.reads_no_answer or not len(cands):
        return None
    order = [int(i) for i in np.argsort(-np.asarray(logits), kind="stable")[: max(count, 1)]]
    reads = finder.find_many([(question, cands[i].text, (0, len(cands[i].text))) for i in order])
    margins = [-math.inf if r is None else r.score - r.null_score for r in reads]
    combined = [float(logits[i]) + weight * m for i, m in zip(order, margins, strict=True)]
    k = max(range(len(order)), key=lambda j: combined[j])
    best_margin = max(margins)
    return Reread(order[k], reads[k], best_margin if math.isfinite(best_margin) else UNREAD_MARGIN)
