"""Incremental builds, generations, locking, and recovery from kills and full disks."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from filelock import FileLock

from qa.config import Settings
from qa.embed.fake import FakeEmbedder
from qa.errors import IndexBusyError
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.generation import load_index

from .conftest import ROOT, SEED_NAMES


def passages_by_source(settings: Settings) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in load_index(settings).passages:
        out.setdefault(p.source, []).append(p.text)
    return out


def assert_provenance(settings: Settings) -> None:
    gen = load_index(settings)
    live = sum(ls.segment.rows - len(ls.dead) for ls in gen.segments)
    assert live == len(gen.passages) == len(list(gen.passages)) == gen.manifest["passages"]
    for row, p in enumerate(gen.passages):
        raw = (settings.seeds_dir / p.source).read_bytes().decode("utf-8")
        assert raw[p.start : p.end] == p.text
        assert gen.passages[row] == p
        assert row in gen.by_source[p.source]


def test_first_build_writes_a_complete_generation(settings: Settings) -> None:
    summary = build_index(settings)
    assert (summary.added, summary.updated, summary.removed, summary.unchanged) == (5, 0, 0, 0)
    assert summary.passages > 5
    assert summary.embedded == summary.passages
    assert_provenance(settings)
    gen = load_index(settings)
    m = gen.manifest
    assert m["schema_version"] == 3
    assert m["model"] == {"id": "fake-hash-64", "dimension": 64, "max_seq_length": 256}
    assert m["chunking"]["chunk_tokens"] == settings.chunk_tokens
    assert [s["deleted"] for s in m["segments"]] == [0]
    segment = settings.index_dir / "segments" / m["segments"][0]["id"]
    seg_manifest = json.loads((segment / "manifest.json").read_text())
    assert seg_manifest["index"]["type"] == "flat"
    assert "documents" not in m  # each segment carries its own documents table
    assert set(gen.documents) == set(SEED_NAMES)
    for doc in gen.documents.values():
        assert len(doc["hash"]) == 64
        assert doc["passages"]
    assert {"faiss-cpu", "numpy", "python"} <= set(m["versions"])
    assert set(seg_manifest["files"]) >= {"vectors.npy", "passages.jsonl", "terms.npy"}
    vectors = np.load(segment / "vectors.npy")
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_no_change_embeds_nothing_and_keeps_the_generation(settings: Settings) -> None:
    first = build_index(settings)
    embedder = FakeEmbedder()
    again = build_index(settings, embedder=embedder)
    assert (again.unchanged, again.added, again.updated, again.removed) == (5, 0, 0, 0)
    assert again.embedded == 0
    assert embedder.embedded == 0
    assert again.generation == first.generation
    assert not again.changed


def test_edit_reembeds_only_changed_passages(settings: Settings) -> None:
    build_index(settings)
    path = settings.seeds_dir / SEED_NAMES[4]
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("535 US-funded", "536 US-funded"), encoding="utf-8")
    embedder = FakeEmbedder()
    summary = build_index(settings, embedder=embedder)
    assert (summary.updated, summary.unchanged) == (1, 4)
    # Only the passages whose text changed (the edited one and its overlapping neighbour).
    assert 1 <= summary.embedded <= 2
    assert embedder.embedded == summary.embedded
    texts = passages_by_source(settings)[SEED_NAMES[4]]
    assert any("536 US-funded" in t for t in texts)
    assert not any("535 US-funded" in t for t in texts)
    assert_provenance(settings)


def test_add_and_delete(settings: Settings) -> None:
    build_index(settings)
    (settings.seeds_dir / "sub").mkdir()
    (settings.seeds_dir / "sub" / "new.txt").write_text(
        "Sister state news\n\nOhio and Zhejiang signed a sister-state agreement in 2024.\n"
    )
    (settings.seeds_dir / SEED_NAMES[0]).unlink()
    summary = build_index(settings)
    assert (summary.added, summary.removed, summary.unchanged) == (1, 1, 4)
    gen = load_index(settings)
    sources = {p.source for p in gen.passages}
    assert "sub/new.txt" in sources
    assert SEED_NAMES[0] not in sources
    assert SEED_NAMES[0] not in gen.documents
    # Gone from the lexical index too: its distinctive words match nothing any more.
    assert float(gen.lexical_scores("Cincinnati Fuyao").max()) == 0.0
    assert float(gen.lexical_scores("Zhejiang").max()) > 0.0
    assert_provenance(settings)


def test_rename_reuses_embeddings(settings: Settings) -> None:
    build_index(settings)
    before = passages_by_source(settings)[SEED_NAMES[1]]
    (settings.seeds_dir / SEED_NAMES[1]).rename(settings.seeds_dir / "renamed.txt")
    embedder = FakeEmbedder()
    summary = build_index(settings, embedder=embedder)
    assert (summary.renamed, summary.added, summary.removed) == (1, 0, 0)
    assert summary.embedded == 0
    assert passages_by_source(settings)["renamed.txt"] == before
    assert_provenance(settings)


def test_rebuild_ignores_the_old_index(settings: Settings) -> None:
    first = build_index(settings)
    again = build_index(settings, rebuild=True)
    assert again.added == 5
    assert again.embedded == first.embedded
    assert again.generation != first.generation


def test_old_generations_are_pruned(settings: Settings) -> None:
    for i in range(4):
        (settings.seeds_dir / f"n{i}.txt").write_text(f"Note {i}\n\nNumber {i} was added.")
        build_index(settings)
    names = sorted(p.name for p in store.generations_dir(settings.index_dir).iterdir())
    assert len(names) == settings.keep_generations
    assert store.current_generation(settings.index_dir) == names[-1]


def test_second_build_waits_or_is_refused(settings: Settings) -> None:
    build_index(settings)
    lock = FileLock(str(settings.index_dir / store.LOCK))
    with lock, pytest.raises(IndexBusyError, match="another build is already running"):
        build_index(settings, wait=0)
    # A waiting build starts as soon as the lock is free.
    lock.acquire()
    done: list[int] = []
    waiter = threading.Thread(target=lambda: done.append(build_index(settings, wait=30).unchanged))
    waiter.start()
    time.sleep(0.3)
    assert not done
    lock.release()
    waiter.join(timeout=30)
    assert done == [5]


def test_failed_write_leaves_the_old_index(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_index(settings)
    (settings.seeds_dir / "extra.txt").write_text("Extra\n\nSomething new happened.")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("qa.index.builder.np.save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        build_index(settings)
    assert store.current_generation(settings.index_dir) == first.generation
    assert [p.name for p in store.generations_dir(settings.index_dir).iterdir()] == [
        first.generation
    ]
    assert len(load_index(settings).documents) == 5


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from qa.index import storage as store
    from qa.index.builder import build_index
    from qa.config import Settings
    from qa.embed.fake import FakeEmbedder

    class Slow(FakeEmbedder):
        def encode_batch(self, texts):
            time.sleep(0.05)
            return super().encode_batch(texts)

    phase = sys.argv[3]
    if phase == "switch":
        real = store.set_current
        def stuck(index_dir, generation):
            print("ready", flush=True)
            time.sleep(60)
            real(index_dir, generation)
        store.set_current = stuck
    settings = Settings(seeds_dir=Path(sys.argv[1]), index_dir=Path(sys.argv[2]), model="fake",
                        batch_size=4)
    if phase == "embed":
        print("ready", flush=True)
    build_index(settings, embedder=Slow(), rebuild=True)
    print("finished", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["embed", "switch"])
def test_build_killed_with_sigkill_leaves_previous_index(settings: Settings, phase: str) -> None:
    first = build_index(settings)
    for i in range(40):
        (settings.seeds_dir / f"bulk{i}.txt").write_text(
            f"Bulk {i}\n\n" + " ".join(f"Sentence {j} of bulk {i}." for j in range(30))
        )
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILL_SCRIPT,
            str(settings.seeds_dir),
            str(settings.index_dir),
            phase,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    # The previous generation is still the live one and loads cleanly.
    assert store.current_generation(settings.index_dir) == first.generation
    assert len(load_index(settings).documents) == 5
    # The lock died with the process; the next build completes and cleans up the leftovers.
    summary = build_index(settings, wait=5)
    assert summary.added == 40
    gens = sorted(p.name for p in store.generations_dir(settings.index_dir).iterdir())
    assert gens == sorted([first.generation, summary.generation])
    assert_provenance(settings)


def test_cli_index_json_is_the_last_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from qa.cli import main

    args = ["index", "--seeds", str(settings.seeds_dir), "--index", str(settings.index_dir)]
    assert main([*args, "--model", "fake", "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(last)
    keys = {
        "added",
        "updated",
        "removed",
        "unchanged",
        "skipped",
        "passages",
        "embedded",
        "took_ms",
    }
    assert keys <= set(data)
    assert data["added"] == 5
    assert data["embedded"] == data["passages"] > 0
    assert main([*args, "--model", "fake", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (data["unchanged"], data["embedded"]) == (5, 0)
