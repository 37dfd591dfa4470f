"""Sentence-aware chunking measured in the embedding model's own tokens.

Chunks are built from whole sentences inside one indexable segment of one article, up to a
target size, with a bounded overlap of whole sentences between neighbours. A sentence longer
than the model's limit is cut at token boundaries, so no passage is ever silently truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from qa.ingest.sentences import split_sentences


class TokenCounter(Protocol):
    """What chunking needs from a tokenizer."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def token_offsets(self, text: str) -> list[tuple[int, int]]: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """A span ``text[start:end]`` of an article and its size in model tokens."""

    start: int
    end: int
    tokens: int


@dataclass(frozen=True, slots=True)
class _Unit:
    start: int
    end: int
    tokens: int


def chunk_segments(
    text: str,
    segments: Sequence[tuple[int, int]],
    counter: TokenCounter,
    *,
    target: int,
    overlap: int,
    limit: int,
) -> list[Chunk]:
    """Chunks of ``text`` covering every sentence in ``segments``.

    ``target`` is the size aimed for, ``limit`` the hard maximum (both in tokens), and
    ``overlap`` the most tokens two neighbouring chunks share.
    """
    if limit < 1:
        raise ValueError(f"token limit must be positive, got {limit}")
    target = min(target, limit)
    chunks: list[Chunk] = []
    for seg_start, seg_end in segments:
        sentences = split_sentences(text, seg_start, seg_end)
        counts = counter.count_tokens([text[s:e] for s, e in sentences])
        units: list[_Unit] = []
        for (s, e), n in zip(sentences, counts, strict=True):
            if n == 0:
                continue
            if n <= limit:
                units.append(_Unit(s, e, n))
            else:
                units.extend(_split_long(text, s, e, counter, limit))
        chunks.extend(_pack(units, target=target, overlap=overlap))
    return chunks


def _split_long(text: str, start: int, end: int, counter: TokenCounter, limit: int) -> list[_Unit]:
    """Cut one over-long sentence into pieces of at most ``limit`` tokens, at word boundaries."""
    sentence = text[start:end]
    offsets = counter.token_offsets(sentence)
    pieces: list[_Unit] = []
    i = 0
    while i < len(offsets):
        j = min(i + limit, len(offsets))
        if j < len(offsets):
            # Back off to a token that ends a word, so a word is never cut in two.
            k = j
            while k > i + 1 and offsets[k][0] == offsets[k - 1][1]:
                k -= 1
            if k > i + 1:
                j = k
        while True:
            s, e = start + offsets[i][0], start + offsets[j - 1][1]
            n = counter.count_tokens([text[s:e]])[0]
            if n <= limit or j - i == 1:
                break
            j -= 1  # re-tokenising the cut text gave more tokens: take one less
        pieces.append(_Unit(s, e, n))
        i = j
    return pieces


def _pack(units: list[_Unit], *, target: int, overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j, total = i, units[i].tokens
        while j + 1 < len(units) and total + units[j + 1].tokens <= target:
            j += 1
            total += units[j].tokens
        chunks.append(Chunk(units[i].start, units[j].end, total))
        if j == len(units) - 1:
            break
        # Start the next chunk with the last sentences of this one, up to `overlap` tokens.
        k, shared = j + 1, 0
        while k - 1 > i and shared + units[k - 1].tokens <= overlap:
            k -= 1
            shared += units[k].tokens
        i = k
    return chunks
