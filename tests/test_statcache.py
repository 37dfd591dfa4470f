"""The seeds scan's stat cache: unchanged files are not read, every change is seen, racy edits
included, and ``--rehash`` reads everything."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import pytest

from qa.cli import main
from qa.config import Settings
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.doctable import DocumentTable
from qa.index.generation import load_index
from qa.ingest.statcache import RACY_WINDOW_NS, StatCache, scan_changes

from .conftest import SEED_NAMES

HOUR_NS = 3600 * 1_000_000_000


def _age(path: Path, ns: int = HOUR_NS) -> int:
    """Set ``path``'s mtime ``ns`` in the past (out of the racy window); the new mtime."""
    mtime = time.time_ns() - ns
    os.utime(path, ns=(mtime, mtime))
    return mtime


def _age_all(folder: Path) -> None:
    for path in folder.rglob("*.txt"):
        _age(path)


def _rewrite_same_stat(path: Path, old: str, new: str) -> str:
    """Change ``old`` to ``new`` (same length) in place and put the mtime back, as an edit in
    the same clock tick would leave it: size, mtime and inode all unchanged. The new text."""
    assert len(old.encode()) == len(new.encode())
    st = path.stat()
    text = path.read_text(encoding="utf-8").replace(old, new, 1)
    with open(path, "r+b") as fh:  # in place: same inode
        fh.write(text.encode("utf-8"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )
    return text


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_unchanged_files_are_trusted_and_not_read(seeds_dir: Path) -> None:
    _age_all(seeds_dir)
    first = scan_changes(seeds_dir, None)
    assert sorted(f.source for f in first.read) == sorted(SEED_NAMES)
    again = scan_changes(seeds_dir, first.cache)
    assert again.read == []
    assert again.trusted == {f.source: f.content_hash for f in first.read}


def test_an_edit_that_keeps_the_size_but_changes_the_mtime_is_seen(seeds_dir: Path) -> None:
    _age_all(seeds_dir)
    cache = scan_changes(seeds_dir, None).cache
    path = seeds_dir / SEED_NAMES[1]
    st = path.stat()
    text = path.read_text(encoding="utf-8").replace("a", "b", 1)
    path.write_text(text, encoding="utf-8")
    _age(path, HOUR_NS // 2)  # still old, but not the mtime the cache saw
    assert path.stat().st_size == st.st_size
    found = scan_changes(seeds_dir, cache)
    assert [(f.source, f.content_hash) for f in found.read] == [(SEED_NAMES[1], _sha(text))]
    assert SEED_NAMES[1] not in found.trusted


def test_an_edit_inside_the_racy_window_is_seen(seeds_dir: Path) -> None:
    path = seeds_dir / SEED_NAMES[2]
    path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")  # mtime: now
    first = scan_changes(seeds_dir, None)
    assert first.cache.entries[SEED_NAMES[2]][3] == "", "a file this fresh is not trusted yet"
    text = _rewrite_same_stat(path, "the", "THE")
    found = scan_changes(seeds_dir, first.cache)
    assert _sha(text) in {f.content_hash for f in found.read}
    assert SEED_NAMES[2] not in found.trusted


def test_outside_the_racy_window_a_same_stat_edit_needs_rehash(seeds_dir: Path) -> None:
    """The other side of the racy rule: an old file whose stat did not change is trusted
    (as git trusts it), which is why the racy window exists; ``rehash`` reads it anyway."""
    path = seeds_dir / SEED_NAMES[2]
    _age(path, 2 * RACY_WINDOW_NS)
    cache = scan_changes(seeds_dir, None).cache
    text = _rewrite_same_stat(path, "the", "THE")
    assert SEED_NAMES[2] in scan_changes(seeds_dir, cache).trusted
    found = scan_changes(seeds_dir, cache, rehash=True)
    assert _sha(text) in {f.content_hash for f in found.read}


def test_deleted_renamed_and_replaced_files_are_seen(seeds_dir: Path) -> None:
    _age_all(seeds_dir)
    cache = scan_changes(seeds_dir, None).cache
    (seeds_dir / SEED_NAMES[0]).unlink()
    os.rename(seeds_dir / SEED_NAMES[1], seeds_dir / "renamed.txt")
    # Replaced by a rename: same size and mtime as the old file, but another inode.
    target = seeds_dir / SEED_NAMES[3]
    st = target.stat()
    text = target.read_text(encoding="utf-8").replace("the", "THE", 1)
    tmp = seeds_dir / ".incoming.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, target)
    found = scan_changes(seeds_dir, cache)
    assert SEED_NAMES[0] not in found.sources
    assert SEED_NAMES[1] not in found.sources
    read = {f.source: f.content_hash for f in found.read}
    assert set(read) == {"renamed.txt", SEED_NAMES[3]}
    assert read[SEED_NAMES[3]] == _sha(text)
    assert set(found.trusted) == {SEED_NAMES[2], SEED_NAMES[4]}
    assert set(found.cache.entries) == {"renamed.txt", *SEED_NAMES[2:]}


def test_an_unreadable_cache_means_every_file_is_read(
    seeds_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="qa.ingest.statcache"):
        cache = StatCache.from_bytes(b"not an archive")
    assert cache.entries == {}
    assert "unreadable" in caplog.text
    assert len(scan_changes(seeds_dir, cache).read) == len(SEED_NAMES)


def test_a_build_trusts_the_cache_and_rehash_reads_everything(settings: Settings) -> None:
    _age_all(settings.seeds_dir)
    build_index(settings)
    build_index(settings)  # the racy-free cache is written (nothing changed)
    assert store.read_stat_cache(settings.index_dir) is not None
    path = settings.seeds_dir / SEED_NAMES[4]
    _rewrite_same_stat(path, "535 US-funded", "536 US-funded")
    assert not build_index(settings).changed  # trusted: same stat, old enough
    assert main(["index", "--rehash", "--seeds", str(settings.seeds_dir),
                 "--index", str(settings.index_dir), "--model", "fake"]) == 0  # fmt: skip
    texts = [p.text for p in load_index(settings).passages if p.source == SEED_NAMES[4]]
    assert any("536 US-funded" in t for t in texts)
    assert not any("535 US-funded" in t for t in texts)


def test_with_a_cache_in_step_a_build_compares_only_the_changes(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _age_all(settings.seeds_dir)
    build_index(settings)
    build_index(settings)  # nothing changed: the cache now vouches for every file
    seeds = settings.seeds_dir
    (seeds / SEED_NAMES[0]).unlink()
    os.rename(seeds / SEED_NAMES[1], seeds / "moved.txt")
    edited = seeds / SEED_NAMES[2]
    edited.write_text(edited.read_text(encoding="utf-8") + "\nA late correction.\n", "utf-8")
    _age(edited, HOUR_NS // 2)
    (seeds / "fresh.txt").write_text("Fresh news\n\nA new pier opened in the harbour.\n", "utf-8")

    def every_hash(self: object) -> dict[str, str]:
        raise AssertionError("the build compared every document with the index")

    monkeypatch.setattr(DocumentTable, "hashes", every_hash)
    summary = build_index(settings)
    assert (summary.added, summary.removed, summary.renamed, summary.updated) == (1, 1, 1, 1)
    assert summary.unchanged == 2
    monkeypatch.undo()
    other = settings.replace(index_dir=tmp_path / "fresh-index")
    build_index(other, rebuild=True)
    got = sorted((p.source, p.text) for p in load_index(settings).passages)
    assert got == sorted((p.source, p.text) for p in load_index(other).passages)


def test_a_cache_out_of_step_with_the_index_is_checked_against_every_document(
    settings: Settings,
) -> None:
    """A cache written against another state of the index (a build that died after its scan, a
    restored index) vouches for nothing: the index's hashes are compared with every file."""
    _age_all(settings.seeds_dir)
    build_index(settings)
    build_index(settings)
    path = settings.seeds_dir / SEED_NAMES[4]
    path.write_text(path.read_text().replace("535 US-funded", "536 US-funded"), "utf-8")
    _age(path, HOUR_NS // 2)
    ahead = scan_changes(settings.seeds_dir, store.read_stat_cache(settings.index_dir)).cache
    ahead.documents_id = "a-state-the-index-never-had"
    store.write_stat_cache(settings.index_dir, ahead)  # trusts the edit; the index has not got it
    summary = build_index(settings)
    assert summary.updated == 1
    texts = [p.text for p in load_index(settings).passages if p.source == SEED_NAMES[4]]
    assert any("536 US-funded" in t for t in texts)
