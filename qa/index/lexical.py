"""BM25 over segments: per-segment postings, corpus-wide statistics, English stemming.

Numbers and names matter in news ("535", "Little Rock"), so tokens keep digits and
single characters, and only common English stop words are dropped.

Each segment stores its postings (term hash -> rows and term frequencies) and document lengths;
the document frequencies and average length that BM25 needs are summed over the live rows of
every segment at query time, so a passage scores the same whatever segment holds it. Terms are
kept as 64-bit hashes in a sorted array: looking one up is a binary search in a memory-mapped
file, with no vocabulary to load.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

_TOKEN = re.compile(r"\w+")
#: The Lucene variant of BM25 with the usual parameters (as bm25s, which this replaced).
K1 = 1.5
B = 0.75


@lru_cache(maxsize=1)
def _stemmer() -> object:
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens without stop words."""
    stop = _stopwords()
    words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
    return list(_stemmer().stemWords(words))  # type: ignore[attr-defined]


def known_word(word: str, has: Callable[[str], bool]) -> bool:
    """Whether a word of a question is in a vocabulary (``has(stemmed term)``), allowing for
    derived forms: 'Chilean' is known when 'chile' is, since a prefix of at least 3 letters of
    each stem counts. A word that is all stop words (the 'The' of a title) is known."""
    return all(
        any(has(stem[:n]) for n in range(len(stem), min(3, len(stem)) - 1, -1))
        for stem in tokenize(word)
    )


@lru_cache(maxsize=1 << 16)
def term_hash(term: str) -> int:
    """A stable 64-bit id of a term (collisions are negligible at vocabulary sizes)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass(frozen=True, slots=True)
class Postings:
    """One segment's inverted index. Term ``terms[i]`` occurs in rows
    ``rows[ptr[i]:ptr[i + 1]]`` with frequencies ``tf[ptr[i]:ptr[i + 1]]``."""

    terms: npt.NDArray[np.uint64]
    ptr: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int32]
    tf: npt.NDArray[np.float32]
    #: Tokens per row.
    doclen: npt.NDArray[np.int32]

    def find(self, h: int) -> int:
        """Position of term hash ``h`` in ``terms``, or -1."""
        i = int(np.searchsorted(self.terms, np.uint64(h)))
        return i if i < len(self.terms) and int(self.terms[i]) == h else -1

    def df(self, h: int) -> int:
        """Rows of this segment (live or not) that contain the term."""
        i = self.find(h)
        return 0 if i < 0 else int(self.ptr[i + 1] - self.ptr[i])


def _assemble(
    hashes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int32],
    tf: npt.NDArray[np.float32],
    doclen: npt.NDArray[np.int32],
) -> Postings:
    order = np.lexsort((rows, hashes))
    hashes, rows, tf = hashes[order], rows[order], tf[order]
    terms, starts = np.unique(hashes, return_index=True)
    ptr = np.append(starts, len(hashes)).astype(np.int64)
    return Postings(terms.astype(np.uint64), ptr, rows.astype(np.int32), tf, doclen)


def build_postings(texts: Iterable[str]) -> Postings:
    """Postings of ``texts`` (title + passage, as embedded), row i for text i."""
    hashes: list[int] = []
    rows: list[int] = []
    tfs: list[int] = []
    lengths: list[int] = []
    for row, text in enumerate(texts):
        tokens = tokenize(text)
        lengths.append(len(tokens))
        for term, n in Counter(tokens).items():
            hashes.append(term_hash(term))
            rows.append(row)
            tfs.append(n)
    return _assemble(
        np.asarray(hashes, dtype=np.uint64),
        np.asarray(rows, dtype=np.int32),
        np.asarray(tfs, dtype=np.float32),
        np.asarray(lengths, dtype=np.int32),
    )


def merge_postings(parts: Sequence[tuple[Postings, npt.NDArray[np.int64]]]) -> Postings:
    """One segment's postings from several: ``(postings, new_row)`` where ``new_row[r]`` is the
    row that old row r becomes in the merged segment, or -1 to drop it (a tombstone)."""
    hashes, rows, tfs, lengths = [], [], [], []
    for post, new_row in parts:
        owner = np.repeat(post.terms, np.diff(post.ptr))
        mapped = new_row[post.rows]
        keep = mapped >= 0
        hashes.append(owner[keep])
        rows.append(mapped[keep].astype(np.int32))
        tfs.append(post.tf[keep])
        lengths.append(post.doclen[new_row >= 0])
    return _assemble(
        np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
        np.concatenate(rows) if rows else np.zeros(0, np.int32),
        np.concatenate(tfs) if tfs else np.zeros(0, np.float32),
        np.concatenate(lengths) if lengths else np.zeros(0, np.int32),
    )


@dataclass(frozen=True, slots=True)
class LexicalPart:
    """One segment as BM25 sees it: its postings, which rows are dead, and the dead rows'
    term counts (subtracted so that document frequencies count live rows only)."""

    postings: Postings
    dead: npt.NDArray[np.bool_]
    dead_df: Counter[int]


def dead_term_counts(texts: Iterable[str]) -> Counter[int]:
    """Document frequency of each term hash among ``texts`` (the tombstoned rows)."""
    out: Counter[int] = Counter()
    for text in texts:
        out.update({term_hash(t) for t in tokenize(text)})
    return out


class CorpusLexical:
    """BM25 across segments with corpus-wide statistics over live rows."""

    def __init__(self, parts: Sequence[LexicalPart]) -> None:
        self.parts = list(parts)
        live = sum(int((~p.dead).sum()) for p in self.parts)
        tokens = sum(
            int(p.postings.doclen.sum()) - int(p.postings.doclen[p.dead].sum()) for p in self.parts
        )
        self.size = live
        self.avgdl = tokens / live if live else 0.0

    def df(self, h: int) -> int:
        """Live rows of the corpus that contain term hash ``h``."""
        return sum(p.postings.df(h) - p.dead_df.get(h, 0) for p in self.parts)

    def knows(self, term: str) -> bool:
        """Whether a word of a question occurs in the index (:func:`known_word`)."""
        return known_word(term, lambda t: self.df(term_hash(t)) > 0)

    def part_scores(self, question: str) -> list[npt.NDArray[np.float32]]:
        """BM25 score of every local row of each segment (zero for dead rows and no match);
        only the postings of the question's terms are read."""
        out = [np.zeros(len(p.postings.doclen), dtype=np.float32) for p in self.parts]
        if not self.size:
            return out
        for h in {term_hash(t) for t in tokenize(question)}:
            df = self.df(h)
            if df <= 0:
                continue
            idf = math.log(1.0 + (self.size - df + 0.5) / (df + 0.5))
            for part, acc in zip(self.parts, out, strict=True):
                i = part.postings.find(h)
                if i < 0:
                    continue
                lo, hi = int(part.postings.ptr[i]), int(part.postings.ptr[i + 1])
                rows = part.postings.rows[lo:hi]
                tf = part.postings.tf[lo:hi]
                norm = K1 * (1.0 - B + B * part.postings.doclen[rows] / self.avgdl)
                acc[rows] += (idf * tf / (tf + norm)).astype(np.float32)
        for part, acc in zip(self.parts, out, strict=True):
            acc[part.dead] = 0.0
        return out
