"""Chunk invariants, property-based: offsets round-trip, full coverage, bounded overlap, size."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.embed.base import Embedder
from qa.embed.fake import FakeEmbedder
from qa.embed.registry import load_embedder
from qa.ingest.articles import parse_article
from qa.ingest.chunking import chunk_segments
from qa.ingest.passages import make_passages
from qa.ingest.seeds import SeedFile, read_seed
from qa.ingest.sentences import split_sentences

from .conftest import SEEDS

WORDS = st.sampled_from(
    [
        "the",
        "city",
        "of",
        "Chongqing",
        "signed",
        "535",
        "deals",
        "U.S.",
        "Dr.",
        "Co.,",
        "Ltd.",
        "trade",
        "“quoted”",
        "Türkiye",
        "中文",
        "e.g.",
        "déjà-vu",
        "2023",
        "$760",
        "billion",
        "Little",
        "Rock",
    ]
)
SENTENCE = st.lists(WORDS, min_size=1, max_size=40).map(" ".join).map(lambda s: s + ".")
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=8).map(" ".join)
ARTICLE = st.lists(PARAGRAPH, min_size=1, max_size=6).map("\n\n".join)
FAKE = FakeEmbedder(max_seq_length=64)


def _article(text: str):
    seed = SeedFile(source="a.txt", path=Path("a.txt"), text=text, content_hash="h")
    return parse_article(seed)


def check_invariants(text: str, embedder: Embedder, *, target: int, overlap: int) -> None:
    art = _article(text)
    limit = embedder.max_tokens
    chunks = chunk_segments(
        art.text, art.segments, embedder, target=target, overlap=overlap, limit=limit
    )
    for c in chunks:
        # Offsets round-trip and no chunk exceeds the model's limit.
        assert embedder.count_tokens([text[c.start : c.end]]) == [c.tokens]
        assert c.tokens <= limit
        # A chunk never leaves its segment (so never mixes in chrome or another article).
        assert any(s <= c.start and c.end <= e for s, e in art.segments)
    # Every indexable character lies in some chunk; every sentence that fits lies in one chunk.
    for seg_start, seg_end in art.segments:
        for s, e in split_sentences(text, seg_start, seg_end):
            fits = embedder.count_tokens([text[s:e]])[0] <= limit
            if fits:
                assert any(c.start <= s and e <= c.end for c in chunks), text[s:e]
            for i in range(s, e):
                if not text[i].isspace():
                    assert any(c.start <= i < c.end for c in chunks)
    # Neighbours share at most `overlap` tokens.
    for a, b in itertools.pairwise(chunks):
        assert b.start > a.start
        if b.start < a.end:
            assert embedder.count_tokens([text[b.start : a.end]])[0] <= overlap


@given(text=ARTICLE, target=st.integers(8, 62), overlap=st.integers(0, 12))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_chunk_invariants_fake_tokenizer(text: str, target: int, overlap: int) -> None:
    check_invariants(text, FAKE, target=target, overlap=overlap)


@given(words=st.lists(WORDS, min_size=70, max_size=200))
@settings(max_examples=30, deadline=None)
def test_overlong_sentence_is_cut_not_truncated(words: list[str]) -> None:
    text = " ".join(words)  # one sentence longer than the 62-token limit
    art = _article(text)
    chunks = chunk_segments(text, art.segments, FAKE, target=40, overlap=8, limit=FAKE.max_tokens)
    assert len(chunks) >= 2
    assert all(c.tokens <= FAKE.max_tokens for c in chunks)
    # Nothing is dropped: every character of the sentence lies in some chunk.
    for i, ch in enumerate(text):
        if not ch.isspace():
            assert any(c.start <= i < c.end for c in chunks), i


def test_passages_round_trip_on_disk_bytes() -> None:
    for path in sorted(SEEDS.glob("*.txt")):
        art = parse_article(read_seed(SEEDS, path))
        for p in make_passages(art, FAKE, chunk_tokens=40, chunk_overlap=8):
            assert path.read_bytes().decode("utf-8")[p.start : p.end] == p.text
            assert p.title == art.title
            assert p.date == art.date
            assert p.source == path.name


@pytest.mark.model
def test_real_tokenizer_invariants_on_seeds_and_generated_text() -> None:
    from qa.config import Settings

    model = load_embedder(Settings())
    assert model.max_seq_length == 256
    for path in sorted(SEEDS.glob("*.txt")):
        art = parse_article(read_seed(SEEDS, path))
        passages = make_passages(art, model, chunk_tokens=128, chunk_overlap=32)
        embedded = model.count_tokens([p.embed_text() for p in passages])
        # What the model sees (title prefix included) is never truncated.
        assert max(embedded) <= model.max_tokens
        assert embedded == [p.tokens for p in passages]
        check_invariants(art.text, model, target=128, overlap=32)
    long_word_text = " ".join(["antidisestablishmentarianism"] * 120) + "."
    check_invariants(long_word_text, model, target=128, overlap=32)
