"""Publishing costs O(edit): documents live in their segments, not in the generation; a merge
publishes under the build lock only at the end, keeping what builds published meanwhile; an
index of the previous layout is refused with the command that rebuilds it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qa.config import Settings
from qa.errors import IndexMismatchError, IndexSchemaError
from qa.index import merge as merge_module
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.generation import load_index
from qa.index.merge import merge_segments

from .conftest import SEED_NAMES


def _passages(settings: Settings) -> list[tuple[str, int, int, str]]:
    gen = load_index(settings)
    return sorted((p.source, p.start, p.end, p.text) for p in gen.passages)


def _fresh(settings: Settings, tmp_path: Path) -> list[tuple[str, int, int, str]]:
    """The passages of a new index built from scratch over the same seeds."""
    other = settings.replace(index_dir=tmp_path / "fresh-index")
    build_index(other, rebuild=True)
    return _passages(other)


def _add_articles(seeds: Path, n: int, prefix: str = "extra") -> list[str]:
    names = []
    for i in range(n):
        name = f"{prefix}-{i:03d}.txt"
        (seeds / name).write_text(
            f"Extra article {i}\n\nThe harbour of town {i} reopened after repairs to pier {i}.\n",
            encoding="utf-8",
        )
        names.append(name)
    return names


def test_publishing_an_edit_writes_nothing_about_unchanged_documents(settings: Settings) -> None:
    unchanged = _add_articles(settings.seeds_dir, 30)
    build_index(settings)
    path = settings.seeds_dir / SEED_NAMES[4]
    path.write_text(path.read_text().replace("535 US-funded", "536 US-funded"), "utf-8")
    summary = build_index(settings)
    folder = store.generations_dir(settings.index_dir) / str(summary.generation)
    written = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    for name in unchanged + [n for n in SEED_NAMES if n != SEED_NAMES[4]]:
        assert name.encode() not in written, f"the generation names unchanged {name}"
    new_segment = load_index(settings).segments[-1].segment
    assert [s.decode() for s in new_segment.documents.sources.tolist()] == [SEED_NAMES[4]]
    # ...and the documents are all still there, read from the segments.
    gen = load_index(settings)
    assert set(gen.documents) == set(SEED_NAMES) | set(unchanged)
    assert gen.documents[SEED_NAMES[4]]["hash"] == summary_hash(path)


def summary_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_build_published_during_a_merge_is_not_lost(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.replace(merge_factor=50)  # only the forced merge below merges
    build_index(settings)
    extra = _add_articles(settings.seeds_dir, 4)
    build_index(settings)
    assert len(load_index(settings).segments) == 2
    real_write = merge_module.write_segment
    during: list[Any] = []

    def write_then_build(index_dir: Path, data: Any) -> str:
        seg_id = real_write(index_dir, data)
        # The merge holds no build lock while it works: this build must not wait (wait=0).
        (settings.seeds_dir / SEED_NAMES[0]).unlink()
        (settings.seeds_dir / extra[1]).unlink()
        edited = settings.seeds_dir / SEED_NAMES[4]
        edited.write_text(edited.read_text().replace("535 US-funded", "536 US-funded"), "utf-8")
        _add_articles(settings.seeds_dir, 6, prefix="during")
        during.append(build_index(settings, wait=0))
        return seg_id

    monkeypatch.setattr(merge_module, "write_segment", write_then_build)
    generation = merge_segments(settings, force=True)
    assert generation is not None
    assert during
    assert during[0].changed
    assert store.current_generation(settings.index_dir) == generation
    gen = load_index(settings)
    assert SEED_NAMES[0] not in gen.documents
    assert extra[1] not in gen.documents
    assert "during-005.txt" in gen.documents
    assert _passages(settings) == _fresh(settings, tmp_path)
    texts = " ".join(t for s, _, _, t in _passages(settings) if s == SEED_NAMES[4])
    assert "536 US-funded" in texts
    assert "535 US-funded" not in texts


def _downgrade_to_schema_2(settings: Settings) -> str:
    """Make the live generation look like one written by schema 2; returns its id."""
    build_index(settings)
    folder = store.current_path(settings.index_dir)
    manifest = json.loads((folder / store.MANIFEST).read_text())
    manifest["schema_version"] = 2
    manifest["documents"] = {name: {"hash": "0" * 64} for name in SEED_NAMES}
    (folder / store.MANIFEST).write_text(json.dumps(manifest))
    return folder.name


def test_an_index_with_documents_in_the_manifest_is_not_read(settings: Settings) -> None:
    _downgrade_to_schema_2(settings)
    with pytest.raises(IndexSchemaError, match=r"schema version 2.*qa index --rebuild"):
        load_index(settings)
    summary = build_index(settings, rebuild=True)
    assert summary.added == len(SEED_NAMES)
    assert set(load_index(settings).documents) == set(SEED_NAMES)


def test_the_first_build_upgrades_an_index_of_an_older_schema(settings: Settings) -> None:
    old = _downgrade_to_schema_2(settings)
    summary = build_index(settings)  # what `make serve` and `qa index` run
    assert summary.changed
    assert summary.added == len(SEED_NAMES)
    assert store.current_generation(settings.index_dir) != old
    gen = load_index(settings)
    assert gen.manifest["schema_version"] == store.SCHEMA_VERSION
    assert set(gen.documents) == set(SEED_NAMES)
    assert _passages(settings) == _fresh(settings, settings.index_dir.parent / "fresh")
    assert not build_index(settings).changed  # and from then on it is incremental again


def test_an_index_for_another_model_is_still_refused_not_rebuilt(settings: Settings) -> None:
    build_index(settings)
    with pytest.raises(IndexMismatchError, match="model"):
        build_index(settings.replace(model="bundled"))


def test_document_rows_are_the_rows_of_the_chosen_documents(settings: Settings) -> None:
    settings = settings.replace(merge_factor=50)
    build_index(settings)
    _add_articles(settings.seeds_dir, 5)
    build_index(settings)
    (settings.seeds_dir / SEED_NAMES[1]).unlink()
    path = settings.seeds_dir / "extra-002.txt"
    path.write_text(path.read_text() + "\nThe pier closed again in winter.\n", "utf-8")
    build_index(settings)
    gen = load_index(settings)
    assert len(gen.segments) == 3
    chosen = {SEED_NAMES[3], "extra-002.txt", "extra-004.txt"}
    rows = gen.document_rows(lambda source, date: source in chosen)
    assert rows.tolist() == sorted(r for s in chosen for r in gen.by_source[s])
    assert {gen.passages[int(r)].source for r in rows} == chosen
    dated = gen.document_rows(lambda source, date: date is not None)
    assert {gen.passages[int(r)].source for r in dated} == {
        s for s in gen.documents if gen.documents[s].get("date") is not None
    }
