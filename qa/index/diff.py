"""What changed in the seeds folder since the live generation, and what a build did about it.

Content hashes decide: an unchanged file keeps its document record and rows (in the segment
that holds them); an edited, new or renamed file is parsed and chunked again; the rows and
records of edited and deleted files become tombstones. :class:`BuildSummary` counts the
changes by document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from qa.config import Settings
from qa.embed.base import Embedder
from qa.embed.registry import load_embedder
from qa.index.lexical import tokenize
from qa.ingest.articles import Article, parse_article
from qa.ingest.passages import Passage, make_passages
from qa.ingest.seeds import SeedFile, SkippedFile


@dataclass
class BuildSummary:
    """What a build did. Counts are documents, except ``passages`` and ``embedded``."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    renamed: int = 0
    skipped: int = 0
    passages: int = 0
    embedded: int = 0
    took_ms: float = 0.0
    generation: str | None = None
    changed: bool = False
    #: Whether the merge policy (or ``--merge``) compacted segments after the build.
    merged: bool = False
    #: Every generation this build made live, in order (two when a merge followed).
    published: list[str] = field(default_factory=list)
    skipped_files: list[SkippedFile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The summary printed by ``qa index --json`` and returned by ``POST /api/reindex``."""
        out = asdict(self)
        out["skipped_files"] = [asdict(s) for s in self.skipped_files]
        return out


def collect_passages(
    settings: Settings,
    files: list[SeedFile],
    vanished: set[str],
    previous: Mapping[str, str],
    total: int,
    embedder: Embedder | None,
    summary: BuildSummary,
) -> tuple[list[Passage], dict[str, dict[str, Any]], set[str], Embedder | None]:
    """The passages and records of new or edited ``files``, and the previous documents whose
    rows are now tombstones, counting the changes in ``summary``. ``vanished`` are the sources
    no longer in the seeds folder; ``previous`` the content hash in the live generation of (at
    least) the sources of ``files`` and ``vanished``; ``total`` the articles in the folder.
    Only new or edited files are parsed and chunked (which loads the embedder, for its
    tokenizer)."""
    removed_hashes = {previous[s]: s for s in sorted(vanished) if s in previous}
    gone = {s for s in vanished if s in previous}
    passages: list[Passage] = []
    documents: dict[str, dict[str, Any]] = {}
    for seed in files:
        before = previous.get(seed.source)
        if before == seed.content_hash:
            continue
        if before is not None:
            summary.updated += 1
            gone.add(seed.source)
        elif seed.content_hash in removed_hashes:
            summary.renamed += 1
            del removed_hashes[seed.content_hash]
        else:
            summary.added += 1
        if embedder is None:
            embedder = load_embedder(settings)
        article = parse_article(seed)
        new = make_passages(
            article,
            embedder,
            chunk_tokens=settings.chunk_tokens,
            chunk_overlap=settings.chunk_overlap,
        )
        passages.extend(new)
        documents[seed.source] = document_record(seed, article, new)
    summary.removed = len(removed_hashes)
    summary.unchanged = total - summary.added - summary.updated - summary.renamed
    return passages, documents, gone, embedder


def document_record(seed: SeedFile, article: Article, passages: list[Passage]) -> dict[str, Any]:
    """What the segment's documents table keeps of one document (with the text extracted from
    a PDF or Word file, so that its offsets can be shown against it later)."""
    record: dict[str, Any] = {
        "hash": seed.content_hash,
        "title": article.title,
        "date": article.date,
        "publisher": article.publisher,
        "bytes": seed.size if seed.size is not None else len(seed.text.encode("utf-8")),
        "passages": [p.chunk_id for p in passages],
        # Words of the site chrome left out of the index: small, and lets a question that
        # names the site ("the CNUS article") be recognised as about this article.
        "chrome_terms": sorted({t for s, e in article.chrome for t in tokenize(article.text[s:e])}),
    }
    if seed.extracted:
        record["extracted"] = {"text": seed.text, "title": seed.meta_title, "date": seed.meta_date}
    return record
