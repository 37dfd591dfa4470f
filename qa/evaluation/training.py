"""``qa train-answerer``: fit the answer models on XQuAD English and report held-out folds.

The weights file is written aside, then renamed into place.

Every XQuAD paragraph becomes a seed file of one index (cached under ``--cache``). Each
question is asked twice through :func:`qa.pipeline.run_question`: against the whole index
(answerable), and with its own article's paragraphs filtered out and its article's words
unknown to the reader (unanswerable by construction). Folds are ``article index mod 4``. For
each fold the three models are fitted on the other three and the fold is answered by a
:class:`~qa.answerer.LearnedReader` holding those weights; the shipped weights are then fitted
on all four folds. Nothing here reads WikiQA or the seeds question set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    REFUSAL_FEATURES,
    AnswererWeights,
    LearnedReader,
    file_sha256,
    refusal_features,
    weights_json,
)
from qa.ask.logistic import LinearModel, fit_logistic
from qa.ask.pipeline import run_question
from qa.ask.reader import ReaderContext, Vector
from qa.ask.retrieval import Filters, Hit
from qa.ask.spans import SPAN_FEATURES, span_candidates, span_features
from qa.config import DEFAULT_TEMPLATE, Settings
from qa.embed.registry import load_embedder, model_id_for
from qa.evaluation.corpus import cache_folder, indexed
from qa.evaluation.metrics import contains_gold, squad_tokens, token_f1
from qa.evaluation.squad import read_squad
from qa.index.generation import IndexGeneration, load_index
from qa.index.lexical import tokenize

log = logging.getLogger(__name__)

FOLDS = 4
#: Share of the training folds' answerable questions the refusal threshold may refuse.
REFUSE_ANSWERABLE = 0.04
#: A span candidate is a positive example when its SQuAD F1 with a gold answer reaches this.
SPAN_POSITIVE_F1 = 0.67


@dataclass
class Asked:
    """One question asked one way, with what the reader needs to answer it again."""

    question: str
    answers: list[str]
    source: str
    article: int
    hits: list[Hit]
    vector: Vector
    hidden: frozenset[str]  # sources the reader must not see (unanswerable by construction)


def _article(source: str) -> int:
    return int(source.split("_", 1)[0])


class _Vocabulary:
    """Which words each article mentions, to hide one article from the unknown-names rule."""

    def __init__(self, gen: IndexGeneration) -> None:
        self.by_article: dict[int, set[str]] = {}
        for source in gen.by_source:
            self.by_article.setdefault(_article(source), set()).update(gen.article_terms(source))
        self.count: dict[str, int] = {}
        for terms in self.by_article.values():
            for t in terms:
                self.count[t] = self.count.get(t, 0) + 1

    def known_without(self, article: int | None) -> Callable[[str], bool]:
        own = self.by_article.get(article, set()) if article is not None else set()

        def known(word: str) -> bool:
            terms = tokenize(word)
            return bool(terms) and all(self.count.get(t, 0) - (t in own) > 0 for t in terms)

        return known


def _scores(gen: IndexGeneration, vector: Vector) -> Callable[[int], list[float]]:
    def scores(row: int) -> list[float]:
        return gen.sentence_scores(row, vector)

    return scores


def _constant(vector: Vector) -> Callable[[str], Vector]:
    def encode(_question: str) -> Vector:
        return vector

    return encode


def _context(gen: IndexGeneration, vocab: _Vocabulary, a: Asked) -> ReaderContext:
    article = min(_article(s) for s in a.hidden) if a.hidden else None
    return ReaderContext(
        vector=a.vector,
        sentence_scores=_scores(gen, a.vector),
        knows=vocab.known_without(article),
        article_terms=gen.article_terms,
    )


def _question_vectors(
    settings: Settings, questions: Sequence[str], cache: Path
) -> npt.NDArray[np.float32]:
    key = hashlib.sha256(
        json.dumps([model_id_for(settings.model), *questions]).encode("utf-8")
    ).hexdigest()[:16]
    path = cache / f"question-vectors-{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)  # type: ignore[no-any-return]
    vectors = load_embedder(settings).embed(list(questions), batch_size=32)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors, allow_pickle=False)
    os.replace(tmp, path)
    return vectors


def collect(
    path: Path, settings: Settings, cache: Path, limit: int | None = None
) -> tuple[IndexGeneration, _Vocabulary, list[Asked], list[Asked]]:
    """Each XQuAD question asked against the whole index and with its article hidden."""
    documents, questions = read_squad(path)
    questions = questions[:limit] if limit is not None else questions
    index_dir = cache_folder(cache, path.stem, settings)
    with indexed(documents, settings, index_dir) as (local, _):
        gen = load_index(local)
    vectors = _question_vectors(settings, [q.question for q in questions], cache)
    all_sources = frozenset(gen.by_source)
    answerable: list[Asked] = []
    unanswerable: list[Asked] = []
    for q, vector in zip(questions, vectors, strict=True):
        article = _article(q.source)
        hidden = frozenset(s for s in all_sources if _article(s) == article)
        for hide, out in ((frozenset[str](), answerable), (hidden, unanswerable)):
            filters = Filters(sources=all_sources - hide) if hide else None
            asked = run_question(
                gen,
                q.question,
                encode=_constant(vector),
                settings=settings,
                reader=None,
                k=5,
                mode=settings.retrieval_mode,
                filters=filters,
            )
            out.append(Asked(q.question, q.answers, q.source, article, asked.hits, vector, hide))
    return gen, _Vocabulary(gen), answerable, unanswerable


def _gold(text: str, source: str, a: Asked) -> bool:
    return source == a.source and contains_gold(text, a.answers)


def fit_weights(
    gen: IndexGeneration, answerable: Sequence[Asked], unanswerable: Sequence[Asked]
) -> AnswererWeights:
    """The three models and the refusal threshold, fitted on the questions given."""
    xs, ys = [], []
    per_question = []
    for a in answerable:
        cands = candidates(a.hits, _scores(gen, a.vector), passages=3)
        x = sentence_features(a.question, cands)
        per_question.append((a, cands, x))
        xs.append(x)
        ys.append([float(_gold(c.text, c.hit.passage.source, a)) for c in cands])
    sentence = fit_logistic(np.vstack(xs), np.concatenate(ys), features=SENTENCE_FEATURES, l2=1.0)
    rx, ry = [], []
    for label, group in ((1.0, per_question), (0.0, _scored(gen, sentence, unanswerable))):
        for a, cands, x in group:
            if cands:
                rx.append(refusal_features(a.question, cands, x, sentence.logits(x)))
                ry.append(label)
    refusal = fit_logistic(np.vstack(rx), np.asarray(ry), features=REFUSAL_FEATURES, l2=1.0)
    # The unknown-names rule refuses some answerable questions whatever the confidence; the
    # threshold gets what is left of the refusal budget, measured on these training questions.
    ruled = [_refused_by_rule(gen, a, cands, x, sentence) for a, cands, x in per_question if cands]
    confidence = refusal.probabilities(np.vstack(rx))[np.asarray(ry) == 1.0]
    threshold = calibrate_threshold(confidence, np.asarray(ruled, dtype=bool), REFUSE_ANSWERABLE)
    span = _fit_span(per_question)
    return AnswererWeights(sentence, refusal, span, threshold, {})


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
        )
    )


def _scored(
    gen: IndexGeneration, sentence: LinearModel, asked: Sequence[Asked]
) -> list[tuple[Asked, Any, npt.NDArray[np.float64]]]:
    out = []
    for a in asked:
        cands = candidates(a.hits, _scores(gen, a.vector), passages=3)
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


def _exact(text: str | None, answers: Sequence[str]) -> bool:
    return text is not None and any(squad_tokens(text) == squad_tokens(g) for g in answers)


def report_fold(
    gen: IndexGeneration,
    vocab: _Vocabulary,
    weights: AnswererWeights,
    answerable: Sequence[Asked],
    unanswerable: Sequence[Asked],
) -> dict[str, float]:
    """Figures of one held-out fold, answered by a LearnedReader with ``weights``."""
    reader = LearnedReader(template=DEFAULT_TEMPLATE, weights=weights)
    right = refused = forced = by_rule = 0
    f1 = exact = 0.0
    for a in answerable:
        outcome = reader.answer(a.question, a.hits, _context(gen, vocab, a))
        answer = outcome if isinstance(outcome, Answer) else outcome.best
        forced += answer is not None and contains_gold(answer.text, a.answers)
        if isinstance(outcome, Abstention):
            refused += 1
            by_rule += is_unknown_terms_reason(outcome.reason)
            continue
        right += contains_gold(outcome.text, a.answers)
        span = outcome.span.text if outcome.span else None
        f1 += token_f1(span, a.answers)
        exact += _exact(span, a.answers)
    una_refused = sum(
        isinstance(reader.answer(a.question, a.hits, _context(gen, vocab, a)), Abstention)
        for a in unanswerable
    )
    n = max(len(answerable), 1)
    return {
        "questions": len(answerable),
        "answer_holds_gold": right / n,
        "answer_holds_gold_no_refusals": forced / n,
        "answerable_refused": refused / n,
        "answerable_refused_unknown_terms": by_rule / n,
        "span_f1": f1 / n,
        "span_exact_match": exact / n,
        "unanswerable_refused": una_refused / max(len(unanswerable), 1),
    }


def train(
    path: Path, settings: Settings, *, cache: Path, limit: int | None = None
) -> tuple[AnswererWeights, dict[str, Any]]:
    """Held-out figures per fold and over all folds, then the weights fitted on every fold."""
    gen, vocab, answerable, unanswerable = collect(path, settings, cache, limit)
    folds: list[dict[str, float]] = []
    for f in range(FOLDS):
        train_a = [a for a in answerable if a.article % FOLDS != f]
        train_u = [a for a in unanswerable if a.article % FOLDS != f]
        test_a = [a for a in answerable if a.article % FOLDS == f]
        test_u = [a for a in unanswerable if a.article % FOLDS == f]
        if not train_a or not test_a:
            continue
        weights = fit_weights(gen, train_a, train_u)
        folds.append(report_fold(gen, vocab, weights, test_a, test_u))
        log.info("fold %s: %s", f, folds[-1])
    total = sum(f["questions"] for f in folds) or 1
    held_out = {
        key: round(sum(f[key] * f["questions"] for f in folds) / total, 4)
        for key in (folds[0] if folds else {})
        if key != "questions"
    }
    final = fit_weights(gen, answerable, unanswerable)
    trained_on = {
        "data": path.name,
        "sha256": file_sha256(path),
        "questions": len(answerable),
        "folds": f"article index mod {FOLDS}",
        "model": model_id_for(settings.model),
        "chunk_tokens": settings.chunk_tokens,
        "retrieval_mode": settings.retrieval_mode,
        "passages": ANSWER_PASSAGES,
    }
    weights = AnswererWeights(
        final.sentence, final.refusal, final.span, final.threshold, trained_on
    )
    report = {"held_out": held_out, "folds": folds, "trained_on": trained_on}
    return weights, report


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``qa train-answerer``."""
    parser.add_argument("--xquad", type=Path, required=True, help="XQuAD / SQuAD v1.1 JSON file")
    parser.add_argument("--out", type=Path, required=True, help="weights file to write")
    parser.add_argument("--cache", type=Path, default=Path(".eval-cache"), help="cache folder")
    parser.add_argument("--limit", type=int, help="use only the first N questions")


def run_train_command(args: argparse.Namespace, settings: Settings) -> int:
    """Fit, print the held-out report as JSON, write the weights aside then into place."""
    weights, report = train(args.xquad, settings, cache=args.cache, limit=args.limit)
    text = json.dumps(weights_json(weights), indent=1, sort_keys=True) + "\n"
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, args.out)
    print(json.dumps(report))
    return 0
