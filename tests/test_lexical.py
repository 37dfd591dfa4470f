"""BM25 over segments: Lucene-variant scores computed by hand, live-row statistics, ``knows``."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from qa.index.lexical import (
    K1,
    B,
    CorpusLexical,
    LexicalPart,
    build_postings,
    dead_term_counts,
    known_word,
    tokenize,
)

TEXTS = ["Chongqing trade with Seattle", "Seattle port", "Chongqing Chongqing port city"]


def part(texts: list[str], dead: list[bool] | None = None) -> LexicalPart:
    flags = np.asarray(dead or [False] * len(texts), dtype=np.bool_)
    return LexicalPart(
        postings=build_postings(texts),
        dead=flags,
        dead_df=dead_term_counts(t for t, d in zip(texts, flags, strict=True) if d),
    )


def bm25(term: str, text: str, corpus: list[str]) -> float:
    """The Lucene BM25 of one query term in one text, from the textbook formula."""
    docs = [tokenize(t) for t in corpus]
    stem = tokenize(term)[0]
    df = sum(stem in d for d in docs)
    avgdl = sum(map(len, docs)) / len(docs)
    tokens = tokenize(text)
    tf = Counter(tokens)[stem]
    idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + K1 * (1 - B + B * len(tokens) / avgdl))


def test_scores_match_the_formula() -> None:
    scores = CorpusLexical([part(TEXTS)]).part_scores("Chongqing port")[0]
    for row, text in enumerate(TEXTS):
        want = bm25("Chongqing", text, TEXTS) + bm25("port", text, TEXTS)
        assert scores[row] == pytest.approx(want, rel=1e-5)
    assert scores[2] > scores[0] > 0  # two occurrences beat one


def test_a_passage_scores_the_same_whatever_segment_holds_it() -> None:
    one = CorpusLexical([part(TEXTS)]).part_scores("Seattle port")[0]
    split = CorpusLexical([part(TEXTS[:1]), part(TEXTS[1:])]).part_scores("Seattle port")
    np.testing.assert_allclose(np.concatenate(split), one, rtol=1e-6)


def test_dead_rows_score_zero_and_leave_the_statistics() -> None:
    live = TEXTS[:2]
    with_dead = CorpusLexical([part([*live, TEXTS[2]], dead=[False, False, True])])
    alone = CorpusLexical([part(live)])
    scores = with_dead.part_scores("Chongqing port")[0]
    assert scores[2] == 0
    np.testing.assert_allclose(scores[:2], alone.part_scores("Chongqing port")[0], rtol=1e-6)
    assert with_dead.size == 2


def test_knows_words_and_their_derived_forms_only() -> None:
    corpus = CorpusLexical([part(["Trade with Chile grew", "Seattle port"])])
    assert corpus.knows("Chilean")
    assert corpus.knows("Seattle")
    assert not corpus.knows("Zanzibar")


def test_a_word_of_stop_words_only_is_known_and_prefixes_need_three_letters() -> None:
    vocabulary = {"chile", "shell"}
    assert known_word("The", vocabulary.__contains__)  # the 'The' of a title: no name at all
    assert known_word("Chilean", vocabulary.__contains__)
    assert known_word("Shelly", vocabulary.__contains__)  # a misspelt 'Shelley' still matches
    assert not known_word("Zanzibar", vocabulary.__contains__)
    assert not known_word("Chx", {"ch"}.__contains__)  # 'ch' is shorter than 3 letters
