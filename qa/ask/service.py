"""The question-answering service, independent of any web framework.

It owns the live index generation and swaps it atomically when a newer one appears (built by
this process, by ``qa index`` in another process, or by the folder watcher). Each query takes
one reference to the generation at its start, so it is answered from one complete generation
even while a rebuild switches generations under it.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from qa.ask.answer import Abstention, Answer
from qa.ask.pipeline import Rerank, load_reader, load_reranker, run_question
from qa.ask.reader import Reader
from qa.ask.retrieval import Filters, Hit
from qa.config import RetrievalMode, Settings
from qa.embed.base import Embedder
from qa.embed.batching import QuestionEncoder
from qa.embed.registry import load_embedder
from qa.errors import IndexBusyError, InvalidQueryError
from qa.index import storage as store
from qa.index.builder import BuildSummary, build_index
from qa.index.generation import IndexGeneration, load_index
from qa.index.merger import BackgroundMerger

log = logging.getLogger(__name__)

#: Seconds a build waits for the index's file lock while this service's own background merge
#: runs: the merge holds it only to publish, and a caller must not be told "busy" for that.
MERGE_PUBLISH_GRACE = 10.0


@dataclass(frozen=True, slots=True)
class AskResult:
    """Everything one question produced."""

    question: str
    answer: Answer | None
    abstain_reason: str | None
    passages: list[Hit]
    took_ms: float
    generation: str
    mode: RetrievalMode
    timings: dict[str, float] = field(default_factory=dict)
    #: Best sentence similarity to the question (``None`` when no answer was asked for).
    support: float | None = None
    #: The answer the reader would have given had it not refused (for measuring refusals).
    unrefused: Answer | None = None


def validate_question(question: object, *, max_chars: int) -> str:
    """The question stripped of surrounding space, or :class:`InvalidQueryError` saying why not."""
    if not isinstance(question, str):
        raise InvalidQueryError(f"question must be a string, got {type(question).__name__}")
    text = question.strip()
    if not text:
        raise InvalidQueryError("question is empty or blank")
    if len(text) > max_chars:
        raise InvalidQueryError(
            f"question is {len(text)} characters long; the limit is {max_chars}"
        )
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category == "Cc" and ch not in "\t\n\r":
            raise InvalidQueryError(
                f"question contains a control character (U+{ord(ch):04X}) at position {i}"
            )
        if category == "Cs":  # a lone surrogate: not text, and not encodable as UTF-8
            raise InvalidQueryError(
                f"question contains an unpaired surrogate (U+{ord(ch):04X}) at position {i}"
            )
    return text


class QAService:
    """Answers questions from the live generation; rebuilds and reloads without downtime."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._encoder: QuestionEncoder | None = None
        self._reader: Reader | None = None
        self._rerank: Rerank | None = None
        self._rerank_loaded = False
        self._generation: IndexGeneration | None = None
        self._swap_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.last_build: BuildSummary | None = None
        self.last_build_at: float | None = None
        #: The merge policy runs here, after a publish, off the request's path.
        self.merger = BackgroundMerger(settings, on_published=lambda _gen: self.reload())

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The embedding model, loaded on first use."""
        if self._embedder is None:
            self._embedder = load_embedder(self.settings)
        return self._embedder

    @property
    def encoder(self) -> QuestionEncoder:
        """The batching, caching question encoder."""
        if self._encoder is None:
            self._encoder = QuestionEncoder(
                self.embedder, cache_size=self.settings.question_cache_size
            )
        return self._encoder

    @property
    def reader(self) -> Reader:
        """The answer reader the settings choose, loaded on first use."""
        if self._reader is None:
            self._reader = load_reader(self.settings)
        return self._reader

    @property
    def rerank(self) -> Rerank | None:
        """The cross-encoder reordering of hits, if the settings name one (loaded on first use)."""
        if not self._rerank_loaded:
            self._rerank = load_reranker(self.settings)
            self._rerank_loaded = True
        return self._rerank

    def start(self, *, update: bool = True, poll: bool = True) -> None:
        """Bring the index up to date (optionally), load it, and follow later generations."""
        if update:
            self.reindex(wait=600.0)
        else:
            self.reload()
        self.encoder.encode("warm-up")  # the first forward pass is slow; take it before traffic
        # A bad model folder (reader, reranker, span reader) fails the start, not the first
        # question, and loading the models is not charged to the first question.
        _ = self.reader, self.rerank
        if poll and self.settings.reload_interval > 0:
            self._poller = threading.Thread(target=self._poll, name="index-poller", daemon=True)
            self._poller.start()

    def close(self) -> None:
        """Stop background threads."""
        self._stop.set()
        self.merger.close()
        if self._poller is not None:
            self._poller.join(timeout=5)
        if self._encoder is not None:
            self._encoder.close()

    @property
    def generation(self) -> IndexGeneration:
        """The live generation (loaded on first use)."""
        gen = self._generation
        if gen is None:
            gen = self.reload()
        return gen

    @property
    def ready(self) -> bool:
        """Whether an index generation is loaded."""
        return self._generation is not None

    def reload(self) -> IndexGeneration:
        """Load the generation ``CURRENT`` names, if it is not the one already live."""
        with self._swap_lock:
            live = store.current_generation(self.settings.index_dir)
            gen = self._generation
            if gen is None or gen.generation != live:
                gen = load_index(self.settings)
                self._generation = gen  # one reference assignment: atomic for readers
            return gen

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.reload_interval):
            try:
                live = store.current_generation(self.settings.index_dir)
                if self._generation is None or live != self._generation.generation:
                    self.reload()
            except Exception:  # a bad new generation must not stop the service
                log.exception("could not load the new index generation; keeping the old one")

    def reindex(
        self,
        *,
        wait: float = 0.0,
        rebuild: bool = False,
        before: Callable[[], None] | None = None,
        paths: Collection[str] | None = None,
    ) -> BuildSummary:
        """Update the index from the seeds and switch to it; :class:`IndexBusyError` if busy.

        ``before`` runs while both build locks are held, before the seeds are read. ``paths``
        (sources relative to the seeds folder) are the only files that changed, if the caller
        knows (see :func:`qa.index.builder.build_index`). The merge policy is then scheduled
        on :attr:`merger`'s thread: this returns once the edit is live, not after a merge.
        """
        # The file lock stops other processes; this lock stops other threads of this one (the
        # endpoint and the watcher) with the same wait-or-refuse behaviour.
        if not self._build_lock.acquire(timeout=wait if wait > 0 else 0):
            raise IndexBusyError(
                f"a build of '{self.settings.index_dir}' is already running in this service"
            )
        try:
            summary = build_index(
                self.settings,
                embedder=self._embedder,
                rebuild=rebuild,
                wait=max(wait, MERGE_PUBLISH_GRACE) if self.merger.running else wait,
                before=before,
                paths=paths,
                run_policy=False,
                loaded=self._generation,
            )
        finally:
            self._build_lock.release()
        self.last_build = summary
        self.last_build_at = time.time()
        self.reload()
        if summary.changed:
            self.merger.request()
        return summary

    # -- asking ----------------------------------------------------------------------------
    def ask(
        self,
        question: str,
        *,
        k: int = 5,
        answer: bool = True,
        mode: RetrievalMode | None = None,
        filters: Filters | None = None,
    ) -> AskResult:
        """Top ``k`` passages for ``question`` and, if asked, an extractive answer."""
        started = time.perf_counter()
        text = validate_question(question, max_chars=self.settings.max_question_chars)
        if not 1 <= k <= self.settings.max_k:
            raise InvalidQueryError(f"k must be between 1 and {self.settings.max_k}, got {k}")
        mode = mode or self.settings.retrieval_mode
        gen = self.generation  # one generation for the whole query
        asked = run_question(
            gen,
            text,
            encode=self.encoder.encode,
            settings=self.settings,
            reader=self.reader if answer else None,
            k=k,
            mode=mode,
            filters=filters,
            rerank=self.rerank,
        )
        result_answer: Answer | None = None
        reason: str | None = None
        support: float | None = None
        unrefused: Answer | None = None
        if asked.outcome is not None:
            support = asked.outcome.support
            if isinstance(asked.outcome, Abstention):
                reason = asked.outcome.reason
                unrefused = asked.outcome.best
            else:
                result_answer = asked.outcome
        hits = asked.hits
        timings = asked.timings
        return AskResult(
            question=text,
            answer=result_answer,
            abstain_reason=reason,
            passages=hits,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
            generation=gen.generation,
            mode=mode,
            timings={k_: round(v, 2) for k_, v in timings.items()},
            support=support,
            unrefused=unrefused or result_answer,
        )
