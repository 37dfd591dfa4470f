"""Following the seeds folder: reindex shortly after files are added, edited or removed.

Changes are debounced: a reindex starts once the folder has been quiet for ``debounce``
seconds, so copying fifty files costs one build rather than fifty. The build is told which paths
the events named, so it looks at those files only (see :mod:`qa.index.seedscan`); an event
outside the folder, or more than :data:`MAX_NAMED` of them, makes it scan the whole folder.
The watcher runs in a daemon thread and survives errors (a failed build is logged and
retried), so a bad moment never stops it; :meth:`SeedWatcher.stop` ends it promptly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path, PurePath
from typing import Any, Protocol

from qa.errors import IndexBusyError

log = logging.getLogger(__name__)


class Reindexer(Protocol):
    """What the watcher drives: :class:`qa.ask.service.QAService` fits."""

    def reindex(
        self, *, wait: float = 0.0, rebuild: bool = False, paths: Collection[str] | None = None
    ) -> Any:
        """Bring the index up to date with the seeds folder (``paths``: the files changed)."""


#: Seconds between looks at the clock while changes wait for the folder to go quiet.
_TICK = 0.1
#: Above this many changed paths a full scan is cheaper than looking at each one.
MAX_NAMED = 10_000


def sources_of(seeds_dir: Path, changed: Iterable[str]) -> set[str] | None:
    """The sources (relative POSIX paths) of the ``changed`` paths, or ``None`` when one is
    not under ``seeds_dir`` (then the whole folder is scanned)."""
    roots = (seeds_dir.absolute(), seeds_dir.resolve())
    out: set[str] = set()
    for path in changed:
        p = PurePath(path)
        for root in roots:
            if p.is_relative_to(root) and p != root:
                out.add(p.relative_to(root).as_posix())
                break
        else:
            return None
    return out


class SeedWatcher:
    """Calls ``target.reindex(wait=...)`` (or ``target()``) after the seeds folder changes."""

    def __init__(
        self,
        target: Reindexer | Callable[[], object],
        seeds_dir: Path,
        *,
        debounce: float = 1.0,
        wait: float = 60.0,
        retry: float = 5.0,
        force_polling: bool | None = None,
    ) -> None:
        self.target = target
        self.seeds_dir = Path(seeds_dir)
        self.debounce = debounce
        #: Seconds a reindex waits for another process's build before giving up.
        self.wait = wait
        #: Seconds before a reindex that failed is tried again (or the folder is watched again).
        self.retry = retry
        self.force_polling = force_polling
        self.runs = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching in a daemon thread (returns once the watch is being set up)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="seed-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and wait up to ``timeout`` seconds for the thread (and any build)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                log.warning("the seed watcher is still finishing a build; not waiting for it")

    @property
    def running(self) -> bool:
        """Whether the watcher thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch()
            except Exception:  # e.g. the folder vanished; look again later instead of dying
                log.exception(
                    "watching '%s' failed; trying again in %.0fs", self.seeds_dir, self.retry
                )
                self._stop.wait(self.retry)

    def _watch(self) -> None:
        import watchfiles  # imported here: only a watching process needs it

        pending = 0  # changes not yet reindexed
        named: set[str] = set()  # their paths
        last_change = 0.0
        not_before = 0.0  # after a failure, when to try again
        for changes in watchfiles.watch(
            self.seeds_dir,
            stop_event=self._stop,
            debounce=int(min(self.debounce, 0.5) * 1000),
            step=50,
            rust_timeout=int(_TICK * 1000),
            yield_on_timeout=True,
            raise_interrupt=False,
            force_polling=self.force_polling,
        ):
            now = time.monotonic()
            if changes:
                pending += len(changes)
                named.update(path for _, path in changes)
                last_change = now
                log.debug("seeds changed: %s", sorted(path for _, path in changes))
                continue
            if pending and now - last_change >= self.debounce and now >= not_before:
                if self._reindex(pending, named):
                    pending = 0
                    named = set()
                else:
                    not_before = time.monotonic() + self.retry

    def _call_target(self, named: Collection[str]) -> object:
        reindex = getattr(self.target, "reindex", None)
        if callable(reindex):
            paths = sources_of(self.seeds_dir, named) if len(named) <= MAX_NAMED else None
            return reindex(wait=self.wait, paths=paths)
        if callable(self.target):
            return self.target()
        raise TypeError(f"cannot reindex with {self.target!r}: not a service nor a callable")

    def _reindex(self, changes: int, named: Collection[str] = ()) -> bool:
        """Run one reindex; whether it succeeded (a failure is logged, never raised)."""
        started = time.perf_counter()
        try:
            summary = self._call_target(named)
        except IndexBusyError as exc:
            self.failures += 1
            log.warning(
                "seeds changed but the index is busy (%s); retrying in %.0fs", exc, self.retry
            )
            return False
        except Exception:
            self.failures += 1
            log.exception(
                "reindexing after %d seed change(s) failed; retrying in %.0fs", changes, self.retry
            )
            return False
        self.runs += 1
        to_json = getattr(summary, "to_json", None)
        log.info(
            "reindexed after %d seed change(s) in %.1fs: %s",
            changes,
            time.perf_counter() - started,
            to_json() if callable(to_json) else summary,
        )
        return True
