"""Finding and reading seed files: which files are articles, and their exact decoded text.

Offsets of a text file index into ``path.read_bytes().decode("utf-8")``, so this module
decodes exactly that way (a UTF-8 BOM stays in the text as U+FEFF and is simply not indexed).
Offsets of a PDF or Word file index into the text extracted from it (:mod:`qa.ingest.extract`),
which the index keeps per content hash, so each file is extracted once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.errors import SeedFileError, UnsupportedDocumentError
from qa.ingest.extract import EXTRACTED_FORMATS, EXTRACTIONS, FORMAT_FOR_SUFFIX, format_for

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm"})
#: Every suffix read as an article: text files as they are, PDF and Word through extraction.
ARTICLE_SUFFIXES = frozenset(FORMAT_FOR_SUFFIX)
#: Looks up what was extracted before from the file with a content hash (the index keeps it).
KnownTexts = Callable[[str], Mapping[str, Any] | None]
#: Files above this size are skipped: they would take hours to embed and are almost never articles.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file under the seeds folder that was not indexed, and why."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class SeedFile:
    """One readable article file: its path relative to the seeds folder and its exact text."""

    source: str
    path: Path
    text: str
    content_hash: str
    #: Title and date recorded in the file's metadata (PDF, Word); they win over the text's.
    meta_title: str | None = None
    meta_date: str | None = None
    #: Size of the file in bytes (for PDF and Word, not the size of the text).
    size: int | None = None
    #: Whether ``text`` was extracted from a PDF or Word file.
    extracted: bool = False


def relative_source(seeds_dir: Path, path: Path) -> str:
    """The POSIX-style path of ``path`` relative to ``seeds_dir``, as stored in passages."""
    return path.relative_to(seeds_dir).as_posix()


def _link_target(path: Path) -> Path | None:
    """Where a symlink finally leads, or ``None`` if it loops or leads nowhere."""
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python before 3.13
        return None


def iter_candidates(seeds_dir: Path) -> Iterator[tuple[Path, str | None]]:
    """Yield every file under ``seeds_dir`` with ``None``, or with the reason it is skipped.

    Symlinked directories are not followed (they can loop); symlinked files are read only when
    they resolve inside the seeds folder.
    """
    root = seeds_dir.resolve()
    for dirpath, dirnames, filenames in os.walk(seeds_dir, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames):
            if name.startswith(".") or (here / name).is_symlink():
                # Hidden folders (.git, .cache) are not content; linked folders may loop.
                if (here / name).is_symlink():
                    yield here / name, "is a symlinked folder (not followed)"
                dirnames.remove(name)
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            yield path, skip_reason(path, root)


def skip_reason(path: Path, root: Path) -> str | None:
    """Why the file at ``path`` is not read as an article (``None``: it is read). ``root`` is
    the resolved seeds folder."""
    target = _link_target(path) if path.is_symlink() else path
    if path.name.startswith("."):
        return "is a hidden file"
    if path.suffix.lower() not in ARTICLE_SUFFIXES:
        return f"is not a text file, PDF or Word file (suffix {path.suffix or '(none)'!r})"
    if target is None:
        return "is a symlink that loops or leads nowhere"
    if path.is_symlink() and not target.is_relative_to(root):
        return "is a symlink that points outside the seeds folder"
    if not path.is_file():
        return "is not a regular file"
    return None


def read_seed(
    seeds_dir: Path,
    path: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    known: KnownTexts | None = None,
) -> SeedFile:
    """Read one seed file; :class:`SeedFileError` names it when it is not an article.

    The text of a PDF or Word file comes from ``known`` when it has the file's content hash,
    else it is extracted now.
    """
    source = relative_source(seeds_dir, path)
    size = path.stat().st_size
    if size > max_bytes:
        raise SeedFileError(
            f"seed file '{source}' is too large ({size:,} bytes; the limit is {max_bytes:,})"
        )
    data = path.read_bytes()
    if format_for(source) in EXTRACTED_FORMATS:
        return _read_extracted(source, path, data, known)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise SeedFileError(f"seed file '{source}' looks binary (NUL byte at offset {nul})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SeedFileError(
            f"seed file '{source}' is not UTF-8 text "
            f"(byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    if not text.strip().lstrip("\ufeff").strip():
        raise SeedFileError(f"seed file '{source}' is empty")
    return SeedFile(
        source=source,
        path=path,
        text=text,
        content_hash=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def _read_extracted(source: str, path: Path, data: bytes, known: KnownTexts | None) -> SeedFile:
    digest = hashlib.sha256(data).hexdigest()
    record = known(digest) if known is not None else None
    if record is None:
        try:
            got = EXTRACTIONS.get(source, data, digest)
        except UnsupportedDocumentError as exc:  # e.g. text named .pdf: skipped, not fatal
            raise SeedFileError(f"seed file {exc}") from None
        record = {"text": got.text, "title": got.title, "date": got.date}
    return SeedFile(
        source=source,
        path=path,
        text=str(record["text"]),
        content_hash=digest,
        meta_title=record.get("title"),
        meta_date=record.get("date"),
        size=len(data),
        extracted=True,
    )


def scan(
    seeds_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, known: KnownTexts | None = None
) -> tuple[list[SeedFile], list[SkippedFile]]:
    """Read every article under ``seeds_dir``; everything else is returned as skipped and logged.

    ``known`` gives the text extracted before from a PDF or Word file, by content hash.
    """
    if not seeds_dir.is_dir():
        raise SeedFileError(f"seeds folder '{seeds_dir}' does not exist or is not a folder")
    files: list[SeedFile] = []
    skipped: list[SkippedFile] = []
    for path, reason in iter_candidates(seeds_dir):
        if reason is None:
            try:
                files.append(read_seed(seeds_dir, path, max_bytes=max_bytes, known=known))
                continue
            except SeedFileError as exc:
                skipped.append(SkippedFile(relative_source(seeds_dir, path), str(exc)))
            except OSError as exc:
                skipped.append(
                    SkippedFile(relative_source(seeds_dir, path), f"cannot be read: {exc}")
                )
        else:
            source = relative_source(seeds_dir, path)
            skipped.append(SkippedFile(source, f"'{source}' {reason}"))
        log.warning("skipped %s", skipped[-1].reason)
    return files, skipped
