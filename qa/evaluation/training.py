"""``qa train-answerer``: fit the answer models on XQuAD English and report held-out folds.

Every XQuAD paragraph becomes a seed file of one index (cached under ``--cache``). Each
question is asked twice through :func:`qa.pipeline.run_question`: against the whole index
(answerable), and with its own article's paragraphs filtered out and its article's words
unknown to the reader (unanswerable by construction). Folds are ``article index mod 4``. For
each fold the three models are fitted on the other three and the fold is answered by a
:class:`~qa.answerer.LearnedReader` holding those weights; the shipped weights are then fitted
on all four folds. Given the fold span readers of ``qa train-span-reader --folds-out``, the
held-out folds are answered with them, and a second refusal is fitted with the span reader's
read margin (:mod:`qa.ask.reread`). Nothing here reads WikiQA or the seeds question set.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.ask.answer import (
    ANSWER_PASSAGES,
    Abstention,
    Answer,
    is_unknown_terms_reason,
    unsupported_terms,
)
from qa.ask.answer_features import SENTENCE_FEATURES, Candidate, candidates, sentence_features
from qa.ask.answerer import (
    READ_REFUSAL_FEATURES,
    REFUSAL_FEATURES,
    AnswererWeights,
    LearnedReader,
    ReadRefusal,
    pick_span,
    refusal_features,
)
from qa.ask.logistic import LinearModel, fit_logistic
from qa.ask.reread import (
    REREAD,
    REREAD_GAP,
    REREAD_WEIGHT,
    SECOND_LOOK,
    SpanFinder,
    read_order,
    reread,
)
from qa.ask.spans import SPAN_FEATURES, span_candidates, span_features
from qa.config import DEFAULT_TEMPLATE, Settings
from qa.embed.registry import model_id_for
from qa.evaluation.asked import Asked, AskedSet, collect, context_for, scores_for
from qa.evaluation.metrics import contains_gold, exact_match, token_f1
from qa.index.generation import IndexGeneration
from qa.index.segments import sha256_file

log = logging.getLogger(__name__)

FOLDS = 4
#: Share of the training folds' answerable questions the refusal threshold may refuse.
REFUSE_ANSWERABLE = 0.04
#: Whether near misses (the gold paragraph hidden, its article kept) are refusal negatives too.
NEAR_MISS_NEGATIVES = True
#: A span candidate is a positive example when its SQuAD F1 with a gold answer reaches this.
SPAN_POSITIVE_F1 = 0.67


def _gold(text: str, source: str, a: Asked) -> bool:
    return source == a.source and contains_gold(text, a.answers)


#: The span reader's read margin of a question's best candidates (given their logits).
Margin = Callable[[Asked, Sequence[Candidate], Any], float]


def fit_weights(
    gen: IndexGeneration,
    answerable: Sequence[Asked],
    unanswerable: Sequence[Asked],
    margin: Margin | None = None,
) -> AnswererWeights:
    """The three models and the refusal threshold, fitted on the questions given; with
    ``margin``, also the refusal that adds the span reader's read margin."""
    xs, ys = [], []
    per_question = []
    for a in answerable:
        cands = candidates(a.hits, scores_for(gen, a.vector), passages=3)
        x = sentence_features(a.question, cands)
        per_question.append((a, cands, x))
        xs.append(x)
        ys.append([float(_gold(c.text, c.hit.passage.source, a)) for c in cands])
    sentence = fit_logistic(np.vstack(xs), np.concatenate(ys), features=SENTENCE_FEATURES, l2=1.0)
    rx, ry, reads = [], [], []
    for label, group in ((1.0, per_question), (0.0, _scored(gen, sentence, unanswerable))):
        for a, cands, x in group:
            if cands:
                logits = sentence.logits(x)
                rx.append(refusal_features(a.question, cands, x, logits))
                ry.append(label)
                reads.append(margin(a, cands, logits) if margin is not None else 0.0)
    # The unknown-names rule refuses some answerable questions whatever the confidence; the
    # threshold gets what is left of the refusal budget, measured on these training questions.
    ruled = [_refused_by_rule(gen, a, cands, x, sentence) for a, cands, x in per_question if cands]
    refusal, threshold = _fit_refusal(np.vstack(rx), np.asarray(ry), ruled, REFUSAL_FEATURES)
    read_refusal = None
    if margin is not None:
        with_read = np.hstack([np.vstack(rx), np.asarray(reads)[:, None]])
        model, read_threshold = _fit_refusal(
            with_read, np.asarray(ry), ruled, READ_REFUSAL_FEATURES
        )
        read_refusal = ReadRefusal(model, read_threshold, span_reader_sha256="")
    span = _fit_span(per_question)
    return AnswererWeights(sentence, refusal, span, threshold, {}, read_refusal)


def _fit_refusal(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    ruled: Sequence[bool],
    features: Sequence[str],
) -> tuple[LinearModel, float]:
    """A refusal model and its threshold, calibrated on the answerable rows (``y == 1``)."""
    model = fit_logistic(x, y, features=features, l2=1.0)
    confidence = model.probabilities(x)[y == 1.0]
    return model, calibrate_threshold(confidence, np.asarray(ruled, dtype=bool), REFUSE_ANSWERABLE)


def calibrate_threshold(
    confidence: npt.NDArray[np.float64], ruled: npt.NDArray[np.bool_], share: float
) -> float:
    """The confidence threshold refusing at most ``share`` of answerable questions in all.

    ``confidence`` holds each answerable training question's confidence, ``ruled`` whether the
    unknown-names rule refuses it anyway; the threshold gets what the rule leaves of the budget.
    """
    kept = confidence[~ruled]
    if not len(kept):
        return 0.0
    budget = max(share * len(confidence) - int(ruled.sum()), 0.0) / len(kept)
    return float(np.quantile(kept, budget)) if budget > 0 else 0.0


def _refused_by_rule(
    gen: IndexGeneration,
    a: Asked,
    cands: Sequence[Candidate],
    x: npt.NDArray[np.float64],
    sentence: LinearModel,
) -> bool:
    best = cands[int(np.argmax(sentence.logits(x)))]
    return bool(
        unsupported_terms(
            a.question,
            known=gen.knows,
            article_terms=gen.article_terms(best.hit.passage.source),
            hits=a.hits[:ANSWER_PASSAGES],
        )
    )


def _scored(
    gen: IndexGeneration, sentence: LinearModel, asked: Sequence[Asked]
) -> list[tuple[Asked, Any, npt.NDArray[np.float64]]]:
    out = []
    for a in asked:
        cands = candidates(a.hits, scores_for(gen, a.vector), passages=3)
        out.append((a, cands, sentence_features(a.question, cands)))
    return out


def _fit_span(per_question: Sequence[tuple[Asked, Any, npt.NDArray[np.float64]]]) -> LinearModel:
    """The span model, on the first gold sentence of each answerable question."""
    xs, ys = [], []
    for a, cands, _ in per_question:
        gold = next((c for c in cands if _gold(c.text, c.hit.passage.source, a)), None)
        if gold is None:
            continue
        spans, words = span_candidates(gold.text, a.question)
        if not spans:
            continue
        xs.append(span_features(gold.text, a.question, spans, words))
        ys.append(
            [
                float(token_f1(gold.text[s.start : s.end], a.answers) >= SPAN_POSITIVE_F1)
                for s in spans
            ]
        )
    return fit_logistic(np.vstack(xs), np.concatenate(ys), features=SPAN_FEATURES, l2=1.0)


def report_fold(
    asked: AskedSet,
    weights: AnswererWeights,
    fold: Callable[[Asked], bool],
    span: SpanFinder | None = None,
    reread_weight: float = REREAD_WEIGHT,
    reread_gap: float = REREAD_GAP,
) -> dict[str, float]:
    """Figures of the questions ``fold`` selects, answered by a LearnedReader with ``weights``
    (and the span model ``span``; ``None``: the linear span scorer)."""
    reader = LearnedReader(
        template=DEFAULT_TEMPLATE,
        weights=weights,
        span_model=span,
        reread_weight=reread_weight,
        reread_gap=reread_gap,
    )
    answerable = [a for a in asked.answerable if fold(a)]
    right = refused = forced = by_rule = 0
    f1 = exact = forced_f1 = 0.0
    for a in answerable:
        outcome = reader.answer(a.question, a.hits, context_for(asked.gen, asked.vocab, a))
        answer = outcome if isinstance(outcome, Answer) else outcome.best
        forced += answer is not None and contains_gold(answer.text, a.answers)
        forced_f1 += token_f1(answer.span.text if answer and answer.span else None, a.answers)
        if isinstance(outcome, Abstention):
            refused += 1
            by_rule += is_unknown_terms_reason(outcome.reason)
            continue
        right += contains_gold(outcome.text, a.answers)
        shown = outcome.span.text if outcome.span else None
        f1 += token_f1(shown, a.answers)
        exact += exact_match(shown, a.answers)

    def refused_share(group: Sequence[Asked]) -> float:
        chosen = [a for a in group if fold(a)]
        outcomes = [
            reader.answer(a.question, a.hits, context_for(asked.gen, asked.vocab, a))
            for a in chosen
        ]
        return sum(isinstance(o, Abstention) for o in outcomes) / max(len(chosen), 1)

    n = max(len(answerable), 1)
    return {
        "questions": len(answerable),
        "answer_holds_gold": right / n,
        "answer_holds_gold_no_refusals": forced / n,
        "answerable_refused": refused / n,
        "answerable_refused_unknown_terms": by_rule / n,
        "span_f1": f1 / n,
        "span_exact_match": exact / n,
        "span_f1_no_refusals": forced_f1 / n,
        "span_f1_given_gold_sentence": _span_f1_on_gold_sentences(
            asked.gen, weights, answerable, span
        ),
        "unanswerable_refused": refused_share(asked.unanswerable),
        "near_miss_refused": refused_share(asked.near_miss),
    }


def _span_f1_on_gold_sentences(
    gen: IndexGeneration,
    weights: AnswererWeights,
    answerable: Sequence[Asked],
    finder: SpanFinder | None,
) -> float:
    """Span F1 when the span model is given a sentence that holds the gold answer (a ceiling of
    the span model alone; questions without such a candidate sentence are left out)."""
    total, n = 0.0, 0
    for a in answerable:
        cands = candidates(a.hits, scores_for(gen, a.vector), passages=ANSWER_PASSAGES)
        gold = next((c for c in cands if _gold(c.text, c.hit.passage.source, a)), None)
        if gold is None:
            continue
        span = pick_span(a.question, gold.text, weights, finder)
        n += 1
        total += token_f1(gold.text[span[0] : span[1]] if span else None, a.answers)
    return total / max(n, 1)


def _negatives(asked: AskedSet) -> list[Asked]:
    return asked.unanswerable + (asked.near_miss if NEAR_MISS_NEGATIVES else [])


def train(
    path: Path,
    settings: Settings,
    *,
    cache: Path,
    limit: int | None = None,
    span_finders: Mapping[int, SpanFinder] | None = None,
    reread_weight: float = REREAD_WEIGHT,
    span_reader_sha256: str = "",
) -> tuple[AnswererWeights, dict[str, Any]]:
    """Held-out figures per fold and over all folds, then the weights fitted on every fold.

    ``span_finders`` (fold -> span model trained without that fold) replaces the linear span
    scorer in the held-out figures (``qa train-span-reader --end-to-end``). When they were
    trained with negatives, the refusal with the read margin is fitted too, on cross-fitted
    margins (each question's from the reader that never saw its article), and stamped with
    ``span_reader_sha256``, the shipped reader it is meant for."""
    asked = collect(path, settings, cache, limit)
    margin = None
    if span_finders and all(f.reads_no_answer for f in span_finders.values()):
        margin = cross_fitted_margins(span_finders)
    folds: list[dict[str, float]] = []
    for f in range(FOLDS):

        def held_out(a: Asked, f: int = f) -> bool:
            return a.article % FOLDS == f

        if not any(map(held_out, asked.answerable)):
            continue
        weights = fit_weights(
            asked.gen,
            [a for a in asked.answerable if not held_out(a)],
            [a for a in _negatives(asked) if not held_out(a)],
            margin,
        )
        span = span_finders.get(f) if span_finders is not None else None
        folds.append(report_fold(asked, weights, held_out, span, reread_weight))
        log.info("fold %s: %s", f, folds[-1])
    total = sum(f["questions"] for f in folds) or 1
    pooled = {
        key: round(sum(f[key] * f["questions"] for f in folds) / total, 4)
        for key in (folds[0] if folds else {})
        if key != "questions"
    }
    final = fit_weights(asked.gen, asked.answerable, _negatives(asked), margin)
    trained_on = _trained_on(path, settings, len(asked.answerable))
    read_refusal = None
    if final.read_refusal is not None and span_finders:
        within = f" within {REREAD_GAP} of the best" if math.isfinite(REREAD_GAP) else ""
        trained_on["read_margin"] = (
            f"cross-fitted by the fold readers; re-read {REREAD}{within}"
            f", {SECOND_LOOK} more when none answers"
        )
        read_refusal = _stamped(final.read_refusal, span_reader_sha256, span_finders)
    weights = AnswererWeights(
        final.sentence, final.refusal, final.span, final.threshold, trained_on, read_refusal
    )
    report = {"held_out": pooled, "folds": folds, "trained_on": trained_on}
    return weights, report


def _stamped(
    read: ReadRefusal, span_reader_sha256: str, finders: Mapping[int, SpanFinder]
) -> ReadRefusal:
    """The read refusal naming the shipped span reader, at the precision the folds ran at."""
    precision = next(iter(finders.values())).precision
    return dataclasses.replace(
        read, span_reader_sha256=span_reader_sha256, span_precision=precision
    )


def _trained_on(path: Path, settings: Settings, questions: int) -> dict[str, Any]:
    """What the weights file records of the data and settings they were fitted with."""
    return {
        "data": path.name,
        "sha256": sha256_file(path),
        "questions": questions,
        "negatives": "article hidden" + (" and paragraph hidden" if NEAR_MISS_NEGATIVES else ""),
        "folds": f"article index mod {FOLDS}",
        "model": model_id_for(settings.model),
        "chunk_tokens": settings.chunk_tokens,
        "retrieval_mode": settings.retrieval_mode,
        "passages": ANSWER_PASSAGES,
    }


def cross_fitted_margins(finders: Mapping[int, SpanFinder], gap: float = REREAD_GAP) -> Margin:
    """Each question's read margin by the reader of its own fold (trained without its article),
    reading what the service would read (:func:`qa.ask.reread.read_order`), remembered per
    question and set of sentences read."""
    seen: dict[tuple[int, tuple[str, ...], tuple[str, ...]], float] = {}

    def margin(a: Asked, cands: Sequence[Candidate], logits: Any) -> float:
        first = read_order(logits, REREAD, gap)
        looked = read_order(logits, len(first) + SECOND_LOOK, math.inf)
        key = (id(a), tuple(cands[i].text for i in first), tuple(cands[i].text for i in looked))
        if key not in seen:
            read = reread(finders.get(a.article % FOLDS), a.question, cands, logits, gap=gap)
            seen[key] = 0.0 if read is None else read.margin
        return seen[key]

    return margin
