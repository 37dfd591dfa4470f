"""Embedding concurrent questions together.

Callers block on :meth:`QuestionEncoder.encode`; one worker thread takes every question waiting
at that moment and embeds them in one batch. A lone question is embedded at once (no waiting
window), while under load many questions share one forward pass. Repeated questions come from
an LRU cache.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future

import numpy as np

from qa.embed.base import Embedder, Vectors

_Item = tuple[str, "Future[Vectors]"]


class QuestionEncoder:
    """Batches and caches question embeddings for one embedder."""

    def __init__(self, embedder: Embedder, *, max_batch: int = 64, cache_size: int = 1024) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._cache_lock = threading.Lock()
        # None tells the worker to stop.
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0

    def encode(self, question: str) -> Vectors:
        """The unit vector of ``question`` (shape ``(dimension,)``)."""
        with self._cache_lock:
            hit = self._cache.get(question)
            if hit is not None:
                self._cache.move_to_end(question)
                return hit
        self._ensure_worker()
        fut: Future[Vectors] = Future()
        self._queue.put((question, fut))
        vector = fut.result()
        if self.cache_size:
            with self._cache_lock:
                self._cache[question] = vector
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return vector

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._run, name="question-encoder", daemon=True
                )
                self._worker.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            questions = [q for q, _ in batch]
            futures = [f for _, f in batch]
            try:
                vectors = self.embedder.encode_batch(questions)
            except BaseException as exc:  # the caller gets the error, the worker lives on
                for f in futures:
                    f.set_exception(exc)
                continue
            self.batches += 1
            for f, v in zip(futures, vectors, strict=True):
                f.set_result(np.ascontiguousarray(v, dtype=np.float32))

    def close(self) -> None:
        """Stop the worker thread (pending questions are still answered first)."""
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=10)
