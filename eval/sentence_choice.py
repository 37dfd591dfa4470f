"""Offline study of answer-sentence choice on the seeds question set (docs/quality.md).

For each answerable question of ``eval/seeds_questions.jsonl`` it retrieves the top 10 passages
(hybrid, default settings, the live index in ``embeddings/``), scores every sentence the way
``qa/ask/answer.py`` does, and prints, with no abstention:

- the ceiling: how often a sentence holding a gold answer is among the top 1/3/5/10 passages;
- how often the first-choice sentence holds a gold answer, with sentence vectors pooled from
  the passage (what seedqa stores), embedded on their own, or the mean or maximum of the two,
  searching 3, 4 or 5 passages;
- hit@1 when the top 10 passages are reranked with their best sentence as a third ranking in
  the reciprocal rank fusion.

Run from the repository root: ``.venv/bin/python eval/sentence_choice.py`` (about a minute).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.ask.answer import (  # noqa: E402
    W_LEXICAL,
    W_NOVEL,
    W_RANK,
    W_SEMANTIC,
    W_TYPE,
    _has_new_entity,
    _idf,
    question_type,
)
from qa.ask.retrieval import retrieve  # noqa: E402
from qa.ask.service import QAService  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.evaluation.questions import read_questions  # noqa: E402
from qa.index.generation.lexical import tokenize  # noqa: E402
from qa.ask.pipeline import run_question  # noqa: E402


@dataclass
class Sentence:
    rank: int
    text: str
    pooled: float  # cosine of the stored (pooled) sentence vector with the question
    alone: float  # cosine of the sentence embedded on its own
    gold: bool


@dataclass
class Question:
    text: str
    sentences: list[Sentence]
    relevant: dict[int, bool]  # passage rank -> overlaps the evidence
    dense: dict[int, float]
    lexical: dict[int, float]


def collect() -> list[Question]:
    settings = Settings.load(seeds_dir=ROOT / "seeds", index_dir=ROOT / "embeddings")
    service = QAService(settings)
    gen = service.generation
    out = []
    for q in read_questions(ROOT / "eval" / "seeds_questions.jsonl"):
        if not q.answers or not q.source or not q.evidence:
            continue
        asked = run_question(
            gen,
            q.question,
            encode=service.encoder.encode,
            settings=settings,
            reader=None,
            k=10,
            mode="hybrid",
        )
        hits, vector = asked.hits, asked.vector
        if vector is None:  # hybrid retrieval always embeds the question
            raise RuntimeError("the question was not embedded")
        raw = (settings.seeds_dir / q.source).read_text(encoding="utf-8")
        ev_start = raw.find(q.evidence)
        ev_end = ev_start + len(q.evidence)
        sentences: list[Sentence] = []
        for h in hits:
            p = h.passage
            for (s, e), pooled in zip(p.sentences, gen.sentence_scores(h.row, vector), strict=True):
                text = p.text[s:e]
                gold = p.source == q.source and any(a.lower() in text.lower() for a in q.answers)
                sentences.append(Sentence(h.rank, text, pooled, 0.0, gold))
        alone = service.embedder.embed([s.text for s in sentences]) @ vector
        for sentence, cosine in zip(sentences, alone, strict=True):
            sentence.alone = float(cosine)
        out.append(
            Question(
                q.question,
                sentences,
                {
                    h.rank: h.passage.source == q.source
                    and h.passage.start < ev_end
                    and ev_start < h.passage.end
                    for h in hits
                },
                {h.rank: h.dense_score or 0.0 for h in hits},
                {h.rank: h.lexical_score or 0.0 for h in hits},
            )
        )
    service.close()
    return out


def first_choice(q: Question, *, passages: int, semantic: str) -> Sentence:
    """The sentence qa/ask/answer.py's score ranks first (no headline or date-line bonus)."""
    cands = [s for s in q.sentences if s.rank <= passages]
    terms = [frozenset(tokenize(s.text)) for s in cands]
    df: dict[str, int] = {}
    for t in terms:
        for word in t:
            df[word] = df.get(word, 0) + 1
    weights = {t: _idf(t, df, len(cands)) for t in set(tokenize(q.text))}
    total = sum(weights.values()) or 1.0
    kind = question_type(q.text)

    def score(s: Sentence, t: frozenset[str]) -> float:
        sem = {
            "pooled": s.pooled,
            "alone": s.alone,
            "mean": (s.pooled + s.alone) / 2,
            "max": max(s.pooled, s.alone),
        }[semantic]
        lexical = sum(w for word, w in weights.items() if word in t) / total
        novel = len(t - set(weights)) / len(t) if t else 0.0
        return (
            W_SEMANTIC * sem
            + W_LEXICAL * lexical
            + W_TYPE * _has_new_entity(kind, s.text, q.text)
            + W_NOVEL * novel
            - W_RANK * (s.rank - 1)
        )

    return max(zip(cands, terms, strict=True), key=lambda x: score(*x))[0]


def rerank_hit_at_1(q: Question, *, weight: float, rrf_k: int) -> bool:
    """Relevant passage first after fusing BM25 (1.0), dense (0.5) and best sentence."""
    best: dict[int, float] = {}
    for s in q.sentences:
        best[s.rank] = max(best.get(s.rank, -1.0), s.pooled)
    fused: dict[int, float] = {}
    for w, scores in ((0.5, q.dense), (1.0, q.lexical), (weight, best)):
        for r, rank in enumerate(sorted(scores, key=lambda x: -scores[x]), start=1):
            fused[rank] = fused.get(rank, 0.0) + w / (rrf_k + r)
    return q.relevant[max(fused, key=lambda r: fused[r])]


def main() -> None:
    questions = collect()
    n = len(questions)
    print(f"{n} answerable questions")
    for k in (1, 3, 5, 10):
        share = sum(any(s.gold for s in q.sentences if s.rank <= k) for q in questions) / n
        print(f"ceiling: gold sentence among the top {k} passages: {share:.3f}")
    for passages in (3, 4, 5):
        for semantic in ("pooled", "alone", "mean", "max"):
            right = sum(
                first_choice(q, passages=passages, semantic=semantic).gold for q in questions
            )
            print(f"first choice holds gold ({passages} passages, {semantic}): {right / n:.3f}")
    base = sum(rerank_hit_at_1(q, weight=0.0, rrf_k=60) for q in questions) / n
    print(f"hit@1 within the top 10, no sentence ranking: {base:.3f}")
    for weight in (0.25, 0.5, 1.0):
        for rrf_k in (10, 60):
            hit = sum(rerank_hit_at_1(q, weight=weight, rrf_k=rrf_k) for q in questions) / n
            print(f"hit@1 with best-sentence ranking (weight {weight}, k {rrf_k}): {hit:.3f}")


if __name__ == "__main__":
    main()
