"""The stat cache's journal: what targeted builds changed since the cache was last written whole.

A targeted build (:mod:`qa.ingest.namedscan`) looks at a handful of files; rewriting the whole
cache (hundreds of thousands of rows) for them would make every publish O(files) again. So it
writes a small delta beside the cache instead: the entries it changed (``None`` for a file gone)
and the ``documents_id`` the cache now vouches for. The delta names the base it applies to (the
base's ``documents_id``); a delta of another base is ignored, and then the stamp no longer
matches the live generation, so the next build scans the whole folder. A full scan writes the
cache whole and removes the delta; a delta grown past :data:`MAX_DELTA` entries is folded in.

:class:`BaseView` is the cache read once per process (while its file is unchanged) with a row
per source, so a targeted scan looks entries up in O(1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.ingest.statcache import Entry, StatCache, StatDelta

log = logging.getLogger(__name__)

#: Past this many entries a delta is folded into the cache (an O(files) write, amortised).
MAX_DELTA = 2_000


@dataclass
class BaseView:
    """A base cache with a row per source and its racy rows (built once per cache file)."""

    cache: StatCache
    rows: dict[bytes, int]
    racy: list[int]

    @classmethod
    def of(cls, cache: StatCache) -> BaseView:
        rows = {s: i for i, s in enumerate(cache.sources)}
        return cls(cache, rows, np.flatnonzero(cache.sha256 == b"").tolist())

    def entry(self, row: int) -> Entry:
        c = self.cache
        sha = bytes(c.sha256[row]).decode("ascii")
        return (int(c.size[row]), int(c.mtime[row]), int(c.inode[row]), sha)


def _column(values: list[Any], dtype: str) -> npt.NDArray[Any]:
    return np.asarray(values, dtype=dtype)


def fold(base: StatCache, delta: StatDelta | None) -> StatCache:
    """``base`` with ``delta`` applied (O(files)): the cache a full scan starts from."""
    if delta is None or delta.base_id != base.documents_id:
        return base
    keep = np.ones(len(base.sources), dtype=bool)
    pos = {s: i for i, s in enumerate(base.sources)} if delta.entries else {}
    size, mtime, inode, sha = base.size.copy(), base.mtime.copy(), base.inode.copy(), base.sha256
    sha = sha.copy()
    added: list[tuple[bytes, Entry]] = []
    for source, entry in delta.entries.items():
        key = source.encode("utf-8", "surrogateescape")
        row = pos.get(key, -1)
        if entry is None:
            if row >= 0:
                keep[row] = False
        elif row >= 0:
            size[row], mtime[row], inode[row] = entry[0], entry[1], entry[2]
            sha[row] = entry[3].encode("ascii")
        else:
            added.append((key, entry))
    sources = [s for s, k in zip(base.sources, keep.tolist(), strict=True) if k]
    sources.extend(k for k, _ in added)
    cols = [
        np.concatenate([col[keep], _column([e[j] for _, e in added], dtype)])
        for j, (col, dtype) in enumerate(
            ((size, "int64"), (mtime, "int64"), (inode, "int64"), (sha, "S64"))
        )
    ]
    return StatCache(sources, cols[0], cols[1], cols[2], cols[3], delta.documents_id)
