"""Builds on a local Ray cluster (``executor = "ray"``) against the local path.

One Ray cluster (2 CPUs, a small object store) serves the whole module; the fake embedder keeps
most tests fast, one uses the real bundled model through ONNX Runtime.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qa.ask.service import QAService
from qa.config import Settings
from qa.embed.base import Embedder
from qa.embed.fake import FakeEmbedder
from qa.errors import ExecutorError
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.generation import IndexGeneration, load_index

from .conftest import ROOT, SEEDS

ray = pytest.importorskip("ray", reason="needs the 'ray' extra (make test installs it)")
from qa.index.ray_executor import (  # noqa: E402
    RayExecutor,
    actor_embedder,
    cluster_address,
    iter_parts,
)

pytestmark = pytest.mark.ray

QUESTIONS = [
    json.loads(line)["question"]
    for line in (ROOT / "eval" / "seeds_questions.jsonl").read_text("utf-8").splitlines()
    if line.strip()
]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """One private local Ray cluster for the module: 2 CPUs, 100 MB object store."""
    ray.init(
        address="local",  # a private cluster, even if another runs on this machine
        num_cpus=2,
        object_store_memory=100 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def copy_seeds(root: Path) -> Path:
    """A private copy of the seed articles under ``root``."""
    shutil.copytree(SEEDS, root / "seeds", ignore=shutil.ignore_patterns(".*", "README*"))
    return root / "seeds"


def _rows(gen: IndexGeneration) -> list[int]:
    """Rows in document order: an incremental build appends edited documents in a new segment,
    so its row order differs from a build from scratch while the index is the same."""
    passages = list(gen.passages)
    return sorted(range(len(passages)), key=lambda r: (passages[r].source, passages[r].start))


def _arrays(gen: IndexGeneration) -> dict[str, np.ndarray]:
    """Passage and sentence vectors of the live rows, in document order."""
    rows = _rows(gen)
    sentences = []
    for row in rows:
        ls, local = gen.locate(row)
        lo, hi = ls.segment.sentence_start[local], ls.segment.sentence_start[local + 1]
        sentences.append(np.asarray(ls.segment.sentence_vectors[lo:hi], dtype=np.float32))
    return {
        "vectors": np.stack([gen.vector(r) for r in rows]),
        "sentences": np.concatenate(sentences),
    }


def assert_same_index(local: Settings, remote: Settings, *, tolerance: float = 0.0) -> None:
    """Same passages and ids, vectors equal (bitwise unless a tolerance is given)."""
    a, b = load_index(local), load_index(remote)
    assert [a.passages[r].to_json() for r in _rows(a)] == [
        b.passages[r].to_json() for r in _rows(b)
    ]
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    for name in ("vectors", "sentences"):
        va, vb = arrays_a[name], arrays_b[name]
        assert va.shape == vb.shape
        if tolerance == 0.0:
            assert np.array_equal(va, vb), name
        else:
            assert float(np.abs(va - vb).max()) <= tolerance, name


def top10(settings: Settings, embedder: Embedder | None = None) -> list[list[str]]:
    """The ids of the top 10 passages for each seed question."""
    service = QAService(settings, embedder=embedder)
    service.start(update=False, poll=False)
    try:
        return [
            [h.passage.chunk_id for h in service.ask(q, k=10, answer=False).passages]
            for q in QUESTIONS
        ]
    finally:
        service.close()


def test_an_unset_address_starts_a_private_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    # ray.init(address=None) would join any cluster /tmp/ray/ray_current_cluster names.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) == "local"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert cluster_address(None) == "ray://head:10001"
    assert cluster_address("auto") == "auto"


def test_ray_build_equals_the_local_build(tmp_path: Path) -> None:
    seeds = copy_seeds(tmp_path)
    local = Settings(seeds_dir=seeds, index_dir=tmp_path / "local", model="fake")
    remote = local.replace(index_dir=tmp_path / "ray", executor="ray", ray_workers=2)
    first = build_index(local)
    executor = RayExecutor(remote)
    summary = build_index(remote, executor=executor)
    assert summary.passages == first.passages == summary.embedded == executor.embedded > 0
    assert_same_index(local, remote)
    assert top10(local) == top10(remote)
    assert list(iter_parts(remote.index_dir)) == []


def test_incremental_ray_build_embeds_only_changed_passages(tmp_path: Path) -> None:
    seeds = copy_seeds(tmp_path)
    settings = Settings(seeds_dir=seeds, index_dir=tmp_path / "ray", model="fake", executor="ray")
    build_index(settings)
    target = sorted(seeds.glob("*.txt"))[1]
    target.write_text(target.read_text("utf-8") + "\nA new closing sentence.\n", "utf-8")
    executor = RayExecutor(settings)
    summary = build_index(settings, executor=executor)
    assert summary.updated == 1
    assert 1 <= executor.embedded == summary.embedded <= 2
    # The result is the index a local build from scratch makes.
    local = settings.replace(index_dir=tmp_path / "local", executor="local")
    build_index(local)
    assert_same_index(local, settings)


def test_unchanged_seeds_send_nothing_to_the_cluster(tmp_path: Path) -> None:
    seeds = copy_seeds(tmp_path)
    settings = Settings(seeds_dir=seeds, index_dir=tmp_path / "ray", model="fake", executor="ray")
    build_index(settings)
    executor = RayExecutor(settings)
    again = build_index(settings, executor=executor)
    assert (again.changed, executor.embedded) == (False, 0)


def slow_factory(marker: str, *, restarts_fail: bool = False) -> object:
    """An actor model that records its pid in ``marker`` and takes 0.5 s per batch; with
    ``restarts_fail`` an actor started after the first one cannot load its model."""

    class SlowFake(FakeEmbedder):
        def encode_batch(self, texts):  # type: ignore[no-untyped-def]
            time.sleep(0.5)
            return super().encode_batch(texts)

    def factory(settings: Settings, threads: int) -> Embedder:
        started = Path(marker).is_file()
        with open(marker, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
        if restarts_fail and started:
            raise RuntimeError("model unavailable on the restarted worker")
        return SlowFake()

    return factory


def build_and_kill(settings: Settings, factory: object, marker: Path) -> dict[str, object]:
    """Start a Ray build of one new article, SIGKILL its actor mid-batch, wait for the end.

    ``CURRENT`` is checked before and after the kill, while the build is still running."""
    before = store.current_generation(settings.index_dir)
    (settings.seeds_dir / "extra.txt").write_text(
        "Extra\n\n" + "A sentence about trade. " * 200, "utf-8"
    )
    executor = RayExecutor(settings, factory=factory)  # type: ignore[arg-type]
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["summary"] = build_index(settings, executor=executor)
        except ExecutorError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the first (slow) batch
    assert store.current_generation(settings.index_dir) == before
    os.kill(int(marker.read_text().split()[0]), signal.SIGKILL)
    time.sleep(0.2)
    assert store.current_generation(settings.index_dir) == before
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert list(iter_parts(settings.index_dir)) == []
    return outcome


@pytest.fixture
def ray_settings(tmp_path: Path) -> Settings:
    """A built fake-model index, built on Ray with one actor."""
    settings = Settings(
        seeds_dir=copy_seeds(tmp_path),
        index_dir=tmp_path / "ray",
        model="fake",
        executor="ray",
        ray_workers=1,
    )
    build_index(settings)
    return settings


def test_killed_worker_is_restarted_and_the_build_completes(
    ray_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "actors.txt"
    before = store.current_generation(ray_settings.index_dir)
    outcome = build_and_kill(ray_settings, slow_factory(str(marker)), marker)
    # Ray Data restarted the actor and retried the batch, which rewrote the same part.
    assert len(marker.read_text().split()) == 2
    assert "summary" in outcome, outcome
    assert store.current_generation(ray_settings.index_dir) != before
    local = ray_settings.replace(index_dir=tmp_path / "local", executor="local")
    build_index(local)
    assert_same_index(local, ray_settings)


def test_killed_worker_that_cannot_restart_leaves_current_and_next_build_completes(
    ray_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "actors.txt"
    before = store.current_generation(ray_settings.index_dir)
    outcome = build_and_kill(ray_settings, slow_factory(str(marker), restarts_fail=True), marker)
    assert "error" in outcome, outcome
    assert store.current_generation(ray_settings.index_dir) == before
    summary = build_index(ray_settings)  # a healthy cluster again
    extra = [p for p in load_index(ray_settings).passages if p.source == "extra.txt"]
    assert summary.added == 1
    assert summary.embedded == len({p.embed_hash for p in extra}) > 0
    local = ray_settings.replace(index_dir=tmp_path / "local", executor="local")
    build_index(local)
    assert_same_index(local, ray_settings)


def test_cli_index_with_the_ray_executor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    from qa.cli import main

    seeds = copy_seeds(tmp_path)
    argv = ["index", "--seeds", str(seeds), "--index", str(tmp_path / "i"), "--model", "fake"]
    assert main([*argv, "--executor", "ray", "--workers", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["embedded"] == data["passages"] > 0
    local = Settings(seeds_dir=seeds, index_dir=tmp_path / "local", model="fake")
    build_index(local)
    assert_same_index(local, local.replace(index_dir=tmp_path / "i"))


@pytest.mark.model
def test_real_model_on_ray_equals_the_local_build(tmp_path: Path) -> None:
    seeds = copy_seeds(tmp_path)
    local = Settings(seeds_dir=seeds, index_dir=tmp_path / "local")
    remote = local.replace(index_dir=tmp_path / "ray", executor="ray", ray_workers=2)
    build_index(local)
    build_index(remote)
    # Same batches on both sides: ONNX Runtime gave bitwise equal vectors when this was
    # written; the contract is max |Δ| ≤ 1e-5.
    assert_same_index(local, remote, tolerance=1e-5)
    assert top10(local) == top10(remote)


@pytest.mark.model
def test_actor_model_is_onnx_with_the_actor_threads() -> None:
    from qa.embed.onnx_backend import OnnxEmbedder

    embedder = actor_embedder(Settings(), 1)
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.session.get_session_options().intra_op_num_threads == 1


@pytest.mark.slow
def test_qa_index_command_starts_and_stops_its_own_cluster(tmp_path: Path) -> None:
    import subprocess
    import sys

    seeds = copy_seeds(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QA_", "RAY_ADDRESS"))}
    cmd = [sys.executable, "-m", "qa", "index", "--seeds", str(seeds), "--index"]
    cmd += [str(tmp_path / "i"), "--model", "fake", "--executor", "ray", "--workers", "1"]
    out = subprocess.run(
        [*cmd, "--json"], capture_output=True, text=True, env=env, timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["embedded"] == data["passages"] > 0
    local = Settings(seeds_dir=seeds, index_dir=tmp_path / "local", model="fake")
    build_index(local)
    assert_same_index(local, local.replace(index_dir=tmp_path / "i"))
