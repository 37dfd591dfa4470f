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
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

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
_ARTICLE_SUFFIXES_B = frozenset(s.encode("ascii") for s in ARTICLE_SUFFIXES)


def _i64(values: Any) -> npt.NDArray[np.int64]:
    return np.asarray(values, dtype=np.int64)


@dataclass
class StatCache:
    """What the last scan saw of each seed file, in columns (sources are UTF-8 paths relative
    to the seeds folder). ``documents_id`` names the state of the index's documents the cache
    was written against (see the builder): while it matches, a trusted file is indexed as is."""

    sources: list[bytes] = field(default_factory=list)
    size: npt.NDArray[np.int64] = field(default_factory=lambda: _i64([]))
    mtime: npt.NDArray[np.int64] = field(default_factory=lambda: _i64([]))
    inode: npt.NDArray[np.int64] = field(default_factory=lambda: _i64([]))
    sha256: npt.NDArray[np.bytes_] = field(default_factory=lambda: np.zeros(0, "S64"))
    documents_id: str = ""

    @property
    def entries(self) -> dict[str, Entry]:
        """The cache as a dict (for tests and small folders: it is O(files) objects)."""
        cols = zip(
            self.size.tolist(),
            self.mtime.tolist(),
            self.inode.tolist(),
            self.sha256.tolist(),
            strict=True,
        )
        return {
            s.decode("utf-8"): (a, b, c, h.decode("ascii"))
            for s, (a, b, c, h) in zip(self.sources, cols, strict=True)
        }

    def same_files(self, other: StatCache) -> bool:
        """Whether ``other`` records the same files with the same stat and hashes."""
        return (
            self.sources == other.sources
            and np.array_equal(self.size, other.size)
            and np.array_equal(self.mtime, other.mtime)
            and np.array_equal(self.inode, other.inode)
            and np.array_equal(self.sha256, other.sha256)
        )

    def to_bytes(self) -> bytes:
        """The cache as an ``.npz`` archive of its columns."""
        buf = io.BytesIO()
        np.savez(
            buf,
            sources=np.asarray(self.sources, dtype=np.bytes_),
            size=self.size,
            mtime=self.mtime,
            inode=self.inode,
            sha256=self.sha256,
            documents_id=np.asarray(self.documents_id),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> StatCache:
        """The cache in ``data``; an empty one (every file is read) if it is unreadable."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                out = cls(
                    sources=list(z["sources"].tolist()),
                    size=_i64(z["size"]),
                    mtime=_i64(z["mtime"]),
                    inode=_i64(z["inode"]),
                    sha256=np.asarray(z["sha256"], dtype="S64"),
                    documents_id=str(z["documents_id"]),
                )
        except (OSError, ValueError, KeyError, EOFError) as exc:
            log.warning("the seeds stat cache is unreadable (%s); every file will be read", exc)
            return cls()
        if not len(out.sources) == len(out.size) == len(out.mtime) == len(out.inode):
            log.warning("the seeds stat cache has columns that disagree; every file will be read")
            return cls()
        return out


@dataclass
class StatDelta:
    """What targeted builds changed since the cache was written whole (see
    :mod:`qa.ingest.statdelta`)."""

    #: The ``documents_id`` of the cache written whole that the entries apply to.
    base_id: str
    #: What the cache with this delta vouches for.
    documents_id: str = ""
    #: Entries changed since that cache (``None``: the file is gone).
    entries: dict[str, Entry | None] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The delta as JSON."""
        doc = {"base_id": self.base_id, "documents_id": self.documents_id, "entries": self.entries}
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> StatDelta | None:
        """The delta in ``data``; ``None`` (and a warning) if it is unreadable."""
        try:
            doc = json.loads(data)
            entries: dict[str, Entry | None] = {
                str(k): None if v is None else (int(v[0]), int(v[1]), int(v[2]), str(v[3]))
                for k, v in doc["entries"].items()
            }
            return cls(str(doc["base_id"]), str(doc["documents_id"]), entries)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            log.warning("the seeds stat cache's delta is unreadable (%s); ignoring it", exc)
            return None


@dataclass
class ScanResult:
    """A scan: files read now, files trusted unchanged by their stat, files gone, skipped."""

    #: New files, files whose stat changed, and files the cache could not vouch for.
    read: list[SeedFile]
    #: The files whose stat matched the cache (not read), and their content hashes.
    trusted_sources: list[bytes]
    trusted_hashes: npt.NDArray[np.bytes_]
    #: Files the cache knew that are no longer in the folder (or no longer readable).
    vanished: list[str]
    skipped: list[SkippedFile]
    #: The cache to keep for the next scan.
    cache: StatCache
    #: The ``documents_id`` of the cache the scan started from ("" without one).
    documents_id: str = ""
    #: A targeted scan (:mod:`qa.ingest.namedscan`) lists no trusted file: it counts them,
    #: and keeps its changes as a delta (:mod:`qa.ingest.statdelta`) instead of ``cache``.
    trusted_count: int | None = None
    delta: StatDelta | None = None

    @property
    def trusted(self) -> dict[str, str]:
        """source -> content hash of the trusted files (O(files) objects: for small uses)."""
        hashes = self.trusted_hashes.tolist()
        return {
            s.decode("utf-8"): h.decode("ascii")
            for s, h in zip(self.trusted_sources, hashes, strict=True)
        }

    @property
    def count(self) -> int:
        """Articles found, read or trusted."""
        trusted = self.trusted_count
        return len(self.read) + (len(self.trusted_sources) if trusted is None else trusted)

    @property
    def sources(self) -> set[str]:
        """Every article found, read or trusted."""
        return {f.source for f in self.read} | set(self.trusted)


@dataclass
class _Walk:
    """What a walk saw: article files with their stat, in columns, and skipped entries."""

    sources: list[bytes] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    mtime: list[int] = field(default_factory=list)
    inode: list[int] = field(default_factory=list)
    skipped: list[tuple[bytes, str]] = field(default_factory=list)

    def columns(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Size, mtime and inode of each file, as arrays."""
        # Inode numbers are unsigned 64-bit; stored signed, the bits are what matters.
        inode: npt.NDArray[np.int64] = np.asarray(self.inode, np.uint64).astype(np.int64)
        return _i64(self.size), _i64(self.mtime), inode

    def add(self, source: bytes, st: os.stat_result) -> None:
        self.sources.append(source)
        self.size.append(st.st_size)
        self.mtime.append(st.st_mtime_ns)
        self.inode.append(st.st_ino)


def _walk(top: bytes, prefix: bytes, root: Path, out: _Walk) -> None:
    """Every entry under ``top``: the same files and reasons as
    :func:`qa.ingest.seeds.iter_candidates`, at one ``stat`` per regular file (links and
    oddities get the full rules). Names stay bytes: nothing is decoded per file."""
    with os.scandir(top) as it:
        entries = list(it)
    subdirs = []
    for e in entries:
        name = e.name
        try:
            is_dir = e.is_dir()  # as os.walk sees it: a link to a folder is a folder
        except OSError:
            is_dir = False
        if is_dir:
            if e.is_symlink():
                out.skipped.append((prefix + name, "is a symlinked folder (not followed)"))
            elif not name.startswith(b"."):
                subdirs.append(e)
            continue
        dot = name.rfind(b".")
        if (
            dot > 0
            and name[dot:].lower() in _ARTICLE_SUFFIXES_B
            and e.is_file(follow_symlinks=False)
        ):
            out.add(prefix + name, e.stat(follow_symlinks=False))
            continue
        reason = skip_reason(Path(os.fsdecode(e.path)), root)
        if reason is None:
            out.add(prefix + name, os.stat(e.path))
        else:
            out.skipped.append((prefix + name, reason))
    for d in sorted(subdirs, key=lambda d: d.name):
        _walk(d.path, prefix + d.name + b"/", root, out)


def _matches(cache: StatCache | None, walk: _Walk) -> npt.NDArray[np.int64]:
    """For each walked file, its row in ``cache`` (-1: not there)."""
    n = len(walk.sources)
    if cache is None or not cache.sources:
        return np.full(n, -1, dtype=np.int64)
    if walk.sources == cache.sources:  # the usual case: same folder, same order
        return np.arange(n, dtype=np.int64)
    pos = {s: i for i, s in enumerate(cache.sources)}
    return _i64([pos.get(s, -1) for s in walk.sources])


def _unchanged(
    cache: StatCache | None, walk: _Walk, max_bytes: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bytes_]]:
    """For each walked file: its row in ``cache`` (-1: none), whether its stat matches the
    cache's and a hash is known, and that hash (empty where not)."""
    size, mtime, inode = walk.columns()
    row = _matches(cache, walk)
    same = row >= 0
    hashes = np.zeros(len(row), dtype="S64")
    if cache is not None and same.any():
        r = row[same]
        same[same] = (
            (cache.size[r] == size[same])
            & (cache.mtime[r] == mtime[same])
            & (cache.inode[r] == inode[same])
            & (cache.sha256[r] != b"")
            & (size[same] <= max_bytes)
        )
        hashes[same] = cache.sha256[row[same]]
    return row, same, hashes


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
    cache = None if rehash else cache
    walk = _Walk()
    _walk(os.fsencode(seeds_dir), b"", seeds_dir.resolve(), walk)
    row, same, hashes = _unchanged(cache, walk, max_bytes)
    size, mtime, inode = walk.columns()
    out = ScanResult(
        read=[],
        trusted_sources=[walk.sources[i] for i in np.flatnonzero(same).tolist()],
        trusted_hashes=hashes[same],
        vanished=[],
        skipped=[],
        cache=StatCache(),
        documents_id=cache.documents_id if cache is not None else "",
    )
    keep = same.copy()
    for i in np.flatnonzero(~same).tolist():
        source = walk.sources[i].decode("utf-8", errors="surrogateescape")
        try:
            seed = read_seed(seeds_dir, seeds_dir / source, max_bytes=max_bytes, known=known)
        except SeedFileError as exc:
            out.skipped.append(SkippedFile(source, str(exc)))
        except OSError as exc:
            out.skipped.append(SkippedFile(source, f"cannot be read: {exc}"))
        else:
            out.read.append(seed)
            keep[i] = True
            # Stat'ed before it was read: a change in between shows as a new stat next time.
            if mtime[i] < started - RACY_WINDOW_NS:
                hashes[i] = seed.content_hash.encode("ascii")
            continue
        log.warning("skipped %s", out.skipped[-1].reason)
    for name, reason in walk.skipped:
        source = name.decode("utf-8", errors="surrogateescape")
        out.skipped.append(SkippedFile(source, f"'{source}' {reason}"))
        log.warning("skipped %s", out.skipped[-1].reason)
    if cache is not None:
        seen = np.zeros(len(cache.sources), dtype=bool)
        seen[row[keep & (row >= 0)]] = True
        out.vanished = [cache.sources[i].decode("utf-8") for i in np.flatnonzero(~seen).tolist()]
    idx = np.flatnonzero(keep)
    out.cache = StatCache(
        [walk.sources[i] for i in idx.tolist()], size[idx], mtime[idx], inode[idx], hashes[idx]
    )
    return out
