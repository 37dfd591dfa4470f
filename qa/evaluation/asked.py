"""XQuAD questions asked three ways, for fitting and measuring the answer reader.

Every XQuAD paragraph becomes a seed file of one index (cached). Each question is asked
through :func:`qa.ask.pipeline.run_question` against the whole index (answerable); with every
paragraph of its article filtered out and the article's words unknown to the reader
(unanswerable by construction); and with only its own paragraph filtered out (a near miss: the
article's other paragraphs are about the same subject, as the seeds' unanswerable questions are).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qa.ask.pipeline import run_question
from qa.ask.reader import ReaderContext, Vector
from qa.ask.retrieval import Filters, Hit
from qa.config import Settings
from qa.embed.registry import load_embedder, model_id_for
from qa.evaluation.corpus import cache_folder, indexed
from qa.evaluation.squad import read_squad
from qa.index.generation import IndexGeneration, load_index
from qa.index.lexical import known_word


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
    #: Whether the hidden article's words are also unknown to the unknown-names rule.
    hide_words: bool = True


def article_of(source: str) -> int:
    return int(source.split("_", 1)[0])


class Vocabulary:
    """Which words each article mentions, to hide one article from the unknown-names rule."""

    def __init__(self, gen: IndexGeneration) -> None:
        self.by_article: dict[int, set[str]] = {}
        for source in gen.by_source:
            self.by_article.setdefault(article_of(source), set()).update(gen.article_terms(source))
        self.count: dict[str, int] = {}
        for terms in self.by_article.values():
            for t in terms:
                self.count[t] = self.count.get(t, 0) + 1

    def known_without(self, article: int | None) -> Callable[[str], bool]:
        """The service's test of a word (:func:`qa.index.lexical.known_word`), as if
        ``article`` were not in the index."""
        own = self.by_article.get(article, set()) if article is not None else set()

        def known(word: str) -> bool:
            return known_word(word, lambda t: self.count.get(t, 0) - (t in own) > 0)

        return known


def scores_for(gen: IndexGeneration, vector: Vector) -> Callable[[int], list[float]]:
    def scores(row: int) -> list[float]:
        return gen.sentence_scores(row, vector)

    return scores


def constant(vector: Vector) -> Callable[[str], Vector]:
    def encode(_question: str) -> Vector:
        return vector

    return encode


def context_for(gen: IndexGeneration, vocab: Vocabulary, a: Asked) -> ReaderContext:
    article = min(article_of(s) for s in a.hidden) if a.hidden and a.hide_words else None
    return ReaderContext(
        vector=a.vector,
        sentence_scores=scores_for(gen, a.vector),
        knows=vocab.known_without(article),
        article_terms=gen.article_terms,
    )


def question_vectors(
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


@dataclass
class AskedSet:
    """The index and every question asked the three ways."""

    gen: IndexGeneration
    vocab: Vocabulary
    answerable: list[Asked]
    unanswerable: list[Asked]
    near_miss: list[Asked]


def collect(path: Path, settings: Settings, cache: Path, limit: int | None = None) -> AskedSet:
    """Each XQuAD question asked against the whole index, its article hidden, its paragraph
    hidden."""
    documents, questions = read_squad(path)
    questions = questions[:limit] if limit is not None else questions
    index_dir = cache_folder(cache, path.stem, settings)
    with indexed(documents, settings, index_dir) as (local, _):
        gen = load_index(local)
    vectors = question_vectors(settings, [q.question for q in questions], cache)
    all_sources = frozenset(gen.by_source)
    answerable: list[Asked] = []
    unanswerable: list[Asked] = []
    near_miss: list[Asked] = []
    for q, vector in zip(questions, vectors, strict=True):
        article = article_of(q.source)
        hidden = frozenset(s for s in all_sources if article_of(s) == article)
        ways = (
            (frozenset[str](), answerable),
            (hidden, unanswerable),
            (frozenset([q.source]), near_miss),
        )
        for hide, out in ways:
            filters = Filters(sources=all_sources - hide) if hide else None
            asked = run_question(
                gen,
                q.question,
                encode=constant(vector),
                settings=settings,
                reader=None,
                k=5,
                mode=settings.retrieval_mode,
                filters=filters,
            )
            out.append(
                Asked(
                    q.question,
                    q.answers,
                    q.source,
                    article,
                    asked.hits,
                    vector,
                    hide,
                    hide_words=out is unanswerable,
                )
            )
    return AskedSet(gen, Vocabulary(gen), answerable, unanswerable, near_miss)
