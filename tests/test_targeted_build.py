"""Targeted builds: a build told which files changed looks at those files only, trusts the stat
cache for the rest, and scans the whole folder when the cache is out of step with the index."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from qa.config import Settings
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.generation import load_index
from qa.ingest import statcache
from qa.ingest.statcache import RACY_WINDOW_NS

from .conftest import SEED_NAMES
from .test_statcache import _age, _age_all, _rewrite_same_stat, _sha


def _texts(settings: Settings, source: str) -> str:
    gen = load_index(settings)
    return " ".join(gen.passages[r].text for r in gen.by_source.get(source, []))


def _passages(settings: Settings) -> list[tuple[str, int, int, str]]:
    gen = load_index(settings)
    return sorted((p.source, p.start, p.end, p.text) for p in gen.passages)


def _built(settings: Settings) -> Settings:
    """``settings`` with an index built over seeds old enough for the cache to trust."""
    _age_all(settings.seeds_dir)
    build_index(settings)
    return settings


@contextmanager
def _watching_stats(monkeypatch: pytest.MonkeyPatch, seeds: Path) -> Iterator[list[str]]:
    """Record every seed file stat'ed (as a source) and every folder listed under the seeds
    folder ("listed <source>")."""
    seen: list[str] = []
    real_stat, real_lstat, real_scandir = os.stat, os.lstat, os.scandir
    roots = {os.fsencode(seeds.absolute()), os.fsencode(seeds.resolve())}

    def note(kind: str, path: Any) -> None:
        if isinstance(path, int):
            return
        full = os.path.abspath(os.fsencode(os.fspath(path)))  # no stat: lstat is patched
        for root in roots:
            if full.startswith(root + b"/"):
                seen.append(kind + os.fsdecode(full[len(root) + 1 :]))
            elif full == root and kind:  # stat'ing the folder itself is fine; listing is not
                seen.append(kind + ".")

    def wrap(real: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def counted(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
            note(kind, path)
            return real(path, *args, **kwargs)

        return counted

    monkeypatch.setattr(os, "stat", wrap(real_stat, ""))
    monkeypatch.setattr(os, "lstat", wrap(real_lstat, ""))
    monkeypatch.setattr(os, "scandir", wrap(real_scandir, "listed "))
    yield seen
    monkeypatch.undo()


def test_a_targeted_build_picks_up_the_named_edit_and_stats_nothing_else(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _built(settings)
    path = settings.seeds_dir / SEED_NAMES[4]
    path.write_text(path.read_text().replace("535 US-funded", "536 US-funded"), "utf-8")
    with _watching_stats(monkeypatch, settings.seeds_dir) as seen:
        summary = build_index(settings, paths=[SEED_NAMES[4]], run_policy=False)
    assert summary.updated == 1
    assert summary.unchanged == len(SEED_NAMES) - 1
    assert "536 US-funded" in _texts(settings, SEED_NAMES[4])
    assert seen, "the named file was not even stat'ed"
    assert set(seen) <= {SEED_NAMES[4]}, f"stat'ed or walked besides the named file: {seen}"


def test_a_targeted_build_sees_a_named_deletion_and_a_new_file(settings: Settings) -> None:
    settings = _built(settings)
    (settings.seeds_dir / SEED_NAMES[0]).unlink()
    (settings.seeds_dir / "sub").mkdir()
    (settings.seeds_dir / "sub" / "new.txt").write_text(
        "New article\n\nThe ferry to the island resumed service on Monday.\n", "utf-8"
    )
    # A folder among the names: the build scans the whole folder.
    summary = build_index(settings, paths=[SEED_NAMES[0], "sub"])
    assert (summary.removed, summary.added) == (1, 1)
    (settings.seeds_dir / SEED_NAMES[1]).unlink()
    summary = build_index(settings, paths=[SEED_NAMES[1], ".tmp-upload-123"])
    assert summary.removed == 1
    gen = load_index(settings)
    assert SEED_NAMES[0] not in gen.documents
    assert SEED_NAMES[1] not in gen.documents
    assert "ferry to the island" in _texts(settings, "sub/new.txt")
    # ...and what a full scan would index now is what the targeted builds left.
    cache = store.read_stat_cache(settings.index_dir)
    assert cache is not None
    assert set(cache.entries) == set(gen.documents)


def test_unnamed_changes_are_trusted_to_the_cache_until_a_full_scan(settings: Settings) -> None:
    settings = _built(settings)
    quiet = settings.seeds_dir / SEED_NAMES[2]
    quiet.write_text(quiet.read_text() + "\nA quiet correction nobody announced.\n", "utf-8")
    named = settings.seeds_dir / SEED_NAMES[3]
    named.write_text(named.read_text() + "\nAn announced correction.\n", "utf-8")
    build_index(settings, paths=[SEED_NAMES[3]])
    assert "announced correction" in _texts(settings, SEED_NAMES[3])
    assert "quiet correction" not in _texts(settings, SEED_NAMES[2])
    build_index(settings)  # no names: every file is stat'ed
    assert "quiet correction" in _texts(settings, SEED_NAMES[2])


def test_a_stale_cache_falls_back_to_the_full_scan(settings: Settings) -> None:
    settings = _built(settings)
    cache = store.read_stat_cache(settings.index_dir)
    assert cache is not None
    cache.documents_id = "0123456789abcdef"  # written after another generation than the live one
    store.write_stat_cache(settings.index_dir, cache)
    quiet = settings.seeds_dir / SEED_NAMES[2]
    quiet.write_text(quiet.read_text() + "\nA quiet correction nobody announced.\n", "utf-8")
    summary = build_index(settings, paths=[SEED_NAMES[3]])
    assert summary.updated == 1
    assert "quiet correction" in _texts(settings, SEED_NAMES[2])


def test_a_racy_file_is_read_again_even_when_not_named(settings: Settings, tmp_path: Path) -> None:
    _age_all(settings.seeds_dir)
    fresh = settings.seeds_dir / SEED_NAMES[2]
    fresh.write_text(fresh.read_text(), "utf-8")  # mtime: now, so the cache holds no hash
    build_index(settings)
    cache = store.read_stat_cache(settings.index_dir)
    assert cache is not None
    assert cache.entries[SEED_NAMES[2]][3] == ""
    text = _rewrite_same_stat(fresh, "the", "THE")  # same size, mtime and inode
    summary = build_index(settings, paths=[SEED_NAMES[0]])
    assert summary.updated == 1
    assert load_index(settings).documents[SEED_NAMES[2]]["hash"] == _sha(text)
    other = settings.replace(index_dir=tmp_path / "fresh-index")
    build_index(other, rebuild=True)
    assert _passages(settings) == _passages(other)


def test_a_put_publishes_through_the_targeted_path(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.ask.changes import delete_document, put_document
    from qa.ask.service import QAService

    settings = _built(settings)
    service = QAService(settings)
    try:

        def no_walk(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("a document change walked the whole seeds folder")

        monkeypatch.setattr(statcache, "_walk", no_walk)
        body = b"Harbour news\n\nThe lighthouse on the north pier was repainted red.\n"
        change = put_document(service, "uploads/harbour.txt", body, wait_live=True)
        assert change.status == "live"
        assert "uploads/harbour.txt" in service.generation.documents
        delete_document(service, SEED_NAMES[3], wait_live=True)
        assert SEED_NAMES[3] not in service.generation.documents
    finally:
        service.close()


def test_the_watcher_names_the_changed_files(tmp_path: Path) -> None:
    from qa.index.watch import SeedWatcher

    from .test_watch import wait_for

    seeds = tmp_path / "seeds"
    (seeds / "sub").mkdir(parents=True)
    (seeds / "old.txt").write_text("Old\n\nA ferry.\n")
    calls: list[Any] = []

    class Target:
        def reindex(self, *, wait: float = 0.0, paths: Any = None) -> None:
            calls.append(None if paths is None else set(paths))

    watcher = SeedWatcher(Target(), seeds, debounce=0.3)
    watcher.start()
    try:
        time.sleep(0.3)  # let the watch start before the changes it should see
        (seeds / "sub" / "new.txt").write_text("New\n\nA heron was seen at the harbour.\n")
        (seeds / "old.txt").unlink()
        assert wait_for(lambda: len(calls) == 1), "no reindex happened"
    finally:
        watcher.stop()
    assert calls[0] is not None
    assert {"sub/new.txt", "old.txt"} <= calls[0]


def test_targeted_builds_keep_a_delta_that_agrees_with_the_folder(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.index import seedscan, statstore
    from qa.ingest.statcache import scan_changes

    settings = _built(settings)
    base = settings.index_dir / statstore.STAT_CACHE
    before = base.stat()
    (settings.seeds_dir / SEED_NAMES[0]).unlink()
    edited = settings.seeds_dir / SEED_NAMES[1]
    edited.write_text(edited.read_text() + "\nA correction.\n", "utf-8")
    _age(edited, 60 * RACY_WINDOW_NS)  # old enough for the cache to keep its hash
    (settings.seeds_dir / "new.txt").write_text("New\n\nA heron at the harbour.\n", "utf-8")
    for name in (SEED_NAMES[0], SEED_NAMES[1], "new.txt"):
        assert build_index(settings, paths=[name]).changed
    after = base.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), (
        "a targeted build rewrote the whole stat cache"
    )
    assert (settings.index_dir / statstore.STAT_DELTA).is_file()
    # The cache with its delta is what a full scan of the folder finds (only the racy new
    # file, written just now, is read again).
    scan = scan_changes(settings.seeds_dir, store.read_stat_cache(settings.index_dir))
    assert [f.source for f in scan.read] == ["new.txt"]
    assert scan.vanished == []
    assert set(scan.trusted) == set(SEED_NAMES[1:])
    # Past MAX_DELTA entries the delta is folded into the cache.
    monkeypatch.setattr(seedscan, "MAX_DELTA", 1)
    edited.write_text(edited.read_text() + "\nA second correction.\n", "utf-8")
    assert build_index(settings, paths=[SEED_NAMES[1]]).updated == 1
    assert not (settings.index_dir / statstore.STAT_DELTA).exists()
    cache = store.read_stat_cache(settings.index_dir)
    assert cache is not None
    assert set(cache.entries) == set(SEED_NAMES[1:]) | {"new.txt"}
    assert build_index(settings).changed is False


def test_a_service_build_starts_from_the_generation_it_has_open_if_still_live(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.ask.changes import put_document
    from qa.ask.service import QAService
    from qa.index import builder

    settings = _built(settings)
    service = QAService(settings)
    loads: list[int] = []
    real = builder.load_index

    def counted(*args: Any, **kwargs: Any) -> Any:
        loads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(builder, "load_index", counted)
    try:
        service.reload()
        put_document(service, "a.txt", b"A\n\nThe ferry to the island resumed.\n", wait_live=True)
        assert loads == [], "the build loaded the generation the service had open"
        # Another process publishes: the service's generation is no longer the live one.
        (settings.seeds_dir / "b.txt").write_text("B\n\nA heron at the harbour.\n", "utf-8")
        build_index(settings, run_policy=False)
        loads.clear()
        put_document(service, "c.txt", b"C\n\nThe pier reopened.\n", wait_live=True)
        assert loads == [1]
        assert {"a.txt", "b.txt", "c.txt"} <= set(service.generation.documents)
    finally:
        service.close()
