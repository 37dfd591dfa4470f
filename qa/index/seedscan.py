"""What the seeds folder holds now against the live generation, reading as little as possible.

The stat cache (:mod:`qa.ingest.statcache`) says which files are unchanged since the last scan.
It records the ``documents_id`` of the generation it was written after (a token a build that
changes documents draws anew, and a merge keeps): while the live generation still has that
token, every file the cache trusts is indexed with exactly its cached hash, so only the files
read now and the files gone are compared with the index, and the work is O(changes) after a
stat of each file. Otherwise (a first build, a build that failed after the scan, ``--rehash``)
every trusted hash is compared with the index's, O(documents) in memory.

A build told which paths changed (an upload, a deletion, the folder watcher) does not even stat
the other files: :func:`qa.ingest.namedscan.scan_named` looks at the named paths only and trusts
the cache for the rest, but only while the cache's ``documents_id`` is the live generation's;
otherwise (and for anything but plain files) the whole folder is scanned.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from qa.config import Settings
from qa.errors import SeedFileError
from qa.index import statstore
from qa.index.generation import IndexGeneration
from qa.ingest.namedscan import scan_named
from qa.ingest.seeds import SeedFile, SkippedFile, read_seed
from qa.ingest.statcache import ScanResult, StatCache, scan_changes
from qa.ingest.statdelta import MAX_DELTA, fold

log = logging.getLogger(__name__)


@dataclass
class SeedChanges:
    """The files to look at, the sources gone, what the index held of both, the file count."""

    files: list[SeedFile]
    vanished: set[str]
    #: Content hash in the live generation of the sources in ``files`` and ``vanished``
    #: (of every document, when the cache could not vouch for the index).
    previous: dict[str, str]
    total: int
    scan: ScanResult
    cache: StatCache | None
    #: Whether only the changes were compared with the index.
    incremental: bool
    #: Whether only the named paths were looked at (no stat of the other files).
    targeted: bool = False


def find_changes(
    settings: Settings,
    previous: IndexGeneration | None,
    *,
    rehash: bool,
    paths: Collection[str] | None = None,
) -> SeedChanges:
    """Scan the seeds folder and line it up with ``previous`` (the live generation).

    ``paths`` (sources relative to the seeds folder) are the only files that changed, if the
    caller knows: then only they are looked at, when the stat cache is in step with
    ``previous``."""
    docs = previous.documents if previous is not None else None

    def known(content_hash: str) -> Mapping[str, Any] | None:
        # PDF and Word texts extracted by an earlier build are reused, by content hash.
        record = docs.with_hash(content_hash) if docs is not None else None
        extracted = record.get("extracted") if record is not None else None
        return extracted if isinstance(extracted, Mapping) else None

    cache = None
    live_id = previous.manifest.get("documents_id") if previous is not None else None
    found = None
    if paths is not None and not rehash and live_id:
        view, delta = statstore.read_stat_view(settings.index_dir)
        found = scan_named(settings.seeds_dir, view, delta, paths, known=known)
        if found is not None and found.documents_id != live_id:
            found = None  # the cache was not written after the live generation
    targeted = found is not None
    if found is None:
        if paths is not None:
            log.info("targeted scan not possible (stale cache or a folder changed): full scan")
        cache = None if rehash else statstore.read_stat_cache(settings.index_dir)
        found = scan_changes(settings.seeds_dir, cache, known=known, rehash=rehash)
    if docs is not None and live_id and found.documents_id == live_id:
        prev: dict[str, str] = {}
        for source in [f.source for f in found.read] + found.vanished:
            record = docs.get(source)
            if record is not None:
                prev[source] = str(record["hash"])
        vanished = set(found.vanished)
        return SeedChanges(found.read, vanished, prev, found.count, found, cache, True, targeted)
    prev = docs.hashes() if docs is not None else {}
    files = list(found.read)
    trusted = found.trusted
    for source, content_hash in trusted.items():
        if prev.get(source) != content_hash:
            try:
                files.append(
                    read_seed(settings.seeds_dir, settings.seeds_dir / source, known=known)
                )
            except (SeedFileError, OSError) as exc:
                found.skipped.append(SkippedFile(source, str(exc)))
                del trusted[source]
    present = {f.source for f in found.read} | set(trusted)
    vanished = set(prev) - present
    return SeedChanges(files, vanished, prev, len(present), found, cache, False)


def save_cache(settings: Settings, changes: SeedChanges, documents_id: str | None) -> None:
    """Keep the scan's stat cache, stamped with the live generation's ``documents_id``: a
    targeted scan's delta, or the whole cache (a delta grown large is folded in)."""
    delta = changes.scan.delta
    if delta is not None:
        delta.documents_id = documents_id or ""
        if len(delta.entries) <= MAX_DELTA:
            statstore.write_stat_delta(settings.index_dir, delta)
            return
        view = statstore.read_stat_view(settings.index_dir)[0]
        if view is not None:
            statstore.write_stat_cache(settings.index_dir, fold(view.cache, delta))
            return
    new = changes.scan.cache
    new.documents_id = documents_id or ""
    old = changes.cache
    if old is not None and old.documents_id == new.documents_id and old.same_files(new):
        return
    statstore.write_stat_cache(settings.index_dir, new)
