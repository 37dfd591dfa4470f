"""A targeted seeds scan: only the files a caller names are looked at.

The stat cache vouches for every other file. An upload, a deletion or the folder watcher knows
which paths changed. Stat'ing the other hundreds of thousands of files would only confirm what
the stat cache already says, so a targeted scan stats and reads the named files (and the cache
entries that still wait for a second read, the "racy" ones: see :mod:`qa.ingest.statcache`)
and trusts the rest as is.

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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from qa.errors import SeedFileError
from qa.ingest.seeds import DEFAULT_MAX_BYTES, KnownTexts, SkippedFile, read_seed, skip_reason
from qa.ingest.statcache import RACY_WINDOW_NS, Entry, ScanResult, StatCache, StatDelta
from qa.ingest.statdelta import BaseView


class _Fallback(Exception):
    """A named path the targeted scan does not handle: scan the whole folder."""


@dataclass
class _Known:
    """The cache as the targeted scan sees it: the base view overlaid with the delta."""

    view: BaseView
    delta: dict[str, Entry | None]

    def get(self, source: str) -> Entry | None:
        if source in self.delta:
            return self.delta[source]
        row = self.view.rows.get(source.encode("utf-8", "surrogateescape"), -1)
        return None if row < 0 else self.view.entry(row)

    def has_under(self, source: str) -> bool:
        """Whether the cache holds a file under folder ``source``."""
        key = source.encode("utf-8", "surrogateescape") + b"/"
        if any(k.startswith(source + "/") and e is not None for k, e in self.delta.items()):
            return True
        return any(s.startswith(key) for s in self.view.cache.sources)

    def racy(self) -> set[str]:
        """Sources whose entry waits for a second read (no hash yet)."""
        sources = self.view.cache.sources
        out = {sources[i].decode("utf-8", "surrogateescape") for i in self.view.racy}
        out -= set(self.delta)
        out |= {k for k, e in self.delta.items() if e is not None and not e[3]}
        return out

    def count(self) -> int:
        """Files the cache holds."""
        n = len(self.view.rows)
        for source, entry in self.delta.items():
            in_base = source.encode("utf-8", "surrogateescape") in self.view.rows
            n += (entry is not None and not in_base) - (entry is None and in_base)
        return n


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


def _look(
    seeds_dir: Path,
    known_files: _Known,
    source: str,
    *,
    started: int,
    known: KnownTexts | None,
    max_bytes: int,
    out: ScanResult,
) -> Entry | None:
    """Stat and read ``source``, recording it in ``out``; its new cache entry (``None``: not
    an article now)."""
    path = seeds_dir / source
    _check_parents(seeds_dir, source)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if known_files.get(source) is None and known_files.has_under(source):
            raise _Fallback(source) from None  # a folder went away
        return None
    if stat.S_ISDIR(st.st_mode):
        raise _Fallback(source)  # a folder came (or was renamed) in
    reason = skip_reason(path, seeds_dir.resolve())
    if reason is not None:
        out.skipped.append(SkippedFile(source, f"'{source}' {reason}"))
        return None
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(path)
    try:
        seed = read_seed(seeds_dir, path, max_bytes=max_bytes, known=known)
    except SeedFileError as exc:
        out.skipped.append(SkippedFile(source, str(exc)))
        return None
    except OSError as exc:
        out.skipped.append(SkippedFile(source, f"cannot be read: {exc}"))
        return None
    out.read.append(seed)
    racy = st.st_mtime_ns >= started - RACY_WINDOW_NS
    sha = "" if racy else seed.content_hash
    return (st.st_size, st.st_mtime_ns, _signed(st.st_ino), sha)


def scan_named(
    seeds_dir: Path,
    view: BaseView | None,
    delta: StatDelta | None,
    names: Collection[str],
    *,
    known: KnownTexts | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ScanResult | None:
    """Scan only ``names`` (sources relative to ``seeds_dir``) and the cache's racy entries,
    trusting the cache (``view`` and its ``delta``) for every other file; ``None`` when the
    whole folder must be scanned. The scan's changes to the cache are its ``delta``."""
    if view is None or not seeds_dir.is_dir():
        return None
    base_id = view.cache.documents_id
    if delta is None or delta.base_id != base_id:
        delta = StatDelta(base_id, base_id)
    files = _Known(view, dict(delta.entries))
    started = time.time_ns()
    out = ScanResult([], [], np.zeros(0, "S64"), [], [], StatCache(), delta.documents_id)
    total = files.count()
    present = 0
    try:
        sources = {s for s in (_source_of(n) for n in names) if s is not None}
        for source in sorted(sources | files.racy()):
            before = files.get(source)
            entry = _look(
                seeds_dir, files, source, started=started, known=known, max_bytes=max_bytes, out=out
            )
            present += before is not None
            if before is not None and entry is None:
                out.vanished.append(source)
            if before is not None or entry is not None:
                files.delta[source] = entry
    except _Fallback:
        return None
    out.trusted_count = total - present
    out.delta = StatDelta(base_id, delta.documents_id, files.delta)
    return out
