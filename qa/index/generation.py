"""A loaded index generation: its segments, tombstones and manifest, searched as one corpus.

Rows are numbered over the live passages of all segments in manifest order (tombstoned rows
have no number), so ``passages[row]``, ``vector(row)`` and ``sentence_scores(row, …)`` mean
the same passage. Loading opens each segment (memory maps) and reads the tombstones: its cost
grows with the number of segments and deletions, not with the number of passages or documents
(documents are read from the segments' tables when asked for, :mod:`qa.index.doctable`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from qa.config import Settings
from qa.errors import IndexCorruptError
from qa.index import storage
from qa.index.doctable import DocumentTable, LiveDocuments
from qa.index.lexical import CorpusLexical, LexicalPart, dead_term_counts, tokenize
from qa.index.segments import REBUILD_HINT, Segment, open_segment
from qa.index.tombstones import SegmentEntry, read_segment_entries
from qa.index.vectors import search_segment, tune_for_search
from qa.ingest.passages import Passage

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LiveSegment:
    """A segment as one generation sees it: where its live rows start, which rows are dead."""

    segment: Segment
    base: int
    dead: npt.NDArray[np.int64]  # sorted local rows
    dead_mask: npt.NDArray[np.bool_]
    live_local: npt.NDArray[np.int64] | None  # local row of each live row, when any is dead
    docs: LiveDocuments

    @property
    def live(self) -> int:
        """Live rows."""
        return self.segment.rows - len(self.dead)

    def to_global(self, local: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Generation rows of live local rows."""
        if not len(self.dead):
            return local + self.base
        return local - np.searchsorted(self.dead, local) + self.base

    def to_local(self, row: int) -> int:
        """The local row of generation row ``row`` (which must fall in this segment)."""
        offset = row - self.base
        return offset if self.live_local is None else int(self.live_local[offset])


def _live_segment(seg: Segment, base: int, entry: SegmentEntry) -> LiveSegment:
    dead = np.unique(entry.dead_rows)
    dead_docs = np.unique(entry.dead_docs)
    n_docs = len(seg.documents)
    if (len(dead) and (dead[0] < 0 or dead[-1] >= seg.rows)) or (
        len(dead_docs) and (dead_docs[0] < 0 or dead_docs[-1] >= n_docs)
    ):
        raise IndexCorruptError(
            f"a tombstone of segment '{seg.folder}' is outside its {seg.rows} rows or "
            f"{n_docs} documents; {REBUILD_HINT}"
        )
    mask = np.zeros(seg.rows, dtype=bool)
    mask[dead] = True
    doc_mask = np.zeros(n_docs, dtype=bool)
    doc_mask[dead_docs] = True
    live_local = np.flatnonzero(~mask).astype(np.int64) if len(dead) else None
    return LiveSegment(
        seg, base, dead, mask, live_local, LiveDocuments(seg.id, seg.documents, doc_mask)
    )


class SourceRows(Mapping[str, Sequence[int]]):
    """Generation rows of each live document's passages, by source, computed when asked."""

    def __init__(self, gen: IndexGeneration) -> None:
        self._gen = gen

    def __getitem__(self, source: str) -> Sequence[int]:
        found = self._gen.documents.locate(source)
        if found is None:
            raise KeyError(source)
        ls = self._gen.segments[found[0]]
        first, count = (int(x) for x in ls.segment.documents.rows[found[1]])
        # A live document's rows are all live: only the tombstones before it shift it.
        start = ls.base + first - (int(np.searchsorted(ls.dead, first)) if len(ls.dead) else 0)
        return range(start, start + count)

    def __iter__(self) -> Iterator[str]:
        return iter(self._gen.documents)

    def __len__(self) -> int:
        return len(self._gen.documents)


class PassageView(Sequence[Passage]):
    """The live passages of a generation, parsed when read."""

    def __init__(self, gen: IndexGeneration) -> None:
        self._gen = gen

    def __len__(self) -> int:
        return self._gen.size

    @overload
    def __getitem__(self, row: int) -> Passage: ...
    @overload
    def __getitem__(self, row: slice) -> Sequence[Passage]: ...
    def __getitem__(self, row: int | slice) -> Passage | Sequence[Passage]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if not -self._gen.size <= row < self._gen.size:
            raise IndexError(row)
        ls, local = self._gen.locate(row % self._gen.size)
        return ls.segment.passage(local)

    def __iter__(self) -> Iterator[Passage]:
        for ls in self._gen.segments:
            for local in range(ls.segment.rows):
                if not ls.dead_mask[local]:
                    yield ls.segment.passage(local)


@dataclass(eq=False)
class IndexGeneration:
    """One immutable generation. Queries hold a reference for their duration."""

    generation: str
    path: Path
    manifest: dict[str, Any]
    segments: list[LiveSegment]
    lexical: CorpusLexical
    size: int
    _documents: DocumentTable
    _bases: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    _article_terms: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _chrome_vocabulary: frozenset[str] | None = field(default=None, repr=False)

    @property
    def passages(self) -> PassageView:
        """The live passages, row ``i`` for generation row ``i``."""
        return PassageView(self)

    @property
    def documents(self) -> DocumentTable:
        """Per-source metadata recorded at build time (read from the segments when asked)."""
        return self._documents

    @property
    def by_source(self) -> SourceRows:
        """source -> generation rows of its passages, in order."""
        return SourceRows(self)

    @property
    def entries(self) -> list[SegmentEntry]:
        """The segments as this generation lists them, with their tombstones."""
        return [
            SegmentEntry(
                ls.segment.id,
                ls.segment.rows,
                len(ls.docs.table),
                ls.dead,
                np.flatnonzero(ls.docs.dead).astype(np.int64),
            )
            for ls in self.segments
        ]

    def document_rows(self, keep: Callable[[str, str | None], bool]) -> npt.NDArray[np.int64]:
        """Sorted generation rows of the live documents for which ``keep(source, date)`` holds,
        from the segments' columns (no record parsed, no lookup per document)."""
        out = []
        for ls in self.segments:
            live = ls.docs.live_indices()
            table = ls.docs.table
            pairs = zip(table.sources[live].tolist(), table.dates[live].tolist(), strict=True)
            mask = [keep(s.decode("utf-8"), d.decode("utf-8") or None) for s, d in pairs]
            spans = table.rows[live[np.asarray(mask, dtype=bool)]] if mask else table.rows[:0]
            counts = spans[:, 1]
            # Each document's rows are [first, first + count): expanded without a Python loop.
            local = np.repeat(spans[:, 0] - np.cumsum(counts) + counts, counts)
            out.append(ls.to_global(local + np.arange(len(local), dtype=np.int64)))
        return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)

    def locate(self, row: int) -> tuple[LiveSegment, int]:
        """The segment holding generation row ``row`` and the local row there."""
        ls = self.segments[int(np.searchsorted(self._bases, row, side="right")) - 1]
        return ls, ls.to_local(row)

    def vector(self, row: int) -> npt.NDArray[np.float32]:
        """The unit vector of passage ``row``."""
        ls, local = self.locate(row)
        return np.asarray(ls.segment.vectors[local], dtype=np.float32)

    def dense_search(
        self, query: npt.NDArray[np.float32], k: int, *, allowed: npt.NDArray[np.int64] | None
    ) -> list[tuple[int, float]]:
        """The ``k`` best (row, cosine) over every segment, best first; ties by row."""
        hits: list[tuple[int, float]] = []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        for ls in self.segments:
            mask = ls.dead_mask
            if allowed is not None:
                mask = np.ones(ls.segment.rows, dtype=bool)
                inside = allowed[(allowed >= ls.base) & (allowed < ls.base + ls.live)]
                mask[[ls.to_local(int(r)) for r in inside]] = False
            local, scores = search_segment(ls.segment, q, k, excluded=mask)
            rows = ls.to_global(local)
            hits.extend(zip((int(r) for r in rows), (float(s) for s in scores), strict=True))
        hits.sort(key=lambda h: (-h[1], h[0]))
        return hits[:k]

    def lexical_search(
        self, question: str, k: int, *, allowed: npt.NDArray[np.int64] | None
    ) -> list[tuple[int, float]]:
        """The ``k`` best (row, BM25 score > 0), best first; ties by row. Only the rows that
        contain a word of the question are scored."""
        hits: list[tuple[int, float]] = []
        for ls, scores in zip(self.segments, self.lexical.part_scores(question), strict=True):
            if allowed is not None:
                keep = np.zeros(len(scores), dtype=bool)
                inside = allowed[(allowed >= ls.base) & (allowed < ls.base + ls.live)]
                keep[[ls.to_local(int(r)) for r in inside]] = True
                scores = np.where(keep, scores, np.float32(0.0))
            local = np.flatnonzero(scores > 0)
            if len(local) > k:
                kth = np.partition(scores[local], len(local) - k)[len(local) - k]
                local = local[scores[local] >= kth]
            rows = ls.to_global(local.astype(np.int64))
            hits.extend(zip((int(r) for r in rows), (float(s) for s in scores[local]), strict=True))
        hits.sort(key=lambda h: (-h[1], h[0]))
        return hits[:k]

    def lexical_scores(self, question: str) -> npt.NDArray[np.float32]:
        """BM25 score of every live passage, by generation row."""
        parts = self.lexical.part_scores(question)
        out = [p[~ls.dead_mask] for p, ls in zip(parts, self.segments, strict=True)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def article_terms(self, source: str) -> frozenset[str]:
        """Every (stemmed) term of one article's passages and title, cached per generation."""
        cached = self._article_terms.get(source)
        if cached is None:
            terms: set[str] = set()
            for row in self.by_source.get(source, []):
                p = self.passages[row]
                terms.update(tokenize(f"{p.title or ''} {p.text}"))
            terms.update(dict(self.documents.get(source, {})).get("chrome_terms", []))
            cached = self._article_terms[source] = frozenset(terms)
        return cached

    def knows(self, word: str) -> bool:
        """Whether any article mentions ``word`` (in indexed text or in its site chrome)."""
        if self._chrome_vocabulary is None:
            # Every chrome term of each segment: a deleted document's stay until a merge.
            self._chrome_vocabulary = frozenset(
                t for ls in self.segments for t in ls.segment.documents.chrome_terms()
            )
        return self.lexical.knows(word) or set(tokenize(word)) <= self._chrome_vocabulary

    def sentence_scores(self, row: int, vector: npt.NDArray[np.float32]) -> list[float]:
        """Cosine of each sentence of passage ``row`` with the question ``vector``."""
        ls, local = self.locate(row)
        seg = ls.segment
        lo, hi = int(seg.sentence_start[local]), int(seg.sentence_start[local + 1])
        block = np.asarray(seg.sentence_vectors[lo:hi], dtype=np.float32)
        return [float(x) for x in block @ vector.reshape(-1)]

    @property
    def dimension(self) -> int:
        """The vectors' dimension, as the manifest records the model."""
        return int(self.manifest["model"]["dimension"])

    @property
    def built_at(self) -> str | None:
        """When this generation was built (ISO 8601, UTC)."""
        value = self.manifest.get("built_at")
        return str(value) if value is not None else None


def load_index(
    settings: Settings, *, verify: bool = True, full_check: bool | None = None
) -> IndexGeneration:
    """Load the live generation: compatibility, then each segment's checks (sizes always;
    checksums with ``verify`` for segments small enough, or all with ``full_check``)."""
    folder, manifest = storage.read_live_manifest(settings, verify=verify)
    segments: list[LiveSegment] = []
    base = 0
    for entry in read_segment_entries(folder, manifest):
        full = full_check if full_check is not None else (None if verify else False)
        seg = open_segment(settings.index_dir, entry.id, full_check=full)
        tune_for_search(seg.faiss_index, ef_search=settings.hnsw_ef_search)
        ls = _live_segment(seg, base, entry)
        segments.append(ls)
        base += ls.live
    parts = [
        LexicalPart(
            ls.segment.postings,
            ls.dead_mask,
            dead_term_counts(ls.segment.passage(int(r)).embed_text() for r in ls.dead),
        )
        for ls in segments
    ]
    gen = IndexGeneration(
        generation=folder.name,
        path=folder,
        manifest=manifest,
        segments=segments,
        lexical=CorpusLexical(parts),
        size=base,
        _documents=DocumentTable([ls.docs for ls in segments]),
        _bases=np.asarray([ls.base for ls in segments], dtype=np.int64),
    )
    if manifest.get("passages") != base:
        raise IndexCorruptError(
            f"index '{folder}' lists {manifest.get('passages')} passages but its segments hold "
            f"{base}; {REBUILD_HINT}"
        )
    log.info(
        "loaded index generation %s (%d passages, %d segments)", folder.name, base, len(segments)
    )
    return gen


def read_documents(index_dir: Path, generation: str) -> DocumentTable:
    """The documents of any kept generation (not only the live one), e.g. to check answers
    against the generation that gave them."""
    folder = storage.generations_dir(index_dir) / generation
    manifest = storage.read_manifest(folder)
    parts = []
    for entry in read_segment_entries(folder, manifest):
        table = open_segment(index_dir, entry.id, full_check=False).documents
        dead = np.zeros(len(table), dtype=bool)
        dead[entry.dead_docs] = True
        parts.append(LiveDocuments(entry.id, table, dead))
    return DocumentTable(parts)
