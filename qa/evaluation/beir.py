"""BEIR retrieval benchmarks for ``qa eval --beir``: nDCG@10 and Recall@100 on a BEIR folder.

Every document becomes a seed file in a temporary folder, indexed by the ordinary builder and
ranked by the ordinary retrieval, so the figures measure what the service does.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.ask.retrieval import Hit, retrieve
from qa.config import Settings
from qa.embed.base import Vectors
from qa.embed.registry import load_embedder, model_id_for
from qa.errors import ConfigError
from qa.evaluation.corpus import cache_folder, file_name, indexed
from qa.evaluation.metrics import ndcg_at_k, recall_at_k
from qa.index.generation import IndexGeneration, load_index

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


def documents_in_order(hits: Sequence[Hit], doc_of: Mapping[str, str]) -> list[str]:
    """Document ids in rank order, each at the rank of its best passage (max aggregation)."""
    seen: dict[str, None] = {}
    for h in hits:
        seen.setdefault(doc_of[h.passage.source], None)
    return list(seen)


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


def judged_queries(data: BeirData, limit: int | None) -> list[str]:
    """The ids of the queries with at least one relevant document, the first ``limit`` of them."""
    ids = [q for q in data.queries if any(g > 0 for g in data.qrels.get(q, {}).values())]
    return ids[:limit] if limit is not None else ids


def beir_documents(data: BeirData) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Seed files ``(stem, "title\\n\\ntext")`` of a corpus, and the document id of each file."""
    documents: list[tuple[str, str]] = []
    doc_of: dict[str, str] = {}
    for n, (doc_id, title, text) in enumerate(data.corpus):
        stem = file_name(doc_id, n)
        doc_of[f"{stem}.txt"] = doc_id
        title = " ".join(title.split())  # one line, so it is the article title
        documents.append((stem, f"{title}\n\n{text}" if title else text))
    return documents, doc_of


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
    with indexed(documents, settings, index_cache) as (local, index_seconds):
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
