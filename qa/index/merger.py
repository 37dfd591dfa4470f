"""The merge policy on one background thread, so that publishing an edit never waits for a merge.

A service publishes a generation and calls :meth:`BackgroundMerger.request`: the policy
(:func:`qa.index.merge.merge_segments`) then runs on a daemon thread. At most one merge runs at
a time; requests made while it runs are coalesced into one more run after it, since a single
run of the policy sees every segment published until then. A merge failure is logged and never
reaches the request that triggered it (the edit is already live).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from qa.config import Settings
from qa.index.merge import merge_segments

log = logging.getLogger(__name__)


class BackgroundMerger:
    """Runs the merge policy on ``settings``' index in a background thread, on request;
    ``on_published`` is called with each generation a merge publishes."""

    def __init__(
        self, settings: Settings, on_published: Callable[[str], object] | None = None
    ) -> None:
        self.settings = settings
        self.on_published = on_published
        self.runs = 0
        self.merged: list[str] = []
        self._lock = threading.Lock()
        self._pending = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def request(self) -> None:
        """Ask for a run of the policy; returns at once."""
        with self._lock:
            if self._closed:
                return
            self._pending = True
            self._idle.clear()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="index-merger", daemon=True)
                self._thread.start()

    @property
    def running(self) -> bool:
        """Whether a run is under way or requested."""
        return not self._idle.is_set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no run is under way or requested; whether it is so."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Take no more requests and wait up to ``timeout`` seconds for a running merge."""
        with self._lock:
            self._closed = True
            self._pending = False
        if not self._idle.wait(timeout):
            log.warning("a background merge is still running; not waiting for it")

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._idle.set()
                    self._thread = None
                    return
                self._pending = False
            self._run_once()

    def _run_once(self) -> None:
        try:
            generation = merge_segments(self.settings)
        except Exception:  # the edit is live; a failed merge is retried on the next request
            log.exception("the background merge of '%s' failed", self.settings.index_dir)
            return
        self.runs += 1
        if generation is None:
            return
        self.merged.append(generation)
        log.info("background merge published generation %s", generation)
        if self.on_published is not None:
            try:
                self.on_published(generation)
            except Exception:
                log.exception("loading the merged generation %s failed", generation)
