"""Public benchmarks for ``qa eval``: BEIR retrieval folders and XQuAD / SQuAD v1.1 answers.

Each benchmark writes its documents as seed files in a temporary folder, builds an index there
with the ordinary builder and asks through the ordinary retrieval (BEIR) or service (XQuAD)
code, so the figures measure what the service does, not a re-implementation of it.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import re
import string
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.answer import is_unknown_terms_reason
from qa.builder import build_index
from qa.config import Settings
from qa.embedder import Vectors, load_embedder, model_id_for
from qa.errors import ConfigError
from qa.evaluate import temporary_seeds
from qa.index import IndexGeneration, load_index
from qa.retrieval import Hit, retrieve
from qa.service import QAService

log = logging.getLogger(__name__)

#: Published test-split figures, keyed by BEIR folder name (see ``/work/shared/data/README.md``).
PUBLISHED: dict[str, dict[str, dict[str, Any]]] = {
    "scifact": {
        "dense": {
            "system": "all-MiniLM-L6-v2 (MTEB): title + text, 256 tokens, whole documents",
            "ndcg_at_10": 0.6451,
            "recall_at_100": 0.9250,
        },
        "bm25": {
            "system": "BM25 flat (Anserini, BEIR v1.0.0)",
            "ndcg_at_10": 0.6789,
            "recall_at_100": 0.9253,
        },
    }
}

#: Documents ranked per query: Recall@100 needs at least 100 distinct ones.
RANKED_DOCUMENTS = 100
_SAFE_NAME = re.compile(r"[\w-][\w.-]{0,100}")


# -- metrics ------------------------------------------------------------------------------
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


def documents_in_order(hits: Sequence[Hit], doc_of: Mapping[str, str]) -> list[str]:
    """Document ids in rank order, each at the rank of its best passage (max aggregation)."""
    seen: dict[str, None] = {}
    for h in hits:
        seen.setdefault(doc_of[h.passage.source], None)
    return list(seen)


# -- BEIR -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BeirData:
    """One BEIR folder: documents ``(id, title, text)``, query texts, and one split's qrels."""

    name: str
    corpus: list[tuple[str, str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ConfigError(f"'{path}' line {n} is not JSON: {exc}") from None


def read_beir(path: Path, *, split: str) -> BeirData:
    """Read ``corpus.jsonl[.gz]``, ``queries.jsonl`` and ``qrels/<split>.tsv`` of a BEIR folder."""
    corpus_file = path / "corpus.jsonl"
    if not corpus_file.is_file():
        corpus_file = path / "corpus.jsonl.gz"
    qrels_file = path / "qrels" / f"{split}.tsv"
    for needed in (corpus_file, path / "queries.jsonl", qrels_file):
        if not needed.is_file():
            raise ConfigError(f"'{path}' is not a BEIR folder with split {split!r}: no '{needed}'")
    corpus = [
        (str(d["_id"]), str(d.get("title") or ""), str(d.get("text") or ""))
        for d in _jsonl(corpus_file)
    ]
    queries = {str(q["_id"]): str(q["text"]) for q in _jsonl(path / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_file, encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or (n == 1 and row[0] == "query-id"):
                continue
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except (IndexError, ValueError):
                raise ConfigError(f"'{qrels_file}' line {n} is not 'query corpus score'") from None
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise ConfigError(f"'{qrels_file}' names queries missing from queries.jsonl: {missing[:5]}")
    return BeirData(path.resolve().name, corpus, queries, qrels)


def _file_name(doc_id: str, n: int) -> str:
    """A seed file stem for a document id: the id itself when it is a safe file name."""
    return doc_id if _SAFE_NAME.fullmatch(doc_id) else f"doc-{n:07d}"


def judged_queries(data: BeirData, limit: int | None) -> list[str]:
    """The ids of the queries with at least one relevant document, the first ``limit`` of them."""
    ids = [q for q in data.queries if any(g > 0 for g in data.qrels.get(q, {}).values())]
    return ids[:limit] if limit is not None else ids


def beir_documents(data: BeirData) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Seed files ``(stem, "title\\n\\ntext")`` of a corpus, and the document id of each file."""
    documents: list[tuple[str, str]] = []
    doc_of: dict[str, str] = {}
    for n, (doc_id, title, text) in enumerate(data.corpus):
        stem = _file_name(doc_id, n)
        doc_of[f"{stem}.txt"] = doc_id
        title = " ".join(title.split())  # one line, so it is the article title
        documents.append((stem, f"{title}\n\n{text}" if title else text))
    return documents, doc_of


@contextmanager
def _indexed(
    documents: Sequence[tuple[str, str]], settings: Settings, cache: Path | None
) -> Iterator[tuple[Settings, float]]:
    """Settings for an index of ``documents`` (``(stem, text)``) and the seconds it took.

    With ``cache`` the index lives there and is updated incrementally, so later runs with the
    same documents, model and chunking cost nothing; without it, it is temporary.
    """
    with temporary_seeds(documents) as tmp:
        index_dir = Path(tmp) / "index" if cache is None else cache
        local = settings.replace(seeds_dir=Path(tmp) / "seeds", index_dir=index_dir)
        started = time.perf_counter()
        summary = build_index(local, progress=True, wait=600.0)
        seconds = round(time.perf_counter() - started, 1)
        log.info("benchmark index %s: %s", index_dir, summary.to_json())
        yield local, seconds


def cache_folder(root: Path, dataset: str, settings: Settings) -> Path:
    """The index folder under ``root`` for one dataset, model and chunking."""
    model = re.sub(r"[^\w.-]+", "_", model_id_for(settings.model))
    return root / f"{dataset}-{model}-c{settings.chunk_tokens}-o{settings.chunk_overlap}"


def evaluate_beir(
    path: Path,
    settings: Settings,
    *,
    split: str,
    limit: int | None,
    cache: Path | None = None,
) -> dict[str, Any]:
    """nDCG@10 and Recall@100 of ``settings.retrieval_mode`` on a BEIR folder's ``split``.

    Every document becomes a seed file ``title\\n\\ntext``, so the title is the article title.
    Passages are ranked as the service ranks them and each document takes the rank of its best
    passage. Metrics are averaged over the queries with at least one relevant document.
    ``cache`` (a folder) keeps the index between runs, e.g. to compare modes on one build.
    """
    data = read_beir(path, split=split)
    query_ids = judged_queries(data, limit)
    documents, doc_of = beir_documents(data)
    index_cache = cache_folder(cache, data.name, settings) if cache is not None else None
    with _indexed(documents, settings, index_cache) as (local, index_seconds):
        gen = load_index(local)
        started = time.perf_counter()
        texts = [data.queries[q] for q in query_ids]
        vectors = load_embedder(local).embed(texts, batch_size=local.batch_size)
        ndcg = recall = 0.0
        for text, vector, qid in zip(texts, vectors, query_ids, strict=True):
            ranking = _rank_documents(gen, text, vector, local, doc_of)
            ndcg += ndcg_at_k(ranking, data.qrels[qid], 10)
            recall += recall_at_k(ranking, data.qrels[qid], 100)
        query_seconds = round(time.perf_counter() - started, 1)
    n = max(len(query_ids), 1)
    out: dict[str, Any] = {
        "dataset": data.name,
        "split": split,
        "mode": settings.retrieval_mode,
        "dense_weight": settings.dense_weight,
        "model": model_id_for(settings.model),
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "queries": len(query_ids),
        "documents": len(data.corpus),
        "passages": len(gen.passages),
        "ndcg_at_10": round(ndcg / n, 4),
        "recall_at_100": round(recall / n, 4),
        "index_seconds": index_seconds,
        "query_seconds": query_seconds,
    }
    if data.name.lower() in PUBLISHED:
        out["published"] = PUBLISHED[data.name.lower()]
    return out


def evaluate_beir_whole_documents(
    path: Path, settings: Settings, *, split: str, limit: int | None
) -> dict[str, Any]:
    """The published dense set-up, as a check of the model path: every document encoded once
    as ``"title text"`` (the model truncates it at its limit), exact search, no passages.

    seedqa's own dense figure (:func:`evaluate_beir`) ranks documents by their best passage,
    so it sees whole abstracts and is expected to differ; this one should land within 0.01 of
    the published figure for the same model.
    """
    import numpy as np

    data = read_beir(path, split=split)
    query_ids = judged_queries(data, limit)
    embedder = load_embedder(settings)
    started = time.perf_counter()
    texts = [f"{title} {text}".strip() for _, title, text in data.corpus]
    documents = embedder.embed(texts, batch_size=settings.batch_size, progress=True)
    index_seconds = round(time.perf_counter() - started, 1)
    queries = embedder.embed([data.queries[q] for q in query_ids], batch_size=settings.batch_size)
    ids = [doc_id for doc_id, _, _ in data.corpus]
    scores = queries @ documents.T
    ndcg = recall = 0.0
    for row, qid in zip(scores, query_ids, strict=True):
        top = np.argsort(-row, kind="stable")[:RANKED_DOCUMENTS]
        ranking = [ids[i] for i in top]
        ndcg += ndcg_at_k(ranking, data.qrels[qid], 10)
        recall += recall_at_k(ranking, data.qrels[qid], 100)
    n = max(len(query_ids), 1)
    out: dict[str, Any] = {
        "dataset": data.name,
        "split": split,
        "mode": "dense-whole-documents",
        "model": model_id_for(settings.model),
        "max_seq_length": embedder.max_seq_length,
        "queries": len(query_ids),
        "documents": len(data.corpus),
        "ndcg_at_10": round(ndcg / n, 4),
        "recall_at_100": round(recall / n, 4),
        "index_seconds": index_seconds,
    }
    if data.name.lower() in PUBLISHED:
        out["published"] = PUBLISHED[data.name.lower()]
    return out


def _rank_documents(
    gen: IndexGeneration,
    text: str,
    vector: Vectors,
    settings: Settings,
    doc_of: Mapping[str, str],
) -> list[str]:
    """At least :data:`RANKED_DOCUMENTS` documents for one query (fewer if the corpus runs out)."""
    k, candidates = 3 * RANKED_DOCUMENTS, 10 * RANKED_DOCUMENTS
    while True:
        hits = retrieve(
            gen,
            text,
            vector,
            k=k,
            mode=settings.retrieval_mode,
            candidates=candidates,
            rrf_k=settings.rrf_k,
            dense_weight=settings.dense_weight,
        )
        ranking = documents_in_order(hits, doc_of)
        if len(ranking) >= RANKED_DOCUMENTS or len(hits) < k or k >= len(gen.passages):
            return ranking
        # Many passages of few documents: look deeper.
        k, candidates = 2 * k, 2 * candidates


# -- XQuAD / SQuAD v1.1 ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SquadQuestion:
    """One question, the seed file of its paragraph, and its gold answer texts."""

    question: str
    source: str
    answers: list[str]


def read_squad(path: Path) -> tuple[list[tuple[str, str]], list[SquadQuestion]]:
    """Seed files ``(stem, "Title\\n\\ncontext")`` per paragraph, and the questions."""
    documents: list[tuple[str, str]] = []
    questions: list[SquadQuestion] = []
    try:
        for a, article in enumerate(json.loads(path.read_text(encoding="utf-8"))["data"]):
            title = str(article.get("title") or f"article {a}")
            slug = re.sub(r"[^\w-]+", "_", title).strip("_")[:60] or "article"
            for i, paragraph in enumerate(article["paragraphs"]):
                stem = f"{a:03d}_{slug}_{i}"
                # A short title line becomes the article title, prefixed to each passage like a
                # news headline; without it the paragraph's first line would be taken as title.
                documents.append((stem, f"{title.replace('_', ' ')}\n\n{paragraph['context']}"))
                for qa in paragraph["qas"]:
                    answers = [str(x["text"]) for x in qa["answers"]]
                    questions.append(SquadQuestion(str(qa["question"]), f"{stem}.txt", answers))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"'{path}' is not a SQuAD v1.1 JSON file: {exc!r}") from None
    return documents, questions


def _contains_gold(text: str | None, answers: Sequence[str]) -> bool:
    return bool(text) and any(a.lower() in (text or "").lower() for a in answers)


def _squad_tokens(text: str) -> list[str]:
    """SQuAD v1.1 answer normalisation: lower case, no punctuation, no articles."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return [w for w in text.split() if w not in ("a", "an", "the")]


def token_f1(text: str | None, answers: Sequence[str]) -> float:
    """The official SQuAD v1.1 token F1 of an answer against its best gold answer (0 if none)."""
    if not text:
        return 0.0
    predicted = _squad_tokens(text)
    best = 0.0
    for gold in map(_squad_tokens, answers):
        common = Counter(predicted) & Counter(gold)
        same = sum(common.values())
        if same:
            precision, recall = same / len(predicted), same / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def evaluate_xquad(
    path: Path,
    settings: Settings,
    *,
    k: int,
    limit: int | None,
    cache: Path | None = None,
) -> dict[str, Any]:
    """Paragraph retrieval and extractive answers on XQuAD / SQuAD v1.1, through
    :meth:`QAService.ask` exactly as the service answers.

    ``answer_contains_gold``: the answer text contains a gold span (abstentions are misses);
    ``answer_token_f1`` is SQuAD's token F1, low for sentence-long answers by construction.
    ``abstained_unknown_terms``: abstentions although the support passed the threshold (the
    question names something the index never mentions).
    ``answer_sentence_has_gold_with_threshold_0``: the same passages with every abstention rule
    switched off, which separates extraction quality from abstention.
    """
    documents, questions = read_squad(path)
    questions = questions[:limit] if limit is not None else questions
    index_cache = cache_folder(cache, path.stem, settings) if cache is not None else None
    found = at_1 = correct = abstained = by_rule = forced = words = 0
    f1 = 0.0
    with _indexed(documents, settings, index_cache) as (local, index_seconds):
        service = QAService(local)
        try:
            service.start(update=False, poll=False)
            gen = service.generation
            started = time.perf_counter()
            for q in questions:
                result = service.ask(q.question, k=k, answer=True)
                sources = [h.passage.source for h in result.passages]
                found += q.source in sources
                at_1 += sources[:1] == [q.source]
                answer = result.answer.text if result.answer else None
                abstained += answer is None
                by_rule += is_unknown_terms_reason(result.abstain_reason)
                correct += _contains_gold(answer, q.answers)
                f1 += token_f1(answer, q.answers)
                words += len(answer.split()) if answer else 0
                # The same passages and sentence scores with every abstention rule switched off.
                unguarded = result.unrefused
                forced += unguarded is not None and _contains_gold(unguarded.text, q.answers)
            query_seconds = round(time.perf_counter() - started, 1)
            passages = len(gen.passages)
        finally:
            service.close()
    n = max(len(questions), 1)
    answered = len(questions) - abstained
    return {
        "dataset": path.stem,
        "mode": settings.retrieval_mode,
        "dense_weight": settings.dense_weight,
        "model": model_id_for(settings.model),
        "chunk_tokens": settings.chunk_tokens,
        "answer_threshold": settings.answer_threshold,
        "k": k,
        "questions": len(questions),
        "paragraphs": len(documents),
        "passages": passages,
        "paragraph_at_1": round(at_1 / n, 4),
        f"paragraph_in_top{k}": round(found / n, 4),
        "answer_contains_gold": round(correct / n, 4),
        "abstained": round(abstained / n, 4),
        "abstained_unknown_terms": round(by_rule / n, 4),
        "answer_contains_gold_when_answered": round(correct / answered, 4) if answered else 0.0,
        "answer_sentence_has_gold_with_threshold_0": round(forced / n, 4),
        "answer_token_f1": round(f1 / n, 4),
        "answer_mean_words": round(words / answered, 1) if answered else 0.0,
        "index_seconds": index_seconds,
        "query_seconds": query_seconds,
    }
