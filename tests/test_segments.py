"""Segments: one new segment per build, tombstones, sharing, merging, and search across them
returning what one segment would."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa.ask.retrieval import Filters, retrieve
from qa.cli import main as cli_main
from qa.config import Settings
from qa.embed.fake import FakeEmbedder
from qa.errors import IndexMismatchError
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.generation import IndexGeneration, load_index
from qa.index.merge import SegmentSize, plan_merge
from qa.index.segments import segments_dir

from .conftest import SEED_NAMES

QUESTIONS = [
    "Chongqing cooperation with the United States",
    "Fuyao glass plant in Ohio",
    "delegation visit California trade",
    "sister state agreement",
    "535 US-funded enterprises",
    "economic center Yangtze",
]


def _many(settings: Settings, n: int) -> Settings:
    """``n`` small articles (one build each would give ``n`` segments)."""
    rng = random.Random(7)
    words = [
        "trade",
        "port",
        "river",
        "glass",
        "plant",
        "city",
        "state",
        "delegation",
        "visit",
        "bridge",
        "rail",
    ]
    for i in range(n):
        body = " ".join(rng.choice(words) for _ in range(40))
        (settings.seeds_dir / f"a{i:03d}.txt").write_text(
            f"Article {i}\n\nArticle {i} says {body}. Number {i * 7}.\n", encoding="utf-8"
        )
    return settings


def _manifest(settings: Settings) -> dict[str, object]:
    return store.read_manifest(store.current_path(settings.index_dir))


def test_a_build_adds_one_segment_and_tombstones_and_shares_the_rest(settings: Settings) -> None:
    build_index(settings)
    first = _manifest(settings)["segments"]
    path = settings.seeds_dir / SEED_NAMES[4]
    path.write_text(path.read_text().replace("535 US-funded", "536 US-funded"), "utf-8")
    build_index(settings)
    second = _manifest(settings)["segments"]
    assert isinstance(first, list)
    assert isinstance(second, list)
    assert len(second) == 2
    assert second[0]["id"] == first[0]["id"]  # shared, not copied
    assert second[0]["deleted"], "the edited article's old rows are tombstones"
    gen = load_index(settings)
    new_rows = second[1]["rows"]
    assert new_rows == len(gen.by_source[SEED_NAMES[4]])
    assert second[0]["deleted"] == first[0]["deleted"] + new_rows
    texts = [p.text for p in gen.passages if p.source == SEED_NAMES[4]]
    assert any("536 US-funded" in t for t in texts)
    assert not any("535 US-funded" in t for t in texts)
    assert len(store.segments_in_use(settings.index_dir)) == 2


def _ranking(gen: IndexGeneration, question: str, mode: str, k: int) -> list[tuple[str, float]]:
    vector = FakeEmbedder().embed([question])[0]
    hits = retrieve(gen, question, vector, k=k, mode=mode, candidates=k)  # type: ignore[arg-type]
    return [(h.passage.chunk_id, round(h.score, 5)) for h in hits]


def _scores(gen: IndexGeneration, question: str) -> tuple[dict[str, float], dict[str, float]]:
    vector = FakeEmbedder().embed([question])[0]
    dense = {gen.passages[r].chunk_id: s for r, s in gen.dense_search(vector, 10, allowed=None)}
    bm = {gen.passages[r].chunk_id: s for r, s in gen.lexical_search(question, 10, allowed=None)}
    return dense, bm


def _same_top(a: dict[str, float], b: dict[str, float]) -> None:
    """Equal scores in order; ids equal except among ties at the cut-off."""
    sa, sb = sorted(a.values(), reverse=True), sorted(b.values(), reverse=True)
    assert np.allclose(sa, sb, atol=1e-5), (sa, sb)
    if sa:
        cut = sa[-1] + 1e-5
        assert {i for i, s in a.items() if s > cut} == {i for i, s in b.items() if s > cut}
        for i in set(a) & set(b):
            assert a[i] == pytest.approx(b[i], abs=1e-5)


@pytest.mark.parametrize("segments", [3, 7])
def test_a_corpus_split_into_segments_returns_what_one_segment_does(
    settings: Settings, tmp_path: Path, segments: int
) -> None:
    _many(settings, 14)
    names = sorted(p.name for p in settings.seeds_dir.iterdir())
    one = settings.replace(index_dir=tmp_path / "one")
    build_index(one)
    # The same corpus arriving in ``segments`` builds, with edits that leave tombstones.
    split = settings.replace(index_dir=tmp_path / "split", seeds_dir=tmp_path / "grow")
    split.seeds_dir.mkdir()
    for part in np.array_split(np.arange(len(names)), segments):
        for i in part:
            shutil.copy(settings.seeds_dir / names[i], split.seeds_dir / names[i])
        (split.seeds_dir / names[0]).write_text("Scratch\n\nA draft.\n", encoding="utf-8")
        build_index(split)
    shutil.copy(settings.seeds_dir / names[0], split.seeds_dir / names[0])
    build_index(split)
    a, b = load_index(one), load_index(split)
    assert len(b.segments) > 1
    assert any(len(ls.dead) for ls in b.segments)
    assert sorted(p.chunk_id for p in a.passages) == sorted(p.chunk_id for p in b.passages)
    for q in QUESTIONS:
        for x, y in zip(_scores(a, q), _scores(b, q), strict=True):
            _same_top(x, y)
        assert a.knows(q.split()[0]) == b.knows(q.split()[0])
    assert not b.knows("draft")  # only in a tombstoned row


def test_filters_and_answers_work_across_segments(settings: Settings) -> None:
    build_index(settings)
    (settings.seeds_dir / "extra.txt").write_text(
        "Ohio news\n\nOhio and Zhejiang signed a sister-state agreement in 2024.\n", "utf-8"
    )
    build_index(settings)
    gen = load_index(settings)
    assert len(gen.segments) == 2
    vector = FakeEmbedder().embed(["Zhejiang agreement"])[0]
    only = Filters(sources=frozenset({"extra.txt"}))
    hits = retrieve(gen, "Zhejiang agreement", vector, k=3, mode="hybrid", filters=only)
    assert hits
    assert {h.passage.source for h in hits} == {"extra.txt"}
    row = hits[0].row
    assert gen.passages[row].source == "extra.txt"
    assert len(gen.sentence_scores(row, vector)) == len(gen.passages[row].sentences)
    assert "zhejiang" in gen.article_terms("extra.txt")


def test_force_merge_makes_one_segment_without_tombstones(settings: Settings) -> None:
    build_index(settings)
    (settings.seeds_dir / SEED_NAMES[0]).unlink()
    build_index(settings)
    before = load_index(settings)
    summary = build_index(settings, merge=True)
    assert summary.merged
    after = load_index(settings)
    assert len(after.segments) == 1
    assert not len(after.segments[0].dead)
    assert [p.chunk_id for p in before.passages] == [p.chunk_id for p in after.passages]
    for q in QUESTIONS:
        _same_top(_scores(before, q)[1], _scores(after, q)[1])
    for source, rows in after.by_source.items():
        assert [after.passages[r].source for r in rows] == [source] * len(rows)


def test_tiered_policy() -> None:
    small = [SegmentSize(f"s{i}", 10, 0) for i in range(4)]
    assert plan_merge(small, factor=4, floor=100) == ["s0", "s1", "s2", "s3"]
    assert plan_merge(small[:3], factor=4, floor=100) == []
    big = [SegmentSize("b", 1000, 0), *small[:3]]
    assert plan_merge(big, factor=4, floor=100) == []  # a large segment is its own tier
    assert plan_merge([SegmentSize("d", 10, 6)], factor=4, floor=100) == ["d"]
    assert plan_merge(small[:1], factor=4, floor=100, force=True) == []


def test_random_edits_merges_and_queries_lose_nothing(settings: Settings, tmp_path: Path) -> None:
    """100 rounds of random adds, edits, deletes, merges and queries over many segments."""
    settings = _many(settings, 12).replace(merge_factor=4, merge_floor=3, keep_generations=1)
    build_index(settings)
    rng = random.Random(12)
    served = load_index(settings)  # a server holding an old generation while merges delete
    for n in range(100):
        names = sorted(p.name for p in settings.seeds_dir.iterdir())
        action = rng.choice(["add", "edit", "edit", "delete", "merge", "none"])
        marked = None
        if action == "add" or len(names) < 3:
            marked = f"r{n}.txt"
            (settings.seeds_dir / marked).write_text(
                f"Round {n}\n\nRound {n} adds mark{n} to the port city.\n", "utf-8"
            )
        elif action == "edit":
            marked = rng.choice(names)
            path = settings.seeds_dir / marked
            path.write_text(path.read_text("utf-8") + f"\nEdited in round {n} mark{n}.\n", "utf-8")
        elif action == "delete":
            (settings.seeds_dir / rng.choice(names)).unlink()
        build_index(settings, merge=action == "merge")
        gen = load_index(settings)
        expect = {}
        for p in sorted(settings.seeds_dir.iterdir()):
            expect[p.name] = p.read_text("utf-8")
        got = [(p.source, p.chunk_id) for p in gen.passages]
        assert len(got) == len(set(got)), f"round {n}: a passage is duplicated"
        assert {s for s, _ in got} == set(expect), f"round {n}: a document is lost or stale"
        for p in gen.passages:
            assert expect[p.source][p.start : p.end] == p.text, f"round {n}: stale passage"
        hits = retrieve(gen, f"mark{n}", None, k=5, mode="bm25")
        assert [h.passage.source for h in hits][:1] == ([marked] if marked else [])
        for h in retrieve(served, "port city", None, k=5, mode="bm25"):
            assert h.passage.text  # the old generation still reads its (maybe deleted) segments
        assert len(gen.segments) <= 3 * settings.merge_factor
        if n % 10 == 9:  # the same scores as the corpus indexed afresh in one segment
            fresh = settings.replace(index_dir=tmp_path / f"fresh{n}")
            build_index(fresh)
            one = load_index(fresh)
            for q in ["port city trade", f"mark{n - 1} river", "glass plant"]:
                for x, y in zip(_scores(one, q), _scores(gen, q), strict=True):
                    _same_top(x, y)
    on_disk = set(store.segments_in_use(settings.index_dir))
    assert {ls.segment.id for ls in load_index(settings).segments} <= on_disk


def test_unreferenced_segments_are_deleted_only_with_their_last_generation(
    settings: Settings,
) -> None:
    settings = settings.replace(keep_generations=2)
    build_index(settings)
    (settings.seeds_dir / "x.txt").write_text("X\n\nAn extra article.\n", "utf-8")
    build_index(settings)
    build_index(settings, merge=True)
    listed = set()
    for gen_dir in store.generations_dir(settings.index_dir).iterdir():
        listed |= {s["id"] for s in store.read_manifest(gen_dir)["segments"]}
    assert set(store.segments_in_use(settings.index_dir)) == listed
    assert len(listed) == 3  # the merged one, and the two the previous generation lists


def test_a_single_folder_index_is_not_read_and_qa_index_upgrades_it(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    build_index(settings)
    folder = store.current_path(settings.index_dir)
    manifest = json.loads((folder / store.MANIFEST).read_text())
    # What seedqa wrote before segments: schema 1, every file in the generation folder.
    legacy = {k: v for k, v in manifest.items() if k not in ("segments", "files")}
    legacy["schema_version"] = 1
    (folder / store.MANIFEST).write_text(json.dumps(legacy))
    shutil.rmtree(segments_dir(settings.index_dir))
    with pytest.raises(IndexMismatchError, match=r"single-folder layout.*qa index --rebuild"):
        load_index(settings)
    args = ["index", "--seeds", str(settings.seeds_dir), "--index", str(settings.index_dir)]
    with caplog.at_level("WARNING", logger="qa.index.builder"):
        assert cli_main([*args, "--model", "fake"]) == 0
    assert "single-folder layout" in caplog.text
    gen = load_index(settings)
    assert gen.manifest["schema_version"] == store.SCHEMA_VERSION
    assert len(gen.documents) == 5


def test_check_verifies_every_checksum(settings: Settings) -> None:
    build_index(settings)
    args = ["index", "--seeds", str(settings.seeds_dir), "--index", str(settings.index_dir)]
    assert cli_main([*args, "--model", "fake", "--check"]) == 0
    segment = segments_dir(settings.index_dir) / _manifest(settings)["segments"][0]["id"]  # type: ignore[index]
    target = segment / "sentences.npy"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF
    target.write_bytes(bytes(data))
    load_index(settings, verify=False)  # start-up's cheap checks see the right size
    assert cli_main([*args, "--model", "fake", "--check"]) == 2


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_a_large_segment_uses_the_approximate_index_with_exact_scores(
    settings: Settings, tmp_path: Path, index_type: str
) -> None:
    _many(settings, 60)
    exact = settings.replace(index_dir=tmp_path / "exact")
    approx = settings.replace(
        index_dir=tmp_path / "approx", exact_threshold=50, approximate_index=index_type
    )
    build_index(exact)
    build_index(approx)
    a, b = load_index(exact), load_index(approx)
    assert a.segments[0].segment.faiss_index is None
    assert b.segments[0].segment.faiss_index is not None
    recall = []
    for q in QUESTIONS:
        vector = FakeEmbedder().embed([q])[0]
        hits = b.dense_search(vector, 10, allowed=None)
        for row, score in hits:  # the exact cosine, whatever the index scored
            assert score == pytest.approx(float(b.vector(row) @ vector), abs=1e-6)
        truth = set(_scores(a, q)[0])
        recall.append(len({b.passages[r].chunk_id for r, _ in hits} & truth) / len(truth))
    assert float(np.mean(recall)) >= 0.7
    # Tombstones in an approximate segment never come back, whatever the index returns.
    gone = b.passages[
        b.dense_search(FakeEmbedder().embed([QUESTIONS[0]])[0], 1, allowed=None)[0][0]
    ]
    (approx.seeds_dir / gone.source).unlink()
    build_index(approx)
    c = load_index(approx)
    assert c.segments[0].segment.faiss_index is not None
    assert len(c.segments[0].dead)
    for q in QUESTIONS:
        vector = FakeEmbedder().embed([q])[0]
        hits = c.dense_search(vector, 30, allowed=None)
        assert len(hits) >= 10
        assert len({r for r, _ in hits}) == len(hits)
        assert gone.source not in {c.passages[r].source for r, _ in hits}
        for row, score in hits:  # a tombstone taken for a live row would score differently
            assert score == pytest.approx(float(c.vector(row) @ vector), abs=1e-6)


def test_ivfpq_re_ranked_finds_the_exact_top_10() -> None:
    from types import SimpleNamespace

    from qa.index.vectors import PQ_MIN, build_faiss, search_segment

    rng = np.random.default_rng(3)
    latent = rng.standard_normal((PQ_MIN, 8)).astype(np.float32)
    vectors = latent @ rng.standard_normal((8, 32)).astype(np.float32)
    vectors += 0.05 * rng.standard_normal(vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index, info = build_faiss(vectors, index_type="ivfpq")
    assert info["type"] == "ivfpq"
    approx = SimpleNamespace(vectors=vectors, faiss_index=index)
    exact = SimpleNamespace(vectors=vectors, faiss_index=None)
    none = np.zeros(len(vectors), dtype=bool)
    recall = []
    for q in vectors[rng.choice(len(vectors), 30, replace=False)]:
        rows, scores = search_segment(approx, q, 10, excluded=none)
        truth, _ = search_segment(exact, q, 10, excluded=none)
        assert np.allclose(scores, vectors[rows] @ q, atol=1e-6)
        recall.append(len(set(rows.tolist()) & set(truth.tolist())) / 10)
    assert float(np.mean(recall)) >= 0.9
