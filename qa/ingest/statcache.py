"""A seeds scan that trusts unchanged files: a stat cache like git's index.

The cache maps each seed file's path to what ``stat`` said of it (size, ``mtime_ns``, inode)
and the SHA-256 of the content read then. A later scan reads and hashes only the files whose
stat differs: an edit changes the mtime (or the size), a file replaced by a rename has another
inode, a deleted file is no longer walked.

"Racy git": a file written again within the timestamp granularity of the moment it was stat'ed
can keep the same mtime (and size) with new content. So an entry whose mtime is within
:data:`RACY_WINDOW_NS` of the start of the scan that recorded it is stored without its hash, and
the file is read again by the next scan; by then its mtime is old enough to be trusted.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import SeedFileError
from qa.ingest.seeds import (
    ARTICLE_SUFFIXES,
    DEFAULT_MAX_BYTES,
    KnownTexts,
    SeedFile,
    SkippedFile,
    read_seed,
    skip_reason,
)

log = logging.getLogger(__name__)

#: Files modified this close to the scan that saw them are not trusted next time (2 s covers
#: the coarsest common timestamps, FAT's, and the kernel's coarse clock everywhere else).
RACY_WINDOW_NS = 2_000_000_000

#: (size, mtime_ns, inode, sha256 hex or "" when the file must be read again).
Entry = tuple[int, int, int, str]


@dataclass
class StatCache:
    """What the last scan saw of each seed file, by source (path relative to the folder)."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The cache as an ``.npz`` archive of columns (fast to write and read at 100,000s)."""
        sources = list(self.entries)
        cols: list[tuple[Any, ...]] = (
            list(zip(*self.entries.values(), strict=True)) if sources else [(), (), (), ()]
        )
        buf = io.BytesIO()
        np.savez(
            buf,
            sources=np.asarray([s.encode("utf-8") for s in sources], dtype=np.bytes_),
            size=np.asarray(cols[0], dtype=np.int64),
            mtime=np.asarray(cols[1], dtype=np.int64),
            inode=np.asarray(cols[2], dtype=np.uint64),
            sha256=np.asarray([h.encode("ascii") for h in cols[3]], dtype="S64"),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> StatCache:
        """The cache in ``data``; an empty one (every file is read) if it is unreadable."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                sources = [s.decode("utf-8") for s in z["sources"].tolist()]
                hashes = [h.decode("ascii") for h in z["sha256"].tolist()]
                cols = zip(
                    z["size"].tolist(),
                    z["mtime"].tolist(),
                    z["inode"].tolist(),
                    hashes,
                    strict=True,
                )
                return cls(dict(zip(sources, cols, strict=True)))
        except (OSError, ValueError, KeyError, UnicodeDecodeError, EOFError) as exc:
            log.warning("the seeds stat cache is unreadable (%s); every file will be read", exc)
            return cls()


@dataclass
class ScanResult:
    """A scan: files read now, files trusted unchanged by their stat, files skipped."""

    #: New files, files whose stat changed, and files the cache could not vouch for.
    read: list[SeedFile]
    #: source -> content hash of the files whose stat matched the cache (not read).
    trusted: dict[str, str]
    skipped: list[SkippedFile]
    #: The cache to keep for the next scan.
    cache: StatCache

    @property
    def sources(self) -> set[str]:
        """Every article found, read or trusted."""
        return {f.source for f in self.read} | set(self.trusted)


def _walk(seeds_dir: Path, root: Path) -> Iterator[tuple[str, os.stat_result | None, str | None]]:
    """(path, stat, None) for each article file, (path, None, reason) for each skipped entry;
    the same files and reasons as :func:`qa.ingest.seeds.iter_candidates`, at a stat per file
    (regular files take the fast path; links and oddities get the full rules)."""
    stack = [str(seeds_dir)]
    while stack:
        here = stack.pop()
        with os.scandir(here) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            try:
                is_dir = e.is_dir()  # as os.walk sees it: a link to a folder is a folder
            except OSError:
                is_dir = False
            if is_dir:
                if e.is_symlink():
                    yield e.path, None, "is a symlinked folder (not followed)"
                elif not e.name.startswith("."):
                    subdirs.append(e.path)
                continue
            fast = (
                not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in ARTICLE_SUFFIXES
                and e.is_file(follow_symlinks=False)
            )
            if fast:
                yield e.path, e.stat(follow_symlinks=False), None
                continue
            reason = skip_reason(Path(e.path), root)
            if reason is None:
                yield e.path, os.stat(e.path), None
            else:
                yield e.path, None, reason
        stack.extend(reversed(subdirs))


def scan_changes(
    seeds_dir: Path,
    cache: StatCache | None,
    *,
    known: KnownTexts | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    rehash: bool = False,
) -> ScanResult:
    """Scan ``seeds_dir``, reading only the files whose stat differs from ``cache`` (all of
    them with ``rehash`` or without a cache). Skipped files are logged, as by ``scan``."""
    if not seeds_dir.is_dir():
        raise SeedFileError(f"seeds folder '{seeds_dir}' does not exist or is not a folder")
    started = time.time_ns()
    old = cache.entries if cache is not None and not rehash else {}
    root = seeds_dir.resolve()
    prefix = len(str(seeds_dir)) + 1
    out = ScanResult([], {}, [], StatCache())
    for path, st, reason in _walk(seeds_dir, root):
        source = path[prefix:].replace(os.sep, "/")
        if st is None:
            out.skipped.append(SkippedFile(source, f"'{source}' {reason}"))
            log.warning("skipped %s", out.skipped[-1].reason)
            continue
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        before = old.get(source)
        if before is not None and before[3] and before[:3] == key and st.st_size <= max_bytes:
            out.trusted[source] = before[3]
            out.cache.entries[source] = before
            continue
        try:
            seed = read_seed(seeds_dir, Path(path), max_bytes=max_bytes, known=known)
        except SeedFileError as exc:
            out.skipped.append(SkippedFile(source, str(exc)))
        except OSError as exc:
            out.skipped.append(SkippedFile(source, f"cannot be read: {exc}"))
        else:
            out.read.append(seed)
            # Stat'ed before it was read: a change in between shows as a new stat next time.
            racy = st.st_mtime_ns >= started - RACY_WINDOW_NS
            out.cache.entries[source] = (*key, "" if racy else seed.content_hash)
            continue
        log.warning("skipped %s", out.skipped[-1].reason)
    return out
