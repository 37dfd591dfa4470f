"""A targeted seeds scan: only the files a caller names are looked at, the cache vouches for
every other one.

An upload, a deletion or the folder watcher knows which paths changed. Stat'ing the other
hundreds of thousands of files would only confirm what the stat cache already says, so a
targeted scan stats and reads the named files (and the cache entries that still wait for a
second read, the "racy" ones: see :mod:`qa.ingest.statcache`) and trusts the rest as is.

Only the plain cases are handled: a name outside the folder, a folder (added, removed or
renamed), a symlinked parent folder or an unreadable cache make :func:`scan_named` return
``None``, and the caller scans the whole folder instead. Hidden names (``.tmp-...`` from a
write aside, editors' swap files) are ignored, as the full scan ignores them, but not reported
as skipped.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.errors import SeedFileError
from qa.ingest.seeds import DEFAULT_MAX_BYTES, KnownTexts, SkippedFile, read_seed, skip_reason
from qa.ingest.statcache import RACY_WINDOW_NS, ScanResult, StatCache


class _Fallback(Exception):
    """A named path the targeted scan does not handle: scan the whole folder."""


@dataclass
class _Edits:
    """Changes to the cache: rows to drop, rows to rewrite, entries to add."""

    drop: list[int] = field(default_factory=list)
    rewrite: dict[int, tuple[int, int, int, bytes]] = field(default_factory=dict)
    add: list[tuple[bytes, tuple[int, int, int, bytes]]] = field(default_factory=list)
    #: Cache rows of the files looked at (the others are trusted).
    looked: list[int] = field(default_factory=list)


def _signed(inode: int) -> int:
    """An inode number as the cache stores it (unsigned 64-bit bits in a signed column)."""
    return inode - (1 << 64) if inode >= 1 << 63 else inode


def _source_of(name: str) -> str | None:
    """``name`` as a seed source (POSIX, relative); ``None`` if hidden; :class:`_Fallback`
    if it is not a plain relative path."""
    rel = PurePosixPath(name)
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
        raise _Fallback(name)
    if any(p.startswith(".") for p in rel.parts):
        return None
    return rel.as_posix()


def _check_parents(seeds_dir: Path, source: str) -> None:
    """A symlinked folder between ``seeds_dir`` and ``source`` is left to the full scan."""
    folder = seeds_dir
    for part in PurePosixPath(source).parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise _Fallback(source)


def _row(cache: StatCache, key: bytes) -> int:
    try:
        return cache.sources.index(key)
    except ValueError:
        return -1


def _look(
    seeds_dir: Path,
    cache: StatCache,
    source: str,
    *,
    started: int,
    known: KnownTexts | None,
    max_bytes: int,
    out: ScanResult,
    edits: _Edits,
) -> None:
    """Stat and read ``source``, recording what it became in ``out`` and ``edits``."""
    key = source.encode("utf-8", errors="surrogateescape")
    row = _row(cache, key)
    if row >= 0:
        edits.looked.append(row)
    path = seeds_dir / source
    _check_parents(seeds_dir, source)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if row < 0 and any(s.startswith(key + b"/") for s in cache.sources):
            raise _Fallback(source) from None  # a folder went away
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise _Fallback(source)  # a folder came (or was renamed) in
    reason = None if st is None else skip_reason(path, seeds_dir.resolve())
    seed = None
    if st is not None and reason is None:
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(path)
        try:
            seed = read_seed(seeds_dir, path, max_bytes=max_bytes, known=known)
        except SeedFileError as exc:
            out.skipped.append(SkippedFile(source, str(exc)))
        except OSError as exc:
            out.skipped.append(SkippedFile(source, f"cannot be read: {exc}"))
    elif reason is not None:
        out.skipped.append(SkippedFile(source, f"'{source}' {reason}"))
    if seed is None or st is None:
        if row >= 0:
            edits.drop.append(row)
            out.vanished.append(source)
        return
    out.read.append(seed)
    racy = st.st_mtime_ns >= started - RACY_WINDOW_NS
    sha = b"" if racy else seed.content_hash.encode("ascii")
    entry = (st.st_size, st.st_mtime_ns, _signed(st.st_ino), sha)
    if row >= 0:
        edits.rewrite[row] = entry
    else:
        edits.add.append((key, entry))


def _column(
    old: npt.NDArray[Any], rewrite: dict[int, Any], drop: list[int], add: list[Any], dtype: str
) -> npt.NDArray[Any]:
    """One cache column with rows rewritten, dropped and added."""
    col = old.copy()
    for row, value in rewrite.items():
        col[row] = value
    return np.concatenate([np.delete(col, drop), np.asarray(add, dtype=dtype)])


def _apply(cache: StatCache, edits: _Edits) -> tuple[StatCache, list[bytes]]:
    """The cache after ``edits``, and the sources of the rows not looked at (trusted)."""
    trusted = list(cache.sources)
    for row in sorted(set(edits.looked), reverse=True):
        del trusted[row]
    drop = sorted(set(edits.drop), reverse=True)
    sources = list(cache.sources)
    for row in drop:
        del sources[row]
    sources.extend(key for key, _ in edits.add)
    old = (cache.size, cache.mtime, cache.inode, cache.sha256)
    cols = [
        _column(
            old[j],
            {r: e[j] for r, e in edits.rewrite.items()},
            drop,
            [e[j] for _, e in edits.add],
            "S64" if j == 3 else "int64",
        )
        for j in range(4)
    ]
    return StatCache(sources, cols[0], cols[1], cols[2], cols[3]), trusted


def scan_named(
    seeds_dir: Path,
    cache: StatCache | None,
    names: Collection[str],
    *,
    known: KnownTexts | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ScanResult | None:
    """Scan only ``names`` (sources relative to ``seeds_dir``) and the cache's racy entries,
    trusting ``cache`` for every other file; ``None`` when the whole folder must be scanned."""
    if cache is None or not cache.documents_id or not seeds_dir.is_dir():
        return None
    started = time.time_ns()
    waiting = np.flatnonzero(cache.sha256 == b"").tolist()
    racy = {cache.sources[i].decode("utf-8", "surrogateescape") for i in waiting}
    out = ScanResult([], [], np.zeros(0, "S64"), [], [], StatCache(), cache.documents_id)
    edits = _Edits()
    try:
        sources = {s for s in (_source_of(n) for n in names) if s is not None}
        for source in sorted(sources | racy):
            _look(
                seeds_dir,
                cache,
                source,
                started=started,
                known=known,
                max_bytes=max_bytes,
                out=out,
                edits=edits,
            )
    except _Fallback:
        return None
    keep = np.ones(len(cache.sources), dtype=bool)
    keep[edits.looked] = False
    out.cache, out.trusted_sources = _apply(cache, edits)
    out.trusted_hashes = cache.sha256[keep]
    return out
