"""A build on a simulated two-node Ray cluster (``ray.cluster_utils.Cluster``, one CPU each)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings
from qa.embed.base import Embedder
from qa.index.builder import build_index

from ._reliability import live_segment
from .conftest import SEEDS

ray = pytest.importorskip("ray", reason="needs the 'ray' extra (make test installs it)")
from ray.cluster_utils import Cluster  # noqa: E402

from qa.index.ray_executor import RayExecutor, actor_embedder  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    """A head and a worker node in this machine, one CPU each, joined by the driver."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024},
    )
    cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024)
    cluster.wait_for_nodes()
    ray.init(
        address=cluster.address,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def node_recording_factory(folder: str) -> object:
    """The usual actor model, after writing the actor's node id into ``folder``."""

    def factory(settings: Settings, threads: int) -> Embedder:
        node = ray.get_runtime_context().get_node_id()
        (Path(folder) / node).write_text(str(threads), encoding="utf-8")
        return actor_embedder(settings, threads)

    return factory


def test_two_node_build_uses_both_nodes_and_equals_local(
    two_nodes: Cluster, tmp_path: Path
) -> None:
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    shutil.copytree(SEEDS, tmp_path / "seeds", ignore=shutil.ignore_patterns(".*", "README*"))
    local = Settings(seeds_dir=tmp_path / "seeds", index_dir=tmp_path / "local", model="fake")
    remote = local.replace(index_dir=tmp_path / "ray", executor="ray", ray_workers=2)
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    executor = RayExecutor(remote, factory=node_recording_factory(str(nodes)))  # type: ignore[arg-type]
    summary = build_index(remote, executor=executor)
    build_index(local)
    # One actor per node (each node has one CPU), each with one ONNX thread's worth of CPU.
    assert sorted(p.read_text() for p in nodes.iterdir()) == ["1", "1"]
    assert summary.embedded == executor.embedded > 0
    for name in ("vectors.npy", "sentences.npy", "passages.jsonl"):
        a = live_segment(local.index_dir) / name
        b = live_segment(remote.index_dir) / name
        if name.endswith(".npy"):
            assert np.array_equal(np.load(a), np.load(b)), name
        else:
            assert a.read_bytes() == b.read_bytes()
