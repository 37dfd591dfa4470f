"""XQuAD / SQuAD v1.1 for ``qa eval --xquad``: paragraph retrieval and extractive answers."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.ask.answer import is_unknown_terms_reason
from qa.ask.service import QAService
from qa.config import Settings
from qa.embed.registry import model_id_for
from qa.errors import ConfigError
from qa.evaluation.corpus import cache_folder, indexed
from qa.evaluation.metrics import contains_gold, exact_match, token_f1


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
    ``answer_token_f1`` is SQuAD's token F1, low for sentence-long answers by construction;
    ``span_token_f1`` and ``span_exact_match`` score the short answer span the same way.
    ``abstained_unknown_terms``: abstentions although the support passed the threshold (the
    question names something the index never mentions).
    ``answer_sentence_has_gold_with_threshold_0``: the same passages with every abstention rule
    switched off, which separates extraction quality from abstention.
    """
    # Long: one pass over the questions that accumulates every figure of the report, one
    # line per figure; split, the figures would be counted in several places.
    documents, questions = read_squad(path)
    questions = questions[:limit] if limit is not None else questions
    index_cache = cache_folder(cache, path.stem, settings) if cache is not None else None
    found = at_1 = correct = abstained = by_rule = forced = words = 0
    f1 = span_f1 = 0.0
    span_exact = 0
    with indexed(documents, settings, index_cache) as (local, index_seconds):
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
                correct += contains_gold(answer, q.answers)
                f1 += token_f1(answer, q.answers)
                words += len(answer.split()) if answer else 0
                span = result.answer.span if result.answer else None
                span_f1 += token_f1(span.text if span else None, q.answers)
                span_exact += span is not None and exact_match(span.text, q.answers)
                # The same passages and sentence scores with every abstention rule switched off.
                unguarded = result.unrefused
                forced += unguarded is not None and contains_gold(unguarded.text, q.answers)
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
        "span_token_f1": round(span_f1 / n, 4),
        "span_exact_match": round(span_exact / n, 4),
        "answer_mean_words": round(words / answered, 1) if answered else 0.0,
        "index_seconds": index_seconds,
        "query_seconds": query_seconds,
    }
