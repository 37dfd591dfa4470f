"""The bring-your-own extractive QA model behind the reader seam.

:class:`SpanReader` hands the top hits' passages, each with its start offset in its source file,
to an :class:`~qa.ask.hf_reader.ExtractiveReader`, quotes the best span with those exact offsets,
and refuses when the model's no-answer (null) score beats that span. ``support`` is the span's
score minus its passage's null score: positive means the model prefers answering.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.ask.answer import ANSWER_PASSAGES, Abstention, Answer, render_answer
from qa.ask.hf_reader import ExtractiveReader, best_span
from qa.ask.reader import ReaderContext
from qa.ask.retrieval import Hit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpanReader:
    """A :class:`~qa.ask.reader.Reader` whose answer is the span a local QA model picks."""

    extractive: ExtractiveReader
    template: Path
    passages: int = ANSWER_PASSAGES
    #: How far the null score may beat the best span before the reader refuses (SQuAD 2.0's
    #: null-score threshold; 0 refuses whenever the model prefers no answer).
    margin: float = 0.0

    def answer(
        self, question: str, hits: Sequence[Hit], context: ReaderContext
    ) -> Answer | Abstention:
        """The best span of the top hits, or a refusal when the no-answer score wins."""
        top = list(hits[: self.passages])
        if not top:
            return Abstention("no passage was found for the question", 0.0)
        candidates = self.extractive.read(
            question, [(h.passage.text, h.passage.start) for h in top]
        )
        if not candidates:
            return Abstention("the reader found no span in the top passages", 0.0)
        best = max(candidates, key=lambda c: c.score)
        hit = top[best.passage_index]
        support = best.score - best.no_answer_score
        answer = Answer(
            text=best.text,
            citations=[hit.rank],
            rendered=render_answer(
                self.template, question=question, answer=best.text, hits=top, cited=[hit.rank]
            ),
            source=hit.passage.source,
            start=best.start,
            end=best.end,
            score=best.score,
            passage_rank=hit.rank,
            support=support,
        )
        if best_span(candidates, margin=self.margin) is None:
            log.debug(
                "reader refused %r: null %.3f > span %.3f",
                question,
                best.no_answer_score,
                best.score,
            )
            return Abstention(
                f"the reader model's no-answer score ({best.no_answer_score:.2f}) beats its "
                f"best span ({best.score:.2f})",
                support,
                best=answer,
            )
        return answer
