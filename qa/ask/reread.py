"""The span reader re-reads the answerer's best sentences to choose the quote and to judge it.

A span reader trained with sentences that do not answer (``qa train-span-reader
--negatives``) scores each sentence's best span against its [CLS] "no answer" span. The
answerer gives it its :data:`REREAD` best sentences (less any whose logit is more than
:data:`REREAD_GAP` below the best one's; none by default); the quote is the sentence with the
best ``logit + weight x (span - null)``, and the best ``span - null`` of those read (the *read
margin*) tells the refusal whether any of them answers at all. When none of them does (every
margin below 0), the reader takes a second look at the next :data:`SECOND_LOOK` sentences and
chooses among all it read: the sentence model, which reads each sentence alone, sometimes ranks
the answer third or fourth, and the reader is the better judge. A sentence that opens with a
pronoun is read with the sentence before it (:func:`read_context`); its span comes back in the
sentence's own offsets.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from qa.ask.answer_features import Candidate
from qa.ask.span_decode import SpanChoice
from qa.ingest.sentences import split_sentences

#: How many of the sentence model's best sentences the span reader re-reads. Two, not three:
#: on XQuAD's held-out folds reading two gave the same answers (0.814 against 0.815 holding the
#: gold span, span F1 0.519 against 0.521) and on two cores two sentences are read side by side
#: in one round instead of two (docs/quality.md).
REREAD = 2
#: Weight of the span reader's answer-vs-null margin beside the sentence model's logit; chosen
#: from 0.25, 0.5, 1 and 2 with nested XQuAD folds (three of four folds chose 0.5, one 1).
REREAD_WEIGHT = 0.5
#: Only sentences whose logit is within this much of the best one's are re-read (the best one
#: always is). No limit by default: on XQuAD fold 0 a gap of 1 read 1.25 sentences instead of 3
#: for 0.3 points of answer accuracy, but on the seeds check (news, not Wikipedia) it cost 7
#: points, so the sentence model's confidence does not carry over well enough to skip reads
#: (docs/quality.md).
REREAD_GAP = math.inf
#: More sentences read, in the sentence model's order, when none of the first :data:`REREAD`
#: reads as answering (margin below 0); 0: no second look. One, by a rule set before the runs
#: (held out on XQuAD: answer accuracy and span F1 at most 0.2 points lower, at most 4.5 % of
#: answerable and at least 92 % of unanswerable questions refused, near misses at most a point
#: lower, one of the first three 0.3 points better): it took the answer holding the gold span
#: from 0.824 to 0.827 and span F1 from 0.535 to 0.538; two more failed the rule on near misses
#: (0.650 -> 0.640), and keeping the first round's margin for the refusal gained too little
#: (docs/quality.md).
SECOND_LOOK = 1
#: The read margin when no sentence could be read at all (no token inside any of them).
UNREAD_MARGIN = -50.0
#: A sentence that opens with a pronoun is read with the sentence before it in its passage as
#: context (the span still comes from the sentence): "It is 82,400 km2 large with 33.43 million
#: people" does not say what "it" is.
_PRONOUN_FIRST = re.compile(r"(It|He|She|They|This|These|Its|His|Her|Their|That|Those)\b")


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

    @property
    def precision(self) -> str:
        """The precision of the weights it runs (``"fp32"``, ``"int8"``): its margins depend
        on it."""
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


def read_order(logits: Any, count: int = REREAD, gap: float = REREAD_GAP) -> list[int]:
    """Indices of the candidates to re-read, best first: the ``count`` best by ``logits``, less
    those more than ``gap`` below the best (never fewer than one)."""
    values = np.asarray(logits, dtype=np.float64)
    order = [int(i) for i in np.argsort(-values, kind="stable")[: max(count, 1)]]
    return [i for i in order if values[i] >= values[order[0]] - gap] if order else []


def reread(
    finder: SpanFinder | None,
    question: str,
    cands: Sequence[Candidate],
    logits: Any,
    *,
    count: int = REREAD,
    weight: float = REREAD_WEIGHT,
    gap: float = REREAD_GAP,
    second_look: int = SECOND_LOOK,
) -> Reread | None:
    """The span reader's reading of the candidates :func:`read_order` picks (and, when none of
    them answers, of the next ``second_look``), or ``None`` when there is no reader that can
    judge sentences (or nothing to read)."""
    if finder is None or not finder.reads_no_answer or not len(cands):
        return None
    order = read_order(logits, count, gap)
    reads = _read(finder, question, [cands[i] for i in order])
    margins = [_margin(r) for r in reads]
    if second_look > 0 and max(margins) < 0:
        more = read_order(logits, len(order) + second_look, math.inf)[len(order) :]
        reads += _read(finder, question, [cands[i] for i in more])
        margins += [_margin(r) for r in reads[len(order) :]]
        order += more
    combined = [float(logits[i]) + weight * m for i, m in zip(order, margins, strict=True)]
    k = max(range(len(order)), key=lambda j: combined[j])
    best_margin = max(margins)
    return Reread(order[k], reads[k], best_margin if math.isfinite(best_margin) else UNREAD_MARGIN)


def _read(finder: SpanFinder, question: str, cands: Sequence[Candidate]) -> list[SpanChoice | None]:
    """The reader's span of each candidate, in the candidate's own offsets."""
    if not cands:
        return []
    contexts = [read_context(c) for c in cands]
    found = finder.find_many([(question, text, window) for text, window in contexts])
    return [
        None if r is None else dataclasses.replace(r, start=r.start - lo, end=r.end - lo)
        for r, (_, (lo, _)) in zip(found, contexts, strict=True)
    ]


def _margin(read: SpanChoice | None) -> float:
    return -math.inf if read is None else read.score - read.null_score


def read_context(cand: Candidate) -> tuple[str, tuple[int, int]]:
    """What the reader reads for ``cand``, and where the sentence lies in it: the sentence
    alone, or with the sentence before it when it opens with a pronoun."""
    whole = (cand.text, (0, len(cand.text)))
    if cand.index == 0 or not _PRONOUN_FIRST.match(cand.text):
        return whole
    passage = cand.hit.passage
    spans = passage.sentences or tuple(split_sentences(passage.text))
    if cand.index >= len(spans):
        return whole
    begin = spans[cand.index - 1][0]
    lo = cand.start - passage.start
    if not 0 <= begin <= lo or passage.text[lo : lo + len(cand.text)] != cand.text:
        return whole
    return passage.text[begin : lo + len(cand.text)], (lo - begin, lo - begin + len(cand.text))
