"""The default reader: a learned sentence scorer, a short answer span and a calibrated refusal.

Three small logistic models, fitted on XQuAD English with splits by article
(``python -m qa train-answerer``) and shipped as ``qa/data/answerer.json``:

- the sentence model ranks every sentence of the top hits (:mod:`qa.answer_features`);
- the refusal model turns the best sentence's evidence into the probability that the question is
  answerable from these hits at all; below the calibrated threshold the reader refuses;
- the span model picks the short exact span of the chosen sentence that answers: by default a
  small BERT fine-tuned here that reads the question and the sentence together
  (:mod:`qa.ask.span_model`), or the linear span scorer (:mod:`qa.ask.spans`) with
  ``span_model = "features"``.

Names the index never mentions are still refused by rule (:func:`qa.answer.unsupported_terms`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.ask.answer import (
    ANSWER_PASSAGES,
    Abstention,
    Answer,
    AnswerSpan,
    render_answer,
    unknown_terms_reason,
    unsupported_terms,
)
from qa.ask.answer_features import (
    SENTENCE_FEATURES,
    Candidate,
    candidates,
    metadata_asked,
    sentence_features,
)
from qa.ask.logistic import LinearModel
from qa.ask.reader import ReaderContext
from qa.ask.reread import REREAD, REREAD_GAP, REREAD_WEIGHT, Reread, SpanFinder, reread
from qa.ask.retrieval import Hit
from qa.ask.span_decode import SpanChoice
from qa.ask.spans import SPAN_FEATURES, best_span
from qa.errors import ConfigError
from qa.index.lexical import tokenize

#: The weights file shipped in the package.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "answerer.json"
#: Bumped when the file's layout changes; files of another version are refused.
WEIGHTS_VERSION = 1

_LEANS_BACK = re.compile(r"(He|She|It|They|This|These|That|Those|The two|Ever since)\b")

REFUSAL_FEATURES: tuple[str, ...] = (
    "best_logit",
    "margin",
    "max_semantic",
    "top_dense",
    "best_lexical",
    "coverage",
    "top_bm25",
)
#: The refusal's features when the span reader re-read the best sentences.
READ_REFUSAL_FEATURES: tuple[str, ...] = (*REFUSAL_FEATURES, "read_margin")


@dataclass(frozen=True, slots=True)
class ReadRefusal:
    """A refusal fitted with the span reader's read margin, for that one reader."""

    model: LinearModel
    threshold: float
    #: The SHA-256 of the span reader's weights file whose margins it was fitted on.
    span_reader_sha256: str
    #: The precision that reader ran at when its margins were measured (``"fp32"``, ``"int8"``).
    span_precision: str = "fp32"

    def fits(self, finder: SpanFinder | None) -> bool:
        """Whether ``finder`` reads the margins this refusal was fitted on."""
        return (
            finder is not None
            and finder.weights_sha256 == self.span_reader_sha256
            and finder.precision == self.span_precision
        )

    def to_json(self) -> dict[str, Any]:
        """The file's JSON form of this part."""
        return {
            "model": self.model.to_json(),
            "threshold": round(self.threshold, 6),
            "span_reader_sha256": self.span_reader_sha256,
            "span_precision": self.span_precision,
        }


@dataclass(frozen=True, slots=True)
class AnswererWeights:
    """The three fitted models, the refusal threshold and where they came from."""

    sentence: LinearModel
    refusal: LinearModel
    span: LinearModel
    threshold: float
    trained_on: dict[str, Any]
    #: The refusal used instead when the span reader it names re-reads the sentences.
    read_refusal: ReadRefusal | None = None


def weights_json(weights: AnswererWeights) -> dict[str, Any]:
    """The file's JSON form."""
    return {
        "version": WEIGHTS_VERSION,
        "trained_on": weights.trained_on,
        "sentence": weights.sentence.to_json(),
        "refusal": weights.refusal.to_json(),
        "span": weights.span.to_json(),
        "threshold": round(weights.threshold, 6),
        **({"read_refusal": weights.read_refusal.to_json()} if weights.read_refusal else {}),
    }


@lru_cache(maxsize=4)
def load_weights(path: Path = DEFAULT_WEIGHTS) -> AnswererWeights:
    """Read and validate a weights file (version and feature lists)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"answerer weights '{path}' are unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != WEIGHTS_VERSION:
        found = data.get("version") if isinstance(data, dict) else None
        raise ConfigError(
            f"answerer weights '{path}' have version {found!r}, this seedqa reads version "
            f"{WEIGHTS_VERSION}; rebuild them with `python -m qa train-answerer`"
        )
    where = f"answerer weights '{path}'"
    try:
        threshold = float(data["threshold"])
        trained_on = dict(data["trained_on"])
        parts = data["sentence"], data["refusal"], data["span"]
        read = data.get("read_refusal")
        read_refusal = None
        if read is not None:
            read_refusal = ReadRefusal(
                LinearModel.from_json(read["model"], expect=READ_REFUSAL_FEATURES, where=where),
                float(read["threshold"]),
                str(read["span_reader_sha256"]),
                str(read.get("span_precision", "fp32")),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where} lack a part: {exc!r}") from None
    return AnswererWeights(
        sentence=LinearModel.from_json(parts[0], expect=SENTENCE_FEATURES, where=where),
        refusal=LinearModel.from_json(parts[1], expect=REFUSAL_FEATURES, where=where),
        span=LinearModel.from_json(parts[2], expect=SPAN_FEATURES, where=where),
        threshold=threshold,
        trained_on=trained_on,
        read_refusal=read_refusal,
    )


def refusal_features(
    question: str, cands: Sequence[Candidate], x: npt.NDArray[np.float64], logits: Any
) -> npt.NDArray[np.float64]:
    """One row of :data:`REFUSAL_FEATURES` for a question, from its scored candidates."""
    order = np.argsort(-logits, kind="stable")
    best = int(order[0])
    second = float(logits[order[1]]) if len(order) > 1 else float(logits[best]) - 5.0
    q_terms = set(tokenize(question))
    top = cands[best].hit
    top_terms = set(tokenize(f"{top.passage.title or ''} {top.passage.text}"))
    coverage = len(q_terms & top_terms) / len(q_terms) if q_terms else 0.0
    lexical = x[best, SENTENCE_FEATURES.index("lexical")]
    return np.asarray(
        [
            float(logits[best]),
            float(logits[best]) - second,
            max(c.semantic for c in cands),
            max((c.hit.dense_score or 0.0) for c in cands),
            float(lexical),
            coverage,
            math.log1p(max((c.hit.lexical_score or 0.0) for c in cands)),
        ],
        dtype=np.float64,
    )


def pick_span(
    question: str, sentence: str, weights: AnswererWeights, finder: SpanFinder | None
) -> tuple[int, int] | None:
    """Offsets in ``sentence`` of its answer span: the span model's, or the linear scorer's."""
    if finder is None:
        return best_span(sentence, question, weights.span)
    choice = finder.find(question, sentence)
    return None if choice is None else (choice.start, choice.end)


@dataclass(frozen=True, slots=True)
class LearnedReader:
    """The default reader (see the module docstring)."""

    template: Path
    weights: AnswererWeights
    #: Refuse below this confidence; ``None``: the threshold calibrated with the weights.
    threshold: float | None = None
    passages: int = ANSWER_PASSAGES
    #: Picks the bold span (the fine-tuned span reader); ``None``: the linear span scorer.
    span_model: SpanFinder | None = None
    #: With a span model trained on negatives, its best ``reread`` sentences are read by it
    #: and the quote is the one with the best logit + ``reread_weight`` x (span - null)
    #: (:mod:`qa.ask.reread`).
    reread: int = REREAD
    reread_weight: float = REREAD_WEIGHT
    reread_gap: float = REREAD_GAP

    def answer(
        self, question: str, hits: Sequence[Hit], context: ReaderContext
    ) -> Answer | Abstention:
        """The best sentence of the top hits with its span, or why there is none."""
        cands = candidates(hits, context.sentence_scores, passages=self.passages)
        if not cands:
            reason = "no passage matches the question" if not hits else "no sentences found"
            return Abstention(reason, 0.0)
        x = sentence_features(question, cands)
        logits = self.weights.sentence.logits(x)
        meta = metadata_asked(question, cands)
        read = None
        if meta:  # the headline or the date line was asked for: the sentence model's pick
            chosen = max(meta, key=lambda i: logits[i])
        else:
            read = reread(
                self.span_model,
                question,
                cands,
                logits,
                count=self.reread,
                weight=self.reread_weight,
                gap=self.reread_gap,
            )
            chosen = int(np.argmax(logits)) if read is None else read.chosen
        best = cands[chosen]
        confidence, threshold = self._confidence(question, cands, x, logits, read)
        answer = self._answer(
            question, best, list(hits), confidence, None if read is None else read.read
        )
        threshold = threshold if self.threshold is None else self.threshold
        if confidence < threshold:
            return Abstention(
                f"the passages found do not support an answer "
                f"(confidence {confidence:.2f}, needed {threshold:.2f})",
                round(confidence, 4),
                answer,
            )
        if context.knows is not None and context.article_terms is not None:
            missing = unsupported_terms(
                question,
                known=context.knows,
                article_terms=context.article_terms(best.hit.passage.source),
                hits=hits[: self.passages],
            )
            if missing:
                return Abstention(unknown_terms_reason(missing), round(confidence, 4), answer)
        return answer

    def _confidence(
        self,
        question: str,
        cands: Sequence[Candidate],
        x: npt.NDArray[np.float64],
        logits: Any,
        read: Reread | None,
    ) -> tuple[float, float]:
        """The probability that the hits answer, and the threshold it is held to: with the
        span reader's margin when the weights have a refusal fitted with it."""
        r = refusal_features(question, cands, x, logits)
        with_read = self.weights.read_refusal
        if read is None or with_read is None:
            return float(self.weights.refusal.probabilities(r[None, :])[0]), self.weights.threshold
        row = np.append(r, read.margin)[None, :]
        return float(with_read.model.probabilities(row)[0]), with_read.threshold

    def _answer(
        self,
        question: str,
        best: Candidate,
        hits: list[Hit],
        confidence: float,
        read: SpanChoice | None = None,
    ) -> Answer:
        found = (
            (read.start, read.end)
            if read is not None
            else pick_span(question, best.text, self.weights, self.span_model)
        )
        span = None
        if found is not None:
            s, e = found
            span = AnswerSpan(best.text[s:e], best.start + s, best.start + e)
        start = best.start
        # A sentence that starts with a pronoun leans on the one before it: quote that one too.
        if best.index > 0 and _LEANS_BACK.match(best.text):
            p = best.hit.passage
            start = p.start + p.sentences[best.index - 1][0] if p.sentences else start
        text = best.hit.passage.text[
            start - best.hit.passage.start : best.end - best.hit.passage.start
        ]
        citations = [
            h.rank
            for h in hits
            if h.passage.source == best.hit.passage.source
            and h.passage.start <= start
            and best.end <= h.passage.end
        ]
        rendered = render_answer(
            self.template,
            question=question,
            answer=text,
            hits=hits,
            cited=citations,
            span=None if span is None else span.text,
        )
        return Answer(
            text=text,
            citations=citations,
            rendered=rendered,
            source=best.hit.passage.source,
            start=start,
            end=best.end,
            score=round(confidence, 4),
            passage_rank=best.hit.rank,
            support=round(confidence, 4),
            span=span,
        )
