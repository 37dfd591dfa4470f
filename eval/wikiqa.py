"""WikiQA test figures of the shipped answer reader (measure only: nothing here is fitted).

WikiQA's licence allows research use only, so nothing that seedqa ships is fitted or tuned on
it; this script reads the shipped weights (fitted on XQuAD English) and measures them. Each
question's candidate sentences (the summary of one Wikipedia page) become one passage; each
sentence's similarity is the cosine of the sentence embedded on its own with the question
(WikiQA pages are not indexed, so there are no pooled sentence vectors). The reader ranks the
sentences with its sentence model and answers or refuses exactly as the service does (the
reader of the default settings: the span reader re-reads the best sentences).

Figures, as in Yang, Yih and Meek (2015):
- MAP and MRR of the sentence ranking over the questions with at least one correct sentence;
- answer triggering over all questions: precision = questions answered with a correct sentence
  / questions answered, recall = the same / questions with a correct sentence, and F1.

Run from the repository root: ``.venv/bin/python eval/wikiqa.py [--split test]``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.ask.answer import Answer  # noqa: E402
from qa.ask.answer_features import candidates, sentence_features  # noqa: E402
from qa.ask.answerer import LearnedReader  # noqa: E402
from qa.ask.pipeline import load_reader  # noqa: E402
from qa.ask.reader import ReaderContext  # noqa: E402
from qa.ask.retrieval import Hit  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.embed.registry import load_embedder  # noqa: E402
from qa.index.lexical import tokenize  # noqa: E402
from qa.ingest.passages import Passage  # noqa: E402

DATA = Path("/work/shared/data/wikiqa")


@dataclass
class Question:
    text: str
    title: str
    sentences: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


def read(split: str) -> list[Question]:
    """The questions of one split, in file order, with their sentences and labels."""
    by_id: dict[str, Question] = {}
    with gzip.open(DATA / f"WikiQA-{split}.tsv.gz", "rt", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            q = by_id.setdefault(row["QuestionID"], Question(row["Question"], row["DocumentTitle"]))
            q.sentences.append(row["Sentence"])
            q.labels.append(int(row["Label"]))
    return list(by_id.values())


def as_hit(q: Question) -> Hit:
    """The question's sentences as one passage of one page, its spans exact."""
    text = " ".join(q.sentences)
    spans, pos = [], 0
    for s in q.sentences:
        spans.append((pos, pos + len(s)))
        pos += len(s) + 1
    passage = Passage(
        chunk_id="c0",
        source=f"{q.title}.txt",
        title=q.title,
        date=None,
        start=0,
        end=len(text),
        text=text,
        embed_hash="-",
        tokens=len(text.split()),
        sentences=tuple(spans),
    )
    return Hit(rank=1, row=0, passage=passage, score=1.0, dense_score=None, lexical_score=None)


def average_precision(order: list[int], labels: list[int]) -> tuple[float, float]:
    """AP and reciprocal rank of a ranking (indexes into ``labels``)."""
    found, total, rr = 0, 0.0, 0.0
    for rank, i in enumerate(order, start=1):
        if labels[i]:
            found += 1
            total += found / rank
            rr = rr or 1 / rank
    return total / max(sum(labels), 1), rr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    questions = read(args.split)
    # The reader the service runs: with the span reader re-reading the best sentences.
    reader = load_reader(Settings())
    assert isinstance(reader, LearnedReader), "the default settings give the learned reader"
    weights = reader.weights
    embedder = load_embedder(Settings())
    q_vectors = embedder.embed([q.text for q in questions], batch_size=32)
    all_sentences = [s for q in questions for s in q.sentences]
    s_vectors = embedder.embed(all_sentences, batch_size=32, progress=True)
    ap = rr = 0.0
    with_answer = answered = answered_right = 0
    offset = 0
    for q, qv in zip(questions, q_vectors, strict=True):
        cosines = [float(x) for x in s_vectors[offset : offset + len(q.sentences)] @ qv]
        offset += len(q.sentences)
        hit = as_hit(q)
        hit = Hit(1, 0, hit.passage, 1.0, max(cosines), None)
        page_terms = frozenset(tokenize(f"{q.title} {hit.passage.text}"))
        context = ReaderContext(
            vector=qv,
            sentence_scores=lambda _row, c=cosines: c,
            knows=lambda word, t=page_terms: set(tokenize(word)) <= t,
            article_terms=lambda _source, t=page_terms: t,
        )
        cands = candidates([hit], context.sentence_scores, passages=1)
        logits = weights.sentence.logits(sentence_features(q.text, cands))
        order = [int(i) for i in np.argsort(-logits, kind="stable")]
        outcome = reader.answer(q.text, [hit], context)
        if any(q.labels):
            with_answer += 1
            a, r = average_precision(order, q.labels)
            ap += a
            rr += r
        if isinstance(outcome, Answer):
            answered += 1
            chosen = next(i for i, (s, e) in enumerate(hit.passage.sentences) if e == outcome.end)
            answered_right += q.labels[chosen]
    precision = answered_right / max(answered, 1)
    recall = answered_right / max(with_answer, 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(
        json.dumps(
            {
                "split": args.split,
                "questions": len(questions),
                "questions_with_answer": with_answer,
                "map": round(ap / max(with_answer, 1), 4),
                "mrr": round(rr / max(with_answer, 1), 4),
                "answered": answered,
                "answer_triggering_precision": round(precision, 4),
                "answer_triggering_recall": round(recall, 4),
                "answer_triggering_f1": round(f1, 4),
                "weights_trained_on": weights.trained_on["data"],
            }
        )
    )


if __name__ == "__main__":
    main()
