"""The index on disk, owned here alone: file names, the CURRENT pointer, writing, reading, checks.

Layout::

    embeddings/
      CURRENT                 name of the live generation (replaced atomically)
      .build.lock             held by the one build allowed at a time
      generations/<id>/       one complete, immutable index generation
        manifest.json         written last; lists every other file with its SHA-256
        passages.jsonl        the passage store (text, source, offsets, sentences)
        vectors.npy           passage unit vectors, float32, row i for passage i
        sentences.npy         sentence unit vectors, float16, in passage order
        index.faiss           the FAISS index over vectors.npy
        bm25/                 the BM25 index (bm25s)
        extracted/<sha256>.json  text, title, date extracted from each PDF or Word file

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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from qa.config import Settings
from qa.embed.registry import model_id_for
from qa.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from qa.index.lexical import LexicalIndex
from qa.ingest.passages import Passage

CURRENT = "CURRENT"
GENERATIONS = "generations"
MANIFEST = "manifest.json"
LOCK = ".build.lock"
PASSAGES = "passages.jsonl"
VECTORS = "vectors.npy"
SENTENCES = "sentences.npy"
FAISS_INDEX = "index.faiss"
BM25 = "bm25"
EXTRACTED = "extracted"

SCHEMA_VERSION = 1
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


@dataclass(frozen=True, slots=True)
class StoredGeneration:
    """A generation's files as read from disk, checked against each other and the manifest."""

    folder: Path
    manifest: dict[str, Any]
    passages: list[Passage]
    #: Passage unit vectors, row i for passage i (memory-mapped unless read in full).
    vectors: npt.NDArray[np.float32]
    #: Sentence unit vectors of all passages, in passage order (float16 on disk).
    sentence_vectors: npt.NDArray[Any]
    #: Passage i owns sentence rows ``sentence_start[i]:sentence_start[i + 1]``.
    sentence_start: npt.NDArray[np.int64]


def sentence_starts(passages: list[Passage]) -> npt.NDArray[np.int64]:
    """Prefix sums of sentence counts: passage i owns sentence rows ``[s[i], s[i + 1])``."""
    counts = np.fromiter((len(p.sentences) for p in passages), dtype=np.int64, count=len(passages))
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def read_passages(folder: Path) -> list[Passage]:
    """The passage store of a generation folder."""
    path = folder / PASSAGES
    try:
        with open(path, encoding="utf-8") as fh:
            return [Passage.from_json(json.loads(line)) for line in fh if line.strip()]
    except (OSError, ValueError, TypeError) as exc:
        raise IndexCorruptError(f"passage store '{path}' is unreadable: {exc}") from None


def read_generation(
    settings: Settings, *, verify: bool = True, mmap: bool = True
) -> StoredGeneration:
    """The live generation's manifest, passages and vectors, after every check that can fail.

    Compatibility with ``settings`` (schema, model, chunking) is always checked; with ``verify``
    every file's SHA-256 too. ``mmap`` maps the vector files instead of reading them.
    """
    folder = current_path(settings.index_dir)
    manifest = read_manifest(folder)
    check_compatible(manifest, settings, where=folder)
    if verify:
        verify_checksums(folder, manifest.get("files", {}))
    passages = read_passages(folder)
    try:
        mode: Literal["r"] | None = "r" if mmap else None
        vectors = np.load(folder / VECTORS, mmap_mode=mode, allow_pickle=False)
        sentences = np.load(folder / SENTENCES, mmap_mode=mode, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(
            f"vectors in '{folder}' are unreadable ({exc}); {REBUILD_HINT}"
        ) from None
    starts = sentence_starts(passages)
    if len(vectors) != len(passages) or manifest.get("passages") != len(passages):
        raise IndexCorruptError(
            f"index '{folder}' holds {len(vectors)} vectors for {len(passages)} passages; "
            f"{REBUILD_HINT}"
        )
    if starts[-1] != len(sentences):
        raise IndexCorruptError(f"index '{folder}' has a sentence vector count that does not match")
    return StoredGeneration(folder, manifest, passages, vectors, sentences, starts)


def read_extracted(folder: Path, content_hash: str) -> dict[str, Any] | None:
    """The text, title and date extracted from the file with ``content_hash`` (PDF, Word)."""
    path = folder / EXTRACTED / f"{content_hash}.json"
    if not (content_hash.isascii() and content_hash.isalnum()) or not path.is_file():
        return None  # not a hash (so never a path to follow), or extracted by no build
    return dict(json.loads(path.read_text(encoding="utf-8")))  # checksummed when loaded


def read_search_indexes(stored: StoredGeneration) -> tuple[faiss.Index, LexicalIndex]:
    """The FAISS and BM25 indexes of a generation, checked against its passage count."""
    path = stored.folder / FAISS_INDEX
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexCorruptError(f"FAISS index '{path}' is unreadable: {exc}") from None
    if index.ntotal != len(stored.passages):
        raise IndexCorruptError(
            f"index '{stored.folder}' holds {index.ntotal} vectors for {len(stored.passages)} "
            f"passages; {REBUILD_HINT}"
        )
    return index, LexicalIndex.load(stored.folder / BM25, len(stored.passages))


def write_generation(
    folder: Path,
    *,
    passages: list[Passage],
    vectors: npt.NDArray[np.float32],
    sentence_vectors: npt.NDArray[np.float32],
    faiss_index: faiss.Index,
    lexical: LexicalIndex,
    manifest: dict[str, Any],
    extracted: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Write every file of a generation into its staging ``folder``, the manifest last.

    The manifest gets the schema version, the passage count and each file's checksum; files are
    fsynced before it is written, so a manifest never describes data that is not on disk.
    """
    with open(folder / PASSAGES, "w", encoding="utf-8") as fh:
        for p in passages:
            fh.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")
    np.save(folder / VECTORS, vectors, allow_pickle=False)
    # Half precision is plenty for ranking a handful of sentences, at half the disk and memory.
    np.save(folder / SENTENCES, sentence_vectors.astype(np.float16), allow_pickle=False)
    faiss.write_index(faiss_index, str(folder / FAISS_INDEX))
    (folder / BM25).mkdir()
    lexical.save(folder / BM25)
    (folder / EXTRACTED).mkdir()  # keyed by content hash: a renamed file keeps its text
    for content_hash, record in (extracted or {}).items():
        (folder / EXTRACTED / f"{content_hash}.json").write_text(json.dumps(record), "utf-8")
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    full = {
        "schema_version": SCHEMA_VERSION,
        "generation": folder.name,
        "passages": len(passages),
        **manifest,
        "files": file_checksums(folder),
    }
    write_atomic(folder / MANIFEST, json.dumps(full, indent=1).encode("utf-8"))
