"""Safe document names: what a client may call a file it writes into the seeds folder.

A name is a relative POSIX path such as ``news/2023-05-rotary.pdf``. Everything that could
reach outside the folder, hide a file from the scan, or mean something special to an operating
system is refused with a message naming the problem.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePosixPath

from qa.errors import InvalidDocumentNameError
from qa.ingest.extract import format_for

#: Longest accepted name, in characters (ext4 allows 255 bytes per folder or file name).
MAX_NAME_CHARS = 200
_MAX_PART_BYTES = 255
#: Windows device names: a file called ``con.txt`` cannot be opened there.
_DEVICE = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def _refuse(source: str, why: str) -> InvalidDocumentNameError:
    return InvalidDocumentNameError(f"document name {source!r} {why}")


def validate_name(source: str) -> str:
    """``source`` if it is a safe document name, else :class:`InvalidDocumentNameError`.

    The suffix is checked too (:class:`~qa.errors.UnsupportedDocumentError` names the allowed
    ones).
    """
    if not source:
        raise _refuse(source, "is empty")
    if len(source) > MAX_NAME_CHARS:
        raise _refuse(source[:40] + "...", f"is longer than {MAX_NAME_CHARS} characters")
    for i, ch in enumerate(source):
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise _refuse(source, f"contains a control character (U+{ord(ch):04X}) at {i}")
    if "\\" in source:
        raise _refuse(source, "contains a backslash; use '/' between folders")
    if source.startswith("/") or re.match(r"^[A-Za-z]:", source):
        raise _refuse(source, "is an absolute path; give a path relative to the seeds folder")
    for part in source.split("/"):
        if part in ("", ".", ".."):
            raise _refuse(source, f"has a {part or 'empty'!r} path component")
        if part.startswith("."):
            raise _refuse(source, f"names a hidden file or folder ({part!r})")
        if part != part.strip() or part.endswith("."):
            raise _refuse(source, f"has a component with trailing spaces or dots ({part!r})")
        if _DEVICE.match(part):
            raise _refuse(source, f"uses the reserved device name {part!r}")
        if len(part.encode("utf-8")) > _MAX_PART_BYTES:
            raise _refuse(source, f"has a component longer than {_MAX_PART_BYTES} bytes")
    format_for(source)
    return source


def seed_path(seeds_dir: Path, source: str) -> Path:
    """Where document ``source`` lives under ``seeds_dir``; refuses links that lead elsewhere.

    The file need not exist. Every existing folder on the way must be a real folder inside
    ``seeds_dir`` (not a symlink), so writing to the result cannot land outside it.
    """
    validate_name(source)
    root = seeds_dir.resolve()
    path = root
    parts = PurePosixPath(source).parts
    for part in parts[:-1]:
        path = path / part
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise _refuse(source, f"goes through '{part}', which is not a plain folder")
    path = path / parts[-1]
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise _refuse(source, "names something that is not a regular file")
    return path
