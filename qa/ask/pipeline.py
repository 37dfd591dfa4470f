"""One question through the pipeline: encode, retrieve, answer.

:meth:`QAService.ask`, ``qa eval`` and the offline studies all call :func:`run_question`, so
the wiring of the question's vector, the retrieval settings and the reader's context exists
once.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from qa.ask.answer import Abstention, Answer
from qa.ask.hf_reader import ExtractiveReader
from qa.ask.model_reader import SpanReader
from qa.ask.reader import HandSetReader, Reader, ReaderContext, Vector
from qa.ask.reranker import CrossEncoderReranker, rerank_hits
from qa.ask.retrieval import Filters, Hit, retrieve
from qa.config import RetrievalMode, Settings, SpanPrecision
from qa.index.generation import IndexGeneration

if TYPE_CHECKING:
    from qa.ask.reread import SpanFinder

log = logging.getLogger(__name__)

#: Reorders the hits of a question (a cross-encoder reranker); ranks restart at 1.
Rerank = Callable[[str, Sequence[Hit]], list[Hit]]


@dataclass(frozen=True, slots=True)
class Asked:
    """What one question produced: the hits, the reader's outcome (if asked) and timings."""

    hits: list[Hit]
    outcome: Answer | Abstention | None
    vector: Vector | None
    timings: dict[str, float] = field(default_factory=dict)


#: The hand-set scorer's threshold on its best sentence similarity (tuned on the seeds set).
HANDSET_THRESHOLD = 0.53


def load_reader(settings: Settings) -> Reader:
    """The reader the settings choose."""
    if settings.reader is not None:
        return SpanReader(
            extractive=ExtractiveReader(path=settings.reader, device=settings.device or "cpu"),
            template=settings.answer_template,
        )
    if settings.answer_scorer == "handset":
        threshold = (
            HANDSET_THRESHOLD if settings.answer_threshold is None else settings.answer_threshold
        )
        return HandSetReader(template=settings.answer_template, threshold=threshold)
    from qa.ask.answerer import LearnedReader, load_weights

    weights = load_weights()
    finder = load_span_finder(settings)
    read = weights.read_refusal
    if read is not None and not read.fits(finder):
        # That refusal reads margins of one span reader at one precision; with another one
        # (or none), the refusal without the margin is the calibrated one.
        log.info(
            "span reader %s (%s): using the refusal without its read margin",
            settings.span_model,
            settings.span_precision,
        )
        weights = dataclasses.replace(weights, read_refusal=None)
    return LearnedReader(
        template=settings.answer_template,
        weights=weights,
        threshold=settings.answer_threshold,
        span_model=finder,
    )


def load_span_finder(settings: Settings) -> SpanFinder | None:
    """The span model ``settings.span_model`` names: the shipped one ("learned"), a folder
    written by ``qa train-span-reader``, or ``None`` ("features": the linear span scorer)."""
    if settings.span_model == "features":
        return None
    from qa.ask.span_model import DEFAULT_SPAN_READER

    folder = DEFAULT_SPAN_READER if settings.span_model == "learned" else Path(settings.span_model)
    return _span_model(folder.resolve(), settings.backend, settings.span_precision)


@functools.lru_cache(maxsize=2)
def _span_model(folder: Path, backend: str, precision: SpanPrecision) -> SpanFinder:
    # One copy per process: the model is read-only and thread-safe, and every service start
    # (tests start many) would otherwise load it again.
    from qa.ask.span_model import load_span_model

    return load_span_model(folder, backend=backend, precision=precision)


def load_reranker(settings: Settings) -> Rerank | None:
    """The hit reordering the settings choose (a cross-encoder folder), or ``None``."""
    if settings.reranker is None:
        return None
    reranker = CrossEncoderReranker(path=settings.reranker, device=settings.device or "cpu")
    return functools.partial(rerank_hits, reranker)


def reader_context(gen: IndexGeneration, vector: Vector | None) -> ReaderContext:
    """What a reader may use from generation ``gen`` for a question with ``vector``."""
    if vector is None:
        return ReaderContext(None, None, gen.knows, gen.article_terms)
    return ReaderContext(
        vector=vector,
        sentence_scores=lambda row: gen.sentence_scores(row, vector),
        knows=gen.knows,
        article_terms=gen.article_terms,
    )


def run_question(
    gen: IndexGeneration,
    question: str,
    *,
    encode: Callable[[str], Vector],
    settings: Settings,
    reader: Reader | None,
    k: int,
    mode: RetrievalMode,
    filters: Filters | None = None,
    context: Callable[[IndexGeneration, Vector | None], ReaderContext] = reader_context,
    rerank: Rerank | None = None,
) -> Asked:
    """Encode ``question`` (when needed), retrieve its top ``k`` hits, reorder them with
    ``rerank`` if given and, with a ``reader``, answer it. ``context`` builds what the reader
    sees of the generation (evaluations swap it to hide an article from the reader)."""
    timings: dict[str, float] = {}
    vector = None
    if mode != "bm25" or reader is not None:
        t = time.perf_counter()
        vector = encode(question)
        timings["embed_ms"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    hits = retrieve(
        gen,
        question,
        vector,
        k=k,
        mode=mode,
        candidates=settings.candidates,
        rrf_k=settings.rrf_k,
        dense_weight=settings.dense_weight,
        filters=filters,
    )
    timings["search_ms"] = (time.perf_counter() - t) * 1000
    if rerank is not None and hits:
        t = time.perf_counter()
        hits = rerank(question, hits)
        timings["rerank_ms"] = (time.perf_counter() - t) * 1000
    outcome: Answer | Abstention | None = None
    if reader is not None:
        t = time.perf_counter()
        outcome = reader.answer(question, hits, context(gen, vector))
        timings["answer_ms"] = (time.perf_counter() - t) * 1000
    return Asked(hits, outcome, vector, timings)
