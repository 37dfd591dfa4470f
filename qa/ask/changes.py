"""Adding, replacing and deleting documents: the seeds folder and the index change together.

A change runs as one job on a worker thread. The job takes the build locks first (the
service's thread lock and the index's file lock, shared with ``POST /api/reindex``, the folder
watcher and ``qa index``), then writes the file aside and renames it into place (or deletes it),
then updates the index incrementally and switches the service to the new generation. A busy
index is reported before anything is written; a failed build puts the old file back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from qa.config import Settings
from qa.errors import DocumentNotFoundError, DocumentTooLargeError
from qa.index import storage as store
from qa.index.builder import BuildSummary
from qa.ingest.extract import EXTRACTIONS, check_content_type
from qa.ingest.names import seed_path, validate_name

log = logging.getLogger(__name__)

Action = Literal["created", "replaced", "unchanged", "deleted"]


class Rebuilder(Protocol):
    """What a change drives: :class:`qa.service.QAService` fits."""

    settings: Settings

    def reindex(
        self,
        *,
        wait: float = ...,
        rebuild: bool = ...,
        before: Callable[[], None] | None = ...,
        paths: Collection[str] | None = ...,
    ) -> BuildSummary:
        """Run ``before`` under the build locks, then update the index and make it live."""


@dataclass(frozen=True, slots=True)
class DocumentChange:
    """What a change did, and whether (and since when) it is visible to questions."""

    source: str
    action: Action
    #: ``live``: the new generation answers questions; ``building``: the index is being updated.
    status: Literal["live", "building"]
    bytes: int
    build: BuildSummary | None = None
    generation: str | None = None
    #: When the change became visible to questions (ISO 8601, UTC), if it has.
    searchable_at: str | None = None
    took_ms: float = 0.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Job:
    """One change of the seeds folder followed by one build, run on its own thread."""

    def __init__(
        self, service: Rebuilder, source: str, path: Path, data: bytes | None, lock_wait: float
    ) -> None:
        self.service = service
        self.source = source
        self.path = path
        self.data = data  # None: delete
        self.lock_wait = lock_wait
        self.old: bytes | None = None
        self.applied = False
        self.error: BaseException | None = None
        self.summary: BuildSummary | None = None
        self.live_at: str | None = None
        self.written = threading.Event()
        self.done = threading.Event()

    def _apply(self) -> None:
        """Runs under the build locks: write the file aside and rename it in, or delete it."""
        self.old = self.path.read_bytes() if self.path.is_file() else None
        if self.data is None:
            if self.old is None:
                raise DocumentNotFoundError(f"no document {self.source!r} in the seeds folder")
            self.path.unlink()
            _remove_empty_folders(self.path.parent, self.service.settings.seeds_dir.resolve())
        elif self.old != self.data:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            store.write_atomic(self.path, self.data)  # a hidden temporary name, then a rename
        self.applied = True
        self.written.set()

    def _undo(self) -> None:
        try:
            if self.old is None:
                self.path.unlink(missing_ok=True)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                store.write_atomic(self.path, self.old)
            log.warning("put '%s' back as it was after the failed build", self.path)
        except OSError:
            log.exception("could not put '%s' back after the failed build", self.path)

    def run(self) -> None:
        try:
            # Only this document changed: the build looks at its path alone.
            self.summary = self.service.reindex(
                wait=self.lock_wait, before=self._apply, paths=[self.source]
            )
            self.live_at = _now()
        except BaseException as exc:
            self.error = exc
            if self.applied:
                self._undo()
                log.error("updating the index after changing '%s' failed: %s", self.path, exc)
        finally:
            self.written.set()
            self.done.set()


def _remove_empty_folders(folder: Path, root: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``root`` while they are empty."""
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:  # not empty: the folder still holds other documents
            return
        folder = folder.parent


def _run(
    service: Rebuilder,
    source: str,
    path: Path,
    data: bytes | None,
    *,
    wait_live: bool,
    lock_wait: float,
) -> DocumentChange:
    started = time.perf_counter()
    job = _Job(service, source, path, data, lock_wait)
    threading.Thread(target=job.run, name=f"document-change:{source}", daemon=True).start()
    job.written.wait()
    if job.error is not None and not job.applied:
        raise job.error  # busy, or nothing to delete: nothing was written
    if wait_live:
        job.done.wait()
        if job.error is not None:
            raise job.error
    if data is None:
        action: Action = "deleted"
    elif job.old is None:
        action = "created"
    else:
        action = "replaced" if job.old != data else "unchanged"
    summary = job.summary if job.done.is_set() else None
    return DocumentChange(
        source=source,
        action=action,
        status="live" if summary is not None else "building",
        bytes=0 if data is None else len(data),
        build=summary,
        generation=summary.generation if summary else None,
        searchable_at=job.live_at,
        took_ms=round((time.perf_counter() - started) * 1000, 1),
    )


def put_document(
    service: Rebuilder,
    source: str,
    data: bytes,
    *,
    content_type: str | None = None,
    wait_live: bool = False,
    lock_wait: float = 0.0,
) -> DocumentChange:
    """Add or replace document ``source`` with ``data`` and update the index.

    The name, the size, the declared type and the content are all checked before the build
    locks are taken. ``wait_live`` returns only once the new generation answers questions;
    otherwise the index is updated in the background. A build already running makes this wait
    up to ``lock_wait`` seconds, then raise :class:`~qa.errors.IndexBusyError`.
    """
    settings = service.settings
    validate_name(source)
    limit = settings.max_document_bytes
    if len(data) > limit:
        raise DocumentTooLargeError(
            f"'{source}' is {len(data):,} bytes; the limit is {limit:,} (max_document_bytes)"
        )
    check_content_type(source, content_type)
    EXTRACTIONS.get(source, data)  # refuses what the build could not read; cached for the build
    path = seed_path(settings.seeds_dir, source)
    return _run(service, source, path, data, wait_live=wait_live, lock_wait=lock_wait)


def delete_document(
    service: Rebuilder, source: str, *, wait_live: bool = False, lock_wait: float = 0.0
) -> DocumentChange:
    """Delete document ``source`` from the seeds folder and the index."""
    path = seed_path(service.settings.seeds_dir, source)
    if not path.is_file():
        raise DocumentNotFoundError(f"no document {source!r} in the seeds folder")
    return _run(service, source, path, None, wait_live=wait_live, lock_wait=lock_wait)
