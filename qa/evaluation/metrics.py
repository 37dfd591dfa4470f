"""Metrics: nDCG@k and Recall@k as trec_eval computes them, SQuAD token F1, gold-span checks."""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Mapping, Sequence


def ndcg_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k as trec_eval / pytrec_eval compute it: gain = relevance grade, discount
    ``log2(rank + 1)``, ideal DCG from the judged grades. Grades <= 0 count as non-relevant."""
    dcg = sum(
        qrels.get(doc, 0) / math.log2(rank + 1)
        for rank, doc in enumerate(ranking[:k], start=1)
        if qrels.get(doc, 0) > 0
    )
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int = 100) -> float:
    """Share of the relevant documents (grade > 0) found in the first ``k`` of ``ranking``."""
    relevant = {doc for doc, g in qrels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def contains_gold(text: str | None, answers: Sequence[str]) -> bool:
    """Whether ``text`` holds one of the gold answers (case-insensitive)."""
    return bool(text) and any(a.lower() in (text or "").lower() for a in answers)


def squad_tokens(text: str) -> list[str]:
    """SQuAD v1.1 answer normalisation: lower case, no punctuation, no articles."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return [w for w in text.split() if w not in ("a", "an", "the")]


def token_f1(text: str | None, answers: Sequence[str]) -> float:
    """The official SQuAD v1.1 token F1 of an answer against its best gold answer (0 if none)."""
    if not text:
        return 0.0
    predicted = squad_tokens(text)
    best = 0.0
    for gold in map(squad_tokens, answers):
        common = Counter(predicted) & Counter(gold)
        same = sum(common.values())
        if same:
            precision, recall = same / len(predicted), same / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def exact_match(text: str | None, answers: Sequence[str]) -> bool:
    """SQuAD v1.1 exact match: the normalised answer equals a normalised gold answer."""
    return text is not None and any(squad_tokens(text) == squad_tokens(g) for g in answers)
