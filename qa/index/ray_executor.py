"""Embedding a build's new passages on a Ray cluster (``executor = "ray"``).

The driver (``qa index``) still scans the seeds, diffs content hashes and chunks; only the
passages whose text is new reach this module. They are cut into the same batches the local path
forms (longest first, ``batch_size`` each), and a Ray Data pipeline maps every batch through a
pool of embedding actors (``map_batches`` with a class: the model is loaded once per actor, and
ONNX Runtime gets as many threads as the actor has CPUs). Each actor writes one part file per
batch into a folder next to the index, named after the batch's content, and returns only the
part's name, row count and SHA-256; the driver checks all three, reads the parts in order and
hands the vectors back to the build, which publishes them with the usual atomic switch.

Why parts on disk and not vectors through the object store: the part files keep the driver's
memory and the object store out of the data path (a big build moves gigabytes), a retried task
simply rewrites the same file (write aside, rename), and a build that dies leaves nothing that
``CURRENT`` points at. The cost is that the workers must see the index folder: on one machine
they do; on a cluster it is shared storage (docs/scale-out.md).

Ray is imported here only, and only when this executor is made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.config import Settings
from qa.embed.base import Embedder, Vectors, length_sorted_batches
from qa.embed.registry import load_embedder
from qa.errors import ConfigError, ExecutorError, IndexCorruptError
from qa.index.executor import Executor, Spans

log = logging.getLogger(__name__)

#: Folder (inside the index folder) that holds the part files of builds in progress.
PARTS_DIR = ".ray-parts"
MISSING_RAY = "--executor ray needs the optional 'ray' extra: pip install 'seedqa[ray]'"

EmbedderFactory = Callable[[Settings, int], Embedder]


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`ConfigError` that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(MISSING_RAY) from exc
    return ray


def actor_embedder(settings: Settings, threads: int) -> Embedder:
    """The model an actor runs: ONNX Runtime with ``threads`` intra-op threads on a CPU
    worker (as many as the actor was given), else what :func:`load_embedder` picks (torch on
    a GPU worker, the fake model in tests)."""
    if settings.backend == "onnx" and settings.device in (None, "cpu") and settings.model != "fake":
        from qa.embed.models import default_device

        if default_device() == "cpu":
            from qa.embed.onnx_backend import OnnxEmbedder

            return OnnxEmbedder(model=settings.model, threads=threads)
    return load_embedder(settings)


def part_name(model_id: str, texts: Sequence[str], spans: Spans) -> str:
    """The content address of one batch: the same batch always maps to the same part file."""
    h = hashlib.blake2b(digest_size=20)
    h.update(model_id.encode("utf-8") + b"\x00")
    for text, sp in zip(texts, spans, strict=True):
        h.update(text.encode("utf-8") + b"\x00")
        h.update(json.dumps([list(s) for s in sp]).encode("ascii") + b"\x00")
    return f"{h.hexdigest()}.npz"


def write_part(path: Path, vectors: Vectors, sentences: list[Vectors]) -> str:
    """Write one batch's vectors aside, rename into place, and return the file's SHA-256."""
    counts = np.array([len(s) for s in sentences], dtype=np.int64)
    flat = (
        np.concatenate(sentences).astype(np.float32)
        if sentences
        else np.zeros((0, vectors.shape[1]), dtype=np.float32)
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, vectors=vectors, sentences=flat, counts=counts)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_part(path: Path, *, rows: int, sha256: str) -> tuple[Vectors, list[Vectors]]:
    """One part's vectors, after checking its checksum and row count against the actor's word."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExecutorError(f"part '{path}' of the Ray build is unreadable ({exc})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise IndexCorruptError(f"part '{path}' of the Ray build does not match its checksum")
    with np.load(path, allow_pickle=False) as npz:
        vectors, flat, counts = npz["vectors"], npz["sentences"], npz["counts"]
    if len(vectors) != rows or len(counts) != rows or int(counts.sum()) != len(flat):
        raise IndexCorruptError(
            f"part '{path}' of the Ray build holds {len(vectors)} passages, expected {rows}"
        )
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return vectors, [flat[bounds[i] : bounds[i + 1]] for i in range(rows)]


class EmbedBatches:
    """The Ray Data UDF: one instance per actor, the model loaded once in ``__init__``."""

    def __init__(self, settings: Settings, parts_dir: str, factory: EmbedderFactory) -> None:
        import ray

        context: Any = ray.get_runtime_context()
        cpus = context.get_assigned_resources().get("CPU", 1.0)
        self.threads = max(1, int(cpus))
        self.embedder = factory(settings, self.threads)
        self.parts_dir = Path(parts_dir)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Embed each pre-formed batch of the block and write it as one part file."""
        names, rows, sums = [], [], []
        for name, payload in zip(batch["part"], batch["payload"], strict=True):
            texts, spans = json.loads(str(payload))
            spans = [[(int(s), int(e)) for s, e in sp] for sp in spans]
            vectors, sentences = self.embedder.embed_passages(
                texts, spans, batch_size=max(len(texts), 1)
            )
            names.append(str(name))
            rows.append(len(texts))
            sums.append(write_part(self.parts_dir / str(name), vectors, sentences))
        return {
            "part": np.array(names),
            "rows": np.array(rows, dtype=np.int64),
            "sha256": np.array(sums),
        }


def cluster_address(configured: str | None) -> str:
    """The address ``ray.init`` gets: the configured one, else ``RAY_ADDRESS``, else ``"local"``.

    ``ray.init(address=None)`` would join whatever cluster ``/tmp/ray/ray_current_cluster``
    names, say one another program left running on this machine; unset means a private one.
    """
    return configured or os.environ.get("RAY_ADDRESS") or "local"


class RayExecutor(Executor):
    """Runs the embedding of a build as a Ray Data pipeline over a pool of actors.

    Joins the cluster at ``settings.ray_address`` when Ray is not initialised yet (see
    :func:`cluster_address`: unset starts a private local one); ``settings.ray_workers``
    actors (0: one per CPU).
    ``factory`` makes each actor's model (default: :func:`actor_embedder`).
    """

    def __init__(self, settings: Settings, *, factory: EmbedderFactory | None = None) -> None:
        self.ray = import_ray()
        self.settings = settings
        self.factory = factory or actor_embedder
        self._started = False
        self.embedded = 0

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        address = cluster_address(self.settings.ray_address)
        log.info("joining Ray cluster at %s", address)
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot join the Ray cluster at {address!r}: {exc}") from exc
        self._started = True

    def _pool(self) -> tuple[int, float]:
        """(actors, CPUs per actor): ``ray_workers`` actors sharing the cluster's CPUs."""
        total = max(1.0, float(self.ray.cluster_resources().get("CPU", 1.0)))
        largest = max(
            (float(n["Resources"].get("CPU", 0.0)) for n in self.ray.nodes() if n["Alive"]),
            default=total,
        )
        workers = self.settings.ray_workers or int(total)
        # An actor lives on one node: it cannot ask for more CPUs than the largest node has.
        per_actor = max(1.0, min(largest, float(int(total // workers) or 1)))
        return workers, per_actor

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Spans,
        *,
        embedder: Embedder,
        batch_size: int,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """Embed on the cluster, in the local path's batches; see the module docstring."""
        dim = embedder.dimension
        vectors = np.empty((len(texts), dim), dtype=np.float32)
        sentences: list[Vectors] = [np.empty((0, dim), dtype=np.float32)] * len(texts)
        if not texts:
            return vectors, sentences
        batches = list(length_sorted_batches(texts, batch_size, progress=False))
        rows, names = [], []
        for idx in batches:
            bt, bs = [texts[i] for i in idx], [list(sentence_spans[i]) for i in idx]
            names.append(part_name(embedder.model_id, bt, bs))
            rows.append({"part": names[-1], "payload": json.dumps([bt, bs], ensure_ascii=False)})
        with self._parts_folder() as parts:
            results = self._run(rows, parts)
            got = {str(r["part"]): (int(r["rows"]), str(r["sha256"])) for r in results}
            if set(got) != set(names):
                raise ExecutorError(
                    f"the Ray build returned {len(got)} parts for {len(set(names))} batches"
                )
            for idx, name in zip(batches, names, strict=True):
                n, digest = got[name]
                if n != len(idx):
                    raise ExecutorError(f"part '{name}' holds {n} passages, sent {len(idx)}")
                pv, ps = read_part(parts / name, rows=len(idx), sha256=digest)
                vectors[idx] = pv
                for j, i in enumerate(idx):
                    sentences[i] = ps[j]
        self.embedded += len(texts)
        return vectors, sentences

    def _run(self, rows: list[dict[str, str]], parts: Path) -> list[dict[str, Any]]:
        """The Ray Data pipeline: one row per batch, mapped by the actor pool."""
        self._connect()
        ray = self.ray
        workers, per_actor = self._pool()
        workers = min(workers, len(rows))  # an actor with no batch would only cost its start
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        log.info(
            "embedding %d batches on %d Ray actors (%s CPUs each)", len(rows), workers, per_actor
        )
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        mapped = ds.map_batches(
            EmbedBatches,
            fn_constructor_kwargs={
                # The admin token stays on the driver: actors only embed.
                "settings": dataclasses.replace(self.settings, admin_token=None),
                "parts_dir": str(parts),
                "factory": self.factory,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=per_actor,
            # device = "cuda": each actor holds one GPU and runs the torch backend on it.
            num_gpus=1 if (self.settings.device or "").startswith("cuda") else None,
        )
        try:
            return list(mapped.take_all())
        except Exception as exc:  # Ray wraps worker failures in its own exception types
            raise ExecutorError(f"the Ray embedding pipeline failed: {exc}") from exc

    def _parts_folder(self) -> _PartsFolder:
        return _PartsFolder(self.settings.index_dir)

    def close(self) -> None:
        """Leave the cluster if this executor started it."""
        if self._started:
            self.ray.shutdown()
            self._started = False


class _PartsFolder:
    """A private folder for one build's parts; removed afterwards, whatever happened.

    Leftovers of a driver that was killed are removed at the next build (it holds the build
    lock, so no other build is writing parts).
    """

    def __init__(self, index_dir: Path) -> None:
        self.root = (index_dir / PARTS_DIR).resolve()
        self.path = self.root / secrets.token_hex(6)

    def __enter__(self) -> Path:
        shutil.rmtree(self.root, ignore_errors=True)
        self.path.mkdir(parents=True)
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def iter_parts(index_dir: Path) -> Iterator[Path]:
    """Part files currently in the index folder (tests check that builds leave none)."""
    root = index_dir / PARTS_DIR
    return root.rglob("*.npz") if root.is_dir() else iter(())
