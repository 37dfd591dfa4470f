"""Finding and reading seed files: which files are articles, and their exact decoded text.

Offsets everywhere in seedqa index into ``path.read_bytes().decode("utf-8")``, so this module
decodes exactly that way (a UTF-8 BOM stays in the text as U+FEFF and is simply not indexed).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qa.errors import SeedFileError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm"})
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
            target = _link_target(path) if path.is_symlink() else path
            if name.startswith("."):
                yield path, "is a hidden file"
            elif path.suffix.lower() not in TEXT_SUFFIXES:
                yield path, f"is not a text file (suffix {path.suffix or '(none)'!r})"
            elif target is None:
                yield path, "is a symlink that loops or leads nowhere"
            elif path.is_symlink() and not target.is_relative_to(root):
                yield path, "is a symlink that points outside the seeds folder"
            elif not path.is_file():
                yield path, "is not a regular file"
            else:
                yield path, None


def read_seed(seeds_dir: Path, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> SeedFile:
    """Read one seed file; :class:`SeedFileError` names it when it is not an article."""
    source = relative_source(seeds_dir, path)
    size = path.stat().st_size
    if size > max_bytes:
        raise SeedFileError(
            f"seed file '{source}' is too large ({size:,} bytes; the limit is {max_bytes:,})"
        )
    data = path.read_bytes()
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
        source=source, path=path, text=text, content_hash=hashlib.sha256(data).hexdigest()
    )


def scan(
    seeds_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[SeedFile], list[SkippedFile]]:
    """Read every article under ``seeds_dir``; everything else is returned as skipped and logged."""
    if not seeds_dir.is_dir():
        raise SeedFileError(f"seeds folder '{seeds_dir}' does not exist or is not a folder")
    files: list[SeedFile] = []
    skipped: list[SkippedFile] = []
    for path, reason in iter_candidates(seeds_dir):
        if reason is None:
            try:
                files.append(read_seed(seeds_dir, path, max_bytes=max_bytes))
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
