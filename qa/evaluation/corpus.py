"""A dataset as a seeds folder: temporary seed files, an index built over them, and its cache."""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from qa.config import Settings
from qa.embed.registry import model_id_for
from qa.index.builder import build_index

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[\w-][\w.-]{0,100}")


def file_name(doc_id: str, n: int) -> str:
    """A seed file stem for a document id: the id itself when it is a safe file name."""
    return doc_id if _SAFE_NAME.fullmatch(doc_id) else f"doc-{n:07d}"


def temporary_seeds(documents: Iterable[tuple[str, str]]) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder with ``seeds/NAME.txt`` per ``(name, text)``, plus room for an index."""
    tmp = tempfile.TemporaryDirectory(prefix="seedqa-eval-")
    seeds = Path(tmp.name) / "seeds"
    seeds.mkdir()
    for name, text in documents:
        (seeds / f"{name}.txt").write_text(text, encoding="utf-8")
    return tmp


@contextmanager
def indexed(
    documents: Sequence[tuple[str, str]], settings: Settings, cache: Path | None
) -> Iterator[tuple[Settings, float]]:
    """Settings for an index of ``documents`` (``(stem, text)``) and the seconds it took.

    With ``cache`` the index lives there and is updated incrementally, so later runs with the
    same documents, model and chunking cost nothing; without it, it is temporary.
    """
    with temporary_seeds(documents) as tmp:
        index_dir = Path(tmp) / "index" if cache is None else cache
        local = settings.replace(seeds_dir=Path(tmp) / "seeds", index_dir=index_dir)
        started = time.perf_counter()
        summary = build_index(local, progress=True, wait=600.0)
        seconds = round(time.perf_counter() - started, 1)
        log.info("benchmark index %s: %s", index_dir, summary.to_json())
        yield local, seconds


def cache_folder(root: Path, dataset: str, settings: Settings) -> Path:
    """The index folder under ``root`` for one dataset, model and chunking."""
    model = re.sub(r"[^\w.-]+", "_", model_id_for(settings.model))
    return root / f"{dataset}-{model}-c{settings.chunk_tokens}-o{settings.chunk_overlap}"
