"""The seeds stat cache's files beside the index: the cache, and the delta targeted builds write.

Neither is fsynced: they are only a cache, and a torn or lost one is unreadable or empty, so
the next scan reads every file (never trusts a wrong hash). Both are written aside and renamed
into place. The cache as a :class:`~qa.ingest.statdelta.BaseView` is kept in memory while its
file is unchanged, so a long-running service reads it once, not at every publish.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from qa.ingest.statcache import StatCache, StatDelta
from qa.ingest.statdelta import BaseView, fold

STAT_CACHE = "seeds.statcache.npz"
STAT_DELTA = "seeds.statcache.delta.json"

_memo: dict[Path, tuple[tuple[int, int, int], BaseView]] = {}
_memo_lock = threading.Lock()


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_delta(index_dir: Path) -> StatDelta | None:
    try:
        return StatDelta.from_bytes((index_dir / STAT_DELTA).read_bytes())
    except FileNotFoundError:
        return None


def read_stat_cache(index_dir: Path) -> StatCache | None:
    """The stat cache with its delta applied, or ``None`` when there is none (O(files))."""
    try:
        base = StatCache.from_bytes((index_dir / STAT_CACHE).read_bytes())
    except FileNotFoundError:
        return None
    return fold(base, _read_delta(index_dir))


def read_stat_view(index_dir: Path) -> tuple[BaseView | None, StatDelta | None]:
    """The cache as it was last written whole (read once while its file is unchanged) and the
    delta written since; ``(None, None)`` when there is no cache."""
    path = index_dir / STAT_CACHE
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, None
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _memo_lock:
        memo = _memo.get(path)
        if memo is None or memo[0] != key:
            memo = (key, BaseView.of(StatCache.from_bytes(path.read_bytes())))
            _memo[path] = memo
    return memo[1], _read_delta(index_dir)


def write_stat_cache(index_dir: Path, cache: StatCache) -> None:
    """Replace the stat cache (and drop the delta, which it includes)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    _replace(index_dir / STAT_CACHE, cache.to_bytes())
    (index_dir / STAT_DELTA).unlink(missing_ok=True)


def write_stat_delta(index_dir: Path, delta: StatDelta) -> None:
    """Replace the stat cache's delta."""
    _replace(index_dir / STAT_DELTA, delta.to_bytes())
