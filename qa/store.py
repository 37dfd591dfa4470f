"""The index folder on disk: generations, the CURRENT pointer, atomic writes and checksums.

Layout::

    embeddings/
      CURRENT                 name of the live generation (replaced atomically)
      .build.lock             held by the one build allowed at a time
      generations/<id>/       one complete, immutable index generation
        manifest.json         written last; lists every other file with its SHA-256
        index.faiss  vectors.npy  passages.jsonl  documents.json  bm25/...

A build writes a new generation folder aside, then swaps ``CURRENT``. Readers only ever follow
``CURRENT``, so they see the old generation or the new one, never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qa.errors import IndexCorruptError, IndexNotFoundError

CURRENT = "CURRENT"
GENERATIONS = "generations"
MANIFEST = "manifest.json"
LOCK = ".build.lock"


def new_generation_id() -> str:
    """Sortable by creation time (microseconds), unique even for simultaneous builds."""
    now = time.time_ns() // 1000
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000))
    return f"{stamp}.{now % 1_000_000:06d}-{secrets.token_hex(3)}"


def generations_dir(index_dir: Path) -> Path:
    """Where generation folders live."""
    return index_dir / GENERATIONS


def fsync_dir(path: Path) -> None:
    """Make a rename or new file in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a mix."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def current_generation(index_dir: Path) -> str | None:
    """The id of the live generation, or ``None`` when nothing has been built yet."""
    path = index_dir / CURRENT
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        name: str | None = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        name = None
    if name == "":
        return None
    # A generation id is one folder name; anything else is damage, never a path to follow.
    if name is None or "/" in name or "\\" in name or name in (".", ".."):
        raise IndexCorruptError(
            f"'{path}' does not name a generation (it holds {raw[:40]!r}); "
            "run `python -m qa index --rebuild` to recover"
        )
    return name


def set_current(index_dir: Path, generation: str) -> None:
    """Switch readers to ``generation`` in one atomic rename."""
    write_atomic(index_dir / CURRENT, (generation + "\n").encode("utf-8"))


def current_path(index_dir: Path) -> Path:
    """The folder of the live generation; raises when there is none."""
    gen = current_generation(index_dir)
    if gen is None:
        raise IndexNotFoundError(
            f"no index in '{index_dir}' yet; "
            f"build one with `python -m qa index --index {index_dir}`"
        )
    path = generations_dir(index_dir) / gen
    if not path.is_dir():
        raise IndexCorruptError(
            f"'{index_dir / CURRENT}' names generation '{gen}', which does not exist; "
            "run `python -m qa index --rebuild` to recover"
        )
    return path


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in blocks (index files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "bytes"}}`` for every file under ``folder`` but the manifest."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            rel = path.relative_to(folder).as_posix()
            out[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return out


def verify_checksums(folder: Path, expected: dict[str, dict[str, Any]]) -> None:
    """Raise :class:`IndexCorruptError` naming the first file that is missing or altered."""
    for rel, want in expected.items():
        path = folder / rel
        hint = "run `python -m qa index --rebuild` to rebuild the index"
        if not path.is_file():
            raise IndexCorruptError(f"index file '{path}' is missing; {hint}")
        size = path.stat().st_size
        if size != want["bytes"]:
            raise IndexCorruptError(
                f"index file '{path}' is {size} bytes, expected {want['bytes']} "
                f"(truncated or altered); {hint}"
            )
        if sha256_file(path) != want["sha256"]:
            raise IndexCorruptError(
                f"index file '{path}' does not match its checksum (corrupted); {hint}"
            )


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a generation folder, or :class:`IndexCorruptError` if it is unreadable."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorruptError(
            f"index manifest '{path}' is missing; run `python -m qa index --rebuild`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(
            f"index manifest '{path}' is unreadable ({exc}); run `python -m qa index --rebuild`"
        ) from None
    if not isinstance(data, dict):
        raise IndexCorruptError(f"index manifest '{path}' is not a JSON object")
    return data


@contextmanager
def staging(index_dir: Path) -> Iterator[tuple[str, Path]]:
    """A fresh generation folder to write into; removed again if the block raises."""
    gen = new_generation_id()
    path = generations_dir(index_dir) / gen
    path.mkdir(parents=True)
    try:
        yield gen, path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def prune(index_dir: Path, *, keep: int) -> list[str]:
    """Delete generations other than the live one and the ``keep - 1`` newest before it.

    Called under the build lock, so a folder that is not kept is either old or left over from a
    build that was killed; servers hold their generation in memory, so deleting it is safe.
    """
    try:
        live = current_generation(index_dir)
    except IndexCorruptError:
        live = None
    root = generations_dir(index_dir)
    if live is None or not (root / live).is_dir():
        # Nothing says which folders are leftovers: deleting could remove the only intact
        # index. The build that follows sets CURRENT, and prunes then.
        return []
    names = sorted((p.name for p in root.iterdir() if p.is_dir()), reverse=True)
    older = [n for n in names if n < live]
    kept = {live, *older[: max(keep - 1, 0)]}
    removed = [n for n in names if n not in kept]
    for name in removed:
        shutil.rmtree(root / name, ignore_errors=True)
    return removed
