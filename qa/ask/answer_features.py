"""Features of candidate answer sentences, for the learned answer scorer (:mod:`qa.answerer`).

Every sentence of the top hits is a candidate. Its features are general signals, none of them
written for particular questions: similarity (the pooled sentence cosine, IDF overlap, the
sentence's BM25 score among the candidates), answer-type evidence that is not word overlap
(a number, date or name the question does not already give; a role word beside a name for
"who" questions), abbreviation <-> expansion matches, position and passage rank.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qa.ask.answer import _ASKS_DATE_LINE, _ASKS_TITLE, _DATE, _NAME, _NUMBER, question_type
from qa.ask.retrieval import Hit
from qa.ask.spellings import abbreviation_match
from qa.index.lexical import tokenize
from qa.ingest.articles import is_date_line
from qa.ingest.sentences import split_sentences

#: The feature names, in column order. Stored beside the weights and checked on load.
SENTENCE_FEATURES: tuple[str, ...] = (
    "semantic",
    "semantic_gap",
    "lexical",
    "lexical_gap",
    "bm25",
    "novel",
    "rank",
    "hit_dense",
    "hit_lexical",
    "typed",
    "number_for_number",
    "date_for_date",
    "name_for_name",
    "role_beside_name",
    "abbreviation",
    "position",
    "first_in_passage",
    "log_length",
)

_ROLE = re.compile(
    r"\b(president|chair(man|woman|person)?|head|director|leader|founder|chief|ceo|minister|"
    r"mayor|governor|secretary|commissioner|king|queen|captain|coach|manager|editor|author|"
    r"inventor|composer|architect|owner|general|senator|judge|dean|professor)s?\b",
    re.I,
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One sentence of a hit: ``text`` is ``source text[start:end]``."""

    hit: Hit
    start: int
    end: int
    text: str
    terms: frozenset[str]
    semantic: float
    index: int  # the sentence's position in its passage
    count: int  # sentences in the passage


def candidates(
    hits: Sequence[Hit],
    sentence_scores: Callable[[int], list[float]] | None,
    *,
    passages: int,
) -> list[Candidate]:
    """Every sentence of the top ``passages`` hits, with its pooled cosine to the question."""
    out: list[Candidate] = []
    for hit in hits[:passages]:
        p = hit.passage
        spans = p.sentences or tuple(split_sentences(p.text))
        scores = sentence_scores(hit.row) if sentence_scores is not None and p.sentences else []
        if len(scores) != len(spans):
            scores = [hit.dense_score or 0.0] * len(spans)
        for i, ((s, e), sem) in enumerate(zip(spans, scores, strict=True)):
            text = p.text[s:e]
            out.append(
                Candidate(
                    hit,
                    p.start + s,
                    p.start + e,
                    text,
                    frozenset(tokenize(text)),
                    sem,
                    i,
                    len(spans),
                )
            )
    return out


def _idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _new_matches(pattern: re.Pattern[str], sentence: str, question: str) -> bool:
    q = question.lower()
    q_terms = set(tokenize(question))
    for m in pattern.finditer(sentence):
        found = m.group(0)
        if found.lower() in q or (set(tokenize(found)) and set(tokenize(found)) <= q_terms):
            continue
        return True
    return False


def _role_beside_name(sentence: str, question: str) -> bool:
    """A role word next to a name the question does not give ('its chairman, Li Wei')."""
    for m in _ROLE.finditer(sentence):
        window = sentence[max(0, m.start() - 40) : m.end() + 40]
        if _new_matches(_NAME, window, question):
            return True
    return False


def _bm25(question_terms: list[str], cands: Sequence[Candidate]) -> list[float]:
    """BM25 of each candidate sentence for the question, statistics over the candidates."""
    n = len(cands)
    lengths = [len(c.terms) or 1 for c in cands]
    avg = sum(lengths) / n
    df = {t: sum(1 for c in cands if t in c.terms) for t in set(question_terms)}
    out = []
    for c, length in zip(cands, lengths, strict=True):
        score = 0.0
        for t in question_terms:
            if t in c.terms:
                # A sentence holds each term about once: tf = 1.
                score += _idf(df[t], n) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * length / avg))
        out.append(score)
    best = max(out) or 1.0
    return [s / best for s in out]


def metadata_asked(question: str, cands: Sequence[Candidate]) -> list[int]:
    """Indexes of the candidates that are the headline or date line the question asks for.

    Questions about the article itself ("according to its headline", "when was it updated")
    are answered by its title line or labelled date line, whatever the scores say.
    """
    asks_title = _ASKS_TITLE.search(question) is not None
    asks_date_line = (
        question_type(question) == "date" and _ASKS_DATE_LINE.search(question) is not None
    )
    return [
        i
        for i, c in enumerate(cands)
        if (asks_title and c.text.strip() == (c.hit.passage.title or "").strip())
        or (asks_date_line and is_date_line(c.text))
    ]


def sentence_features(question: str, cands: Sequence[Candidate]) -> npt.NDArray[np.float64]:
    """One row of :data:`SENTENCE_FEATURES` per candidate."""
    if not cands:
        return np.zeros((0, len(SENTENCE_FEATURES)))
    q_list = tokenize(question)
    q_terms = set(q_list)
    n = len(cands)
    weights = {t: _idf(sum(1 for c in cands if t in c.terms), n) for t in q_terms}
    total = sum(weights.values()) or 1.0
    kind = question_type(question)
    lexical = [sum(w for t, w in weights.items() if t in c.terms) / total for c in cands]
    bm25 = _bm25(q_list, cands)
    top_sem, top_lex = max(c.semantic for c in cands), max(lexical)
    hit_lex = max((c.hit.lexical_score or 0.0) for c in cands) or 1.0
    rows = []
    for c, lex, bm in zip(cands, lexical, bm25, strict=True):
        number = _new_matches(_NUMBER, c.text, question)
        date = _new_matches(_DATE, c.text, question)
        name = _new_matches(_NAME, c.text, question)
        typed = {"number": number, "date": date, "name": name}.get(kind or "", False)
        rows.append(
            [
                c.semantic,
                c.semantic - top_sem,
                lex,
                lex - top_lex,
                bm,
                len(c.terms - q_terms) / len(c.terms) if c.terms else 0.0,
                float(c.hit.rank - 1),
                c.hit.dense_score or 0.0,
                (c.hit.lexical_score or 0.0) / hit_lex,
                float(typed),
                float(kind == "number" and number),
                float(kind == "date" and date),
                float(kind == "name" and name),
                float(kind == "name" and _role_beside_name(c.text, question)),
                float(abbreviation_match(question, c.text)),
                c.index / max(c.count - 1, 1),
                float(c.index == 0),
                math.log(1 + len(c.terms)),
            ]
        )
    return np.asarray(rows, dtype=np.float64)
