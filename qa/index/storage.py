"""The index on disk, owned here with :mod:`qa.index.segments`: names, CURRENT, generations.

Layout::

    embeddings/
      CURRENT                 name of the live generation (replaced atomically)
      .build.lock             held by the one build allowed at a time
      .merge.lock             held by the one merge allowed at a time (outside the build lock)
      seeds.statcache.npz     the seeds scan's stat cache (qa.ingest.statcache); a cache only
      segments/<id>/          immutable segments (see qa.index.segments), shared by generations
      generations/<id>/       one generation: which segments, which of their rows are deleted
        manifest.json         written last: segments, model, settings, checksums
        tombstones.npz        deleted rows and deleted document records, per segment
        segments.txt          the segment ids alone (for deleting unused segments)

A generation holds nothing per document: each segment carries its documents' records
(qa.index.doctable), so publishing an edit writes O(edit) bytes and a manifest of O(segments).

A build writes a new segment and a new generation folder aside, then swaps ``CURRENT``. Readers
only ever follow ``CURRENT``, so they see the old generation or the new one, never a half-written
one. A segment is deleted only once no kept generation lists it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from qa.config import Settings
from qa.embed.registry import model_id_for
from qa.errors import (
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexSchemaError,
)
from qa.index.segments import check_files, segments_dir, sha256_file
from qa.index.statstore import STAT_CACHE as STAT_CACHE  # the stat cache's files: see there
from qa.index.statstore import read_stat_cache as read_stat_cache
from qa.index.statstore import write_stat_cache as write_stat_cache
from qa.index.tombstones import TOMBSTONES, SegmentEntry, tombstone_bytes

CURRENT = "CURRENT"
GENERATIONS = "generations"
MANIFEST = "manifest.json"
LOCK = ".build.lock"
MERGE_LOCK = ".merge.lock"
SEGMENT_LIST = "segments.txt"

#: 3: documents tables in the segments, tombstones in their own file. 2 kept a record per
#: document in the manifest; 1 was one folder per generation holding every file. Both are
#: refused with the command that rebuilds (see :func:`check_compatible`).
SCHEMA_VERSION = 3
#: Bumped whenever article cleaning, sentence splitting or chunking changes its output.
CHUNKER_VERSION = 1
REBUILD_HINT = "run `python -m qa index --rebuild` to rebuild the index"


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
    check_files(folder, expected, full=True)


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


def merge_running(index_dir: Path) -> bool:
    """Whether a merge (in this process or another) holds the merge lock now."""
    lock = FileLock(str(index_dir / MERGE_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def prune(index_dir: Path, *, keep: int, merging: bool = False) -> list[str]:
    """Delete generations other than the live one and the ``keep - 1`` newest before it, and
    the segments no kept generation lists.

    Called under the build lock, so a folder that is not kept is either old or left over from a
    build that was killed; servers hold their generation in memory, so deleting it is safe.
    While a merge runs (unless the caller is that merge, ``merging``), segments are left alone:
    the one it is writing is listed by no generation yet.
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
    if merging or not merge_running(index_dir):
        _collect_segments(index_dir, [root / n for n in names if n in kept])
    return removed


def _collect_segments(index_dir: Path, generations: list[Path]) -> None:
    """Delete segments (and half-written ones) that no kept generation lists.

    A server still answering from a pruned generation keeps its segments' files open (memory
    maps), so their data stays readable after the names are gone.
    """
    root = segments_dir(index_dir)
    if not root.is_dir():
        return
    used: set[str] = set()
    for folder in generations:
        try:
            used.update((folder / SEGMENT_LIST).read_text(encoding="utf-8").split())
            continue
        except (OSError, UnicodeDecodeError):
            pass
        try:
            listed = read_manifest(folder).get("segments", [])
        except IndexCorruptError:
            return  # cannot tell what a damaged generation uses: delete nothing
        used.update(str(s.get("id")) for s in listed if isinstance(s, dict))
    for path in root.iterdir():
        if path.name not in used:
            shutil.rmtree(path, ignore_errors=True)


def segments_in_use(index_dir: Path) -> list[str]:
    """Segment folders on disk (for tests and ``qa index --check``)."""
    root = segments_dir(index_dir)
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def chunking_settings(settings: Settings) -> dict[str, Any]:
    """The settings that decide passage boundaries; an index is only valid for these."""
    return {
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "chunker_version": CHUNKER_VERSION,
    }


def check_compatible(manifest: dict[str, Any], settings: Settings, *, where: Path) -> None:
    """Refuse an index built for another schema, model or chunking, saying how to rebuild."""
    rebuild = (
        f"rebuild it with `python -m qa index --rebuild --index {where.parent.parent}` "
        "(or point the settings back at what it was built with)"
    )
    older = {
        1: "the single-folder layout of seedqa before segments (schema version 1)",
        2: "a manifest holding every document's record (schema version 2), before segments "
        "carried their documents",
    }
    if manifest.get("schema_version") in older:
        raise IndexSchemaError(
            f"index '{where}' uses {older[manifest['schema_version']]}, which this seedqa does "
            "not read; rebuild it with "
            f"`python -m qa index --rebuild --index {where.parent.parent}`",
            layout=older[manifest["schema_version"]],
        )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise IndexMismatchError(
            f"index '{where}' has schema version {manifest.get('schema_version')!r}, this "
            f"seedqa reads version {SCHEMA_VERSION}; {rebuild}"
        )
    built_model = manifest.get("model", {}).get("id")
    wanted_model = model_id_for(settings.model)
    if built_model != wanted_model:
        raise IndexMismatchError(
            f"index '{where}' was built with model {built_model!r}, but the settings ask for "
            f"{wanted_model!r}; {rebuild}"
        )
    built_chunking = manifest.get("chunking")
    wanted_chunking = chunking_settings(settings)
    if built_chunking != wanted_chunking:
        raise IndexMismatchError(
            f"index '{where}' was built with chunking {built_chunking}, but the settings ask for "
            f"{wanted_chunking}; {rebuild}"
        )


def read_live_manifest(settings: Settings, *, verify: bool = True) -> tuple[Path, dict[str, Any]]:
    """The live generation's folder and manifest, after the compatibility checks and (with
    ``verify``) the checksums of the generation's own small files. Segments are checked when
    they are opened (:func:`qa.index.segments.open_segment`)."""
    folder = current_path(settings.index_dir)
    manifest = read_manifest(folder)
    check_compatible(manifest, settings, where=folder)
    segments = manifest.get("segments")
    if not isinstance(segments, list):
        raise IndexCorruptError(f"index manifest '{folder / MANIFEST}' lists no segments")
    if verify:
        verify_checksums(folder, manifest.get("files", {}))
    return folder, manifest


def write_generation(
    folder: Path, *, manifest: dict[str, Any], segments: list[SegmentEntry]
) -> None:
    """Write a generation into its staging ``folder``: the segment list, the tombstones, then
    the manifest (which lists the segments and each file's checksum) last."""
    # The segment ids alone, so that deleting unused segments need not parse every manifest.
    ids = "".join(f"{entry.id}\n" for entry in segments)
    (folder / SEGMENT_LIST).write_text(ids, encoding="utf-8")
    (folder / TOMBSTONES).write_bytes(tombstone_bytes(segments))
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    full = {
        "schema_version": SCHEMA_VERSION,
        "generation": folder.name,
        **manifest,
        "segments": [e.to_json() for e in segments],
        "files": file_checksums(folder),
    }
    write_atomic(folder / MANIFEST, json.dumps(full, indent=1).encode("utf-8"))


def publish(index_dir: Path, manifest: dict[str, Any], segments: list[SegmentEntry]) -> str:
    """Write a generation that lists existing segments and make it the live one; its id."""
    with staging(index_dir) as (generation, folder):
        write_generation(folder, manifest=manifest, segments=segments)
        set_current(index_dir, generation)
    return generation
