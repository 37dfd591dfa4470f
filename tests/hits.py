"""A retrieved passage built by hand, for tests of the answer path."""

from __future__ import annotations

from qa.ask.retrieval import Hit
from qa.ingest.passages import Passage
from qa.ingest.sentences import split_sentences


def passage_hit(text: str, *, start: int = 0) -> Hit:
    """The first hit of a question: one passage of ``text``, starting at character ``start``
    of its source file, split into sentences as the index splits them."""
    passage = Passage(
        chunk_id="c0",
        source="a.txt",
        title="Expo",
        date=None,
        start=start,
        end=start + len(text),
        text=text,
        embed_hash="h",
        tokens=12,
        sentences=tuple(split_sentences(text)),
    )
    return Hit(rank=1, row=0, passage=passage, score=1.0, dense_score=0.5, lexical_score=3.0)
