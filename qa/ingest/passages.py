"""Passages: the unit that is embedded, searched and cited, with exact provenance."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from qa.embed.base import Embedder
from qa.ingest.articles import Article
from qa.ingest.chunking import chunk_segments
from qa.ingest.sentences import split_sentences

#: A title longer than this many tokens is not prefixed to the embedded text of each passage.
MAX_TITLE_PREFIX_TOKENS = 48


@dataclass(frozen=True, slots=True)
class Passage:
    """A span of one article. ``text == seeds/source read as UTF-8 [start:end]`` holds exactly."""

    chunk_id: str
    source: str
    title: str | None
    date: str | None
    start: int
    end: int
    text: str
    #: Hash of exactly what was embedded (title prefix + text): equal hashes share a vector.
    embed_hash: str
    tokens: int
    #: Sentence spans relative to ``text``; each has a vector for answer extraction.
    sentences: tuple[tuple[int, int], ...] = ()

    def embed_text(self) -> str:
        """What the model embeds: the title gives every passage the article's context."""
        return embed_input(self.title, self.text)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the passage store."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Passage:
        """The inverse of :meth:`to_json`."""
        data["sentences"] = tuple((int(s), int(e)) for s, e in data.get("sentences", ()))
        return cls(**data)

    def sentence_spans_in_embed_text(self) -> list[tuple[int, int]]:
        """The sentence spans shifted to index into :meth:`embed_text`."""
        shift = len(self.embed_text()) - len(self.text)
        return [(s + shift, e + shift) for s, e in self.sentences]


def embed_input(title: str | None, text: str) -> str:
    """Title and text joined as the model sees them.

    The passage that already opens with the title is not prefixed again: a doubled title made
    the first passage of every article match any question about that article.
    """
    return f"{title}\n{text}" if title and not text.startswith(title) else text


def _digest(*parts: str, size: int = 16) -> str:
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def make_passages(
    article: Article, embedder: Embedder, *, chunk_tokens: int, chunk_overlap: int
) -> list[Passage]:
    """Chunk one article into passages that fit the model without truncation."""
    title = article.title
    title_tokens = 0
    if title:
        title_tokens = embedder.count_tokens([embed_input(title, "")])[0]
        if title_tokens > MAX_TITLE_PREFIX_TOKENS:
            title, title_tokens = None, 0
    limit = embedder.max_tokens - title_tokens
    chunks = chunk_segments(
        article.text,
        article.segments,
        embedder,
        target=chunk_tokens,
        overlap=chunk_overlap,
        limit=limit,
    )
    passages = []
    for chunk in chunks:
        text = article.text[chunk.start : chunk.end]
        prefixed = embed_input(title, text) != text
        passages.append(
            Passage(
                chunk_id=_digest(
                    article.source, article.content_hash, f"{chunk.start}:{chunk.end}"
                ),
                source=article.source,
                title=article.title,
                date=article.date,
                start=chunk.start,
                end=chunk.end,
                text=text,
                embed_hash=_digest(embed_input(title, text), size=20),
                tokens=chunk.tokens + (title_tokens if prefixed else 0),
                sentences=tuple(
                    (s - chunk.start, e - chunk.start)
                    for s, e in split_sentences(article.text, chunk.start, chunk.end)
                ),
            )
        )
    return passages
