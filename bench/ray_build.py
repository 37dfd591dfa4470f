"""Builds on Ray against the local path: embedding rate, fixed overhead, memory per actor.

Three measurements, each on the real bundled model through ONNX Runtime (the fake model with
``--quick``), in this order:

* **Seeds build**: ``build_index`` of ``seeds/`` from scratch with ``executor = "local"``, then
  with ``executor = "ray"`` and no cluster running, taking turns for ``--rounds``; the Ray figure
  includes starting a local cluster, the actors and the pipeline: the fixed overhead a user sees
  (target: <= 15 s more).
* **Embedding rate**: the passages of ``--docs`` SciFact abstracts (chunked once, by a local
  build) are embedded by :class:`~qa.index.executor.LocalExecutor` and by
  :class:`~qa.index.ray_executor.RayExecutor` with 1 and 2 actors on one running cluster, each in
  the same batches (``--batch-size``), taking turns for ``--rounds`` rounds (medians are
  reported). A Ray run's time includes starting its actors (Ray Data starts a pool per run);
  ``steady`` subtracts a one-batch run's time to leave the rate.
* **Memory per actor**: the largest ``VmRSS`` of each ``ray::MapWorker`` process seen while the
  2-actor run works (sampled every 0.2 s).

    .venv/bin/python bench/ray_build.py                # ~5 min on 2 cores
    .venv/bin/python bench/ray_build.py --quick        # fake model, 20 documents
    .venv/bin/python bench/ray_build.py --seeds-only --rounds 3   # the fixed overhead only
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common as c


def actor_rss(stop: threading.Event, seen: dict[int, int]) -> None:
    """Record the largest VmRSS (kB) of every Ray MapWorker process until ``stop``."""
    while not stop.wait(0.2):
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapWorker" in cmd:
                kb = c.proc_status_kb(int(proc.name), "VmRSS")
                if kb is not None:
                    seen[int(proc.name)] = max(seen.get(int(proc.name), 0), kb)


def seeds_builds(model: str, rounds: int, work: Path) -> dict[str, Any]:
    """Seconds for a local and a Ray build of the seeds from scratch, taking turns; each Ray
    build starts (and its executor stops) a private local cluster."""
    from qa.config import Settings
    from qa.index.builder import build_index

    shutil.copytree(c.SEEDS, work / "seeds", ignore=shutil.ignore_patterns(".*", "README*"))
    local: list[float] = []
    remote: list[float] = []
    passages = 0
    for r in range(rounds):
        base = Settings(seeds_dir=work / "seeds", index_dir=work / f"local{r}", model=model)
        t = time.perf_counter()
        build_index(base)
        local.append(time.perf_counter() - t)
        t = time.perf_counter()
        passages = build_index(base.replace(index_dir=work / f"ray{r}", executor="ray")).passages
        remote.append(time.perf_counter() - t)
    return {
        "passages": passages,
        "local_s": [round(x, 2) for x in local],
        "ray_s": [round(x, 2) for x in remote],
        "ray_overhead_s": round(statistics.median(remote) - statistics.median(local), 2),
    }


def passages_of(model: str, docs: int, work: Path) -> tuple[list[str], list[Any], Any]:
    """Texts and sentence spans of the passages a build of ``docs`` SciFact abstracts embeds."""
    from qa.config import Settings
    from qa.embed.registry import load_embedder
    from qa.index.builder import build_index
    from qa.index.generation import load_index

    c.write_scifact_seeds(work / "scifact", docs)
    settings = Settings(seeds_dir=work / "scifact", index_dir=work / "sf", model=model)
    build_index(settings)
    passages = list(load_index(settings).passages)
    texts = [p.embed_text() for p in passages]
    spans = [p.sentence_spans_in_embed_text() for p in passages]
    return texts, spans, load_embedder(settings)


def ray_run(
    model: str, workers: int, data: tuple[list[str], list[Any], Any], batch_size: int, work: Path
) -> dict[str, float]:
    """One Ray run: a one-batch run (actor start), then all passages with RSS sampling."""
    from qa.config import Settings
    from qa.index.ray_executor import RayExecutor

    texts, spans, embedder = data
    settings = Settings(model=model, index_dir=work / f"r{workers}", ray_workers=workers)
    executor = RayExecutor(settings)
    t = time.perf_counter()
    executor.embed_passages(texts[:1], spans[:1], embedder=embedder, batch_size=batch_size)
    one_s = time.perf_counter() - t
    seen: dict[int, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=actor_rss, args=(stop, seen), daemon=True)
    sampler.start()
    t = time.perf_counter()
    executor.embed_passages(texts, spans, embedder=embedder, batch_size=batch_size)
    full_s = time.perf_counter() - t
    stop.set()
    sampler.join()
    # Idle workers of the previous pool may be sampled too: the largest is the figure.
    return {"seconds": full_s, "one_batch_s": one_s, "rss_kb": max(seen.values(), default=0)}


def rates(model: str, docs: int, batch_size: int, rounds: int, work: Path) -> dict[str, Any]:
    """Passages per second: local, Ray with 1 and with 2 actors, taking turns for ``rounds``."""
    import ray

    from qa.index.executor import LocalExecutor

    data = passages_of(model, docs, work)
    texts, spans, embedder = data
    n = len(texts)
    out: dict[str, Any] = {"passages": n, "batch_size": batch_size, "rounds": rounds}
    t = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    out["cluster_start_s"] = round(time.perf_counter() - t, 2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    local: list[float] = []
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    try:
        for _ in range(rounds):
            t = time.perf_counter()
            LocalExecutor().embed_passages(texts, spans, embedder=embedder, batch_size=batch_size)
            local.append(time.perf_counter() - t)
            for workers in (1, 2):
                runs[workers].append(ray_run(model, workers, data, batch_size, work))
    finally:
        ray.shutdown()
    local_rate = n / statistics.median(local)
    out["local"] = {"seconds": [round(x, 2) for x in local], "passages_per_s": round(local_rate, 1)}
    for workers, rs in runs.items():
        full = statistics.median(r["seconds"] for r in rs)
        # NaN when a run is no longer than its one-batch run (tiny inputs, --quick).
        steady = statistics.median(
            (n - 1) / (r["seconds"] - r["one_batch_s"])
            if r["seconds"] > r["one_batch_s"]
            else float("nan")
            for r in rs
        )
        out[f"ray_{workers}"] = {
            "seconds": [round(r["seconds"], 2) for r in rs],
            "passages_per_s": round(n / full, 1),
            "one_batch_run_s": [round(r["one_batch_s"], 2) for r in rs],
            "steady_passages_per_s": round(steady, 1),
            "vs_local": c.ratio(n / full, local_rate),
            "steady_vs_local": c.ratio(steady, local_rate),
            "actor_rss_mb_max": round(max(r["rss_kb"] for r in rs) / 1024),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per figure."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=150, help="SciFact abstracts for the rate")
    p.add_argument("--batch-size", type=int, default=4, help="the default build batch size")
    p.add_argument("--rounds", type=int, default=2, help="turns of local, Ray 1, Ray 2")
    p.add_argument("--seeds-only", action="store_true", help="only the seeds builds")
    args = p.parse_args(argv)
    model = "fake" if args.quick else "bundled"
    docs = 20 if args.quick else args.docs
    result: dict[str, Any] = {"model": model, "docs": docs, "loadavg_start": c.loadavg()}
    with tempfile.TemporaryDirectory(prefix="seedqa-ray-") as tmp:
        work = Path(tmp)
        rounds = 1 if args.quick else args.rounds
        result["seeds_build"] = seeds_builds(model, rounds, work)
        if not args.seeds_only:
            result["rate"] = rates(model, docs, args.batch_size, rounds, work)
    result["loadavg_end"] = c.loadavg()
    result["machine"] = c.machine()
    c.write_result(args.out, "ray_build", result)
    sb = result["seeds_build"]
    print(
        f"seeds ({sb['passages']} passages): local {sb['local_s']} s, ray {sb['ray_s']} s "
        f"(median +{sb['ray_overhead_s']} s, each Ray build starting its own local cluster)"
    )
    if "rate" in result:
        r = result["rate"]
        print(f"cluster start {r['cluster_start_s']} s")
        print(f"rate over {r['passages']} passages, batch {r['batch_size']}:")
        print(f"  local  {r['local']['passages_per_s']} passages/s")
        for w in (1, 2):
            x = r[f"ray_{w}"]
            print(
                f"  ray {w}  {x['passages_per_s']} passages/s ({x['vs_local']}x local), steady "
                f"{x['steady_passages_per_s']} ({x['steady_vs_local']}x); one-batch run "
                f"{x['one_batch_run_s']} s; actor RSS <= {x['actor_rss_mb_max']} MB"
            )
    print(f"load average {result['loadavg_start']} -> {result['loadavg_end']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
