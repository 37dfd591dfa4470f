"""Server start-up time to the first answered query, and peak memory, at two corpus sizes.

The index is built first (``python -m qa index``, not timed). Then ``serve.py`` is started as a
subprocess with ``QA_SEEDS_DIR`` / ``QA_INDEX_DIR`` pointing at it, and ``POST /api/ask`` is
polled until it answers 200: that wall time, from ``Popen`` on, is the start-up time. Peak
resident memory is ``VmHWM`` of ``/proc/<pid>/status`` after the first answer and after 50 more
questions. The corpora: ``seeds/`` (5 documents) and SciFact (5,183 documents).

For reference, the same is measured for a bare script that imports sentence-transformers, loads
the bundled model and encodes one question.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c
from _server import ask_http, free_port, wait_until_ready

BARE = """
import sys, time
t = time.perf_counter()
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(sys.argv[1], device="cpu")
m.encode(["When was the chamber founded?"])
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""


def serve_cmd(port: int) -> list[str]:
    """``serve.py`` on a loopback port (the backend comes from ``QA_BACKEND``)."""
    return [sys.executable, str(c.ROOT / "serve.py"), "--host", "127.0.0.1", "--port", str(port)]


def one_start(seeds: Path, index: Path, *, embedder: str, followups: list[str]) -> dict[str, Any]:
    """Start the server once: seconds to the first answer and peak RSS (MB)."""
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "QA_SEEDS_DIR": str(seeds),
        "QA_INDEX_DIR": str(index),
        "QA_RELOAD_INTERVAL": "0",
        "QA_BACKEND": embedder,
    }
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        serve_cmd(port),
        cwd=c.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, proc, timeout=600)
        first = time.perf_counter() - t0
        hwm_first = c.proc_status_kb(proc.pid, "VmHWM")
        with httpx.Client(base_url=base, timeout=60) as client:
            for q in followups:
                ask_http(client, q, answer=True)
        hwm = c.proc_status_kb(proc.pid, "VmHWM")
        rss = c.proc_status_kb(proc.pid, "VmRSS")
    except Exception:
        proc.kill()
        _, err = proc.communicate()
        sys.stderr.write(err.decode(errors="replace")[-3000:])
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {
        "first_answer_s": round(first, 3),
        "vmhwm_mb_at_first_answer": round((hwm_first or 0) / 1024, 1),
        "vmhwm_mb": round((hwm or 0) / 1024, 1),
        "vmrss_mb": round((rss or 0) / 1024, 1),
    }


def bare_start() -> dict[str, Any]:
    """Import, load the model and encode one question in a fresh interpreter."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", BARE, c.bundled_model_path()],
        capture_output=True,
        text=True,
        check=True,
        cwd=c.ROOT,
    )
    return {
        "first_encode_s": round(time.perf_counter() - t0, 3),
        "vmhwm_mb": round(int(out.stdout.split()[-1]) / 1024, 1),
    }


def write_eval_seeds(folder: Path, limit: int | None) -> int:
    """SciFact as seed files exactly as ``qa eval --beir`` writes them (names and text), so an
    index that ``qa eval --cache`` built is up to date for them."""
    from qa.evaluation.beir import beir_documents, read_beir

    documents, _ = beir_documents(read_beir(c.SCIFACT.parent, split="test"))
    folder.mkdir(parents=True)
    for stem, text in documents[:limit]:
        (folder / f"{stem}.txt").write_text(text, encoding="utf-8")
    return len(documents[:limit])


def build(seeds: Path, index: Path) -> None:
    """Build the index in a subprocess (``python -m qa index``), untimed."""
    subprocess.run(
        [sys.executable, "-m", "qa", "index", "--seeds", str(seeds), "--index", str(index)],
        check=True,
        cwd=c.ROOT,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3, help="starts per corpus")
    p.add_argument("--embedder", choices=["torch", "onnx"], default="onnx")
    p.add_argument("--name", default="startup")
    p.add_argument(
        "--index-cache",
        type=Path,
        help="keep the SciFact index here and reuse it; `qa eval --cache` folders work too",
    )
    args = p.parse_args(argv)
    reps = 1 if args.quick else args.reps
    followups = c.questions(limit=5 if args.quick else 50)
    load_start = c.loadavg()
    corpora: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="seedqa-bench-") as tmp:
        sets = [
            ("seeds_5_docs", c.SEEDS, None),
            ("scifact", Path(tmp) / "scifact", 20 if args.quick else None),
        ]
        for name, seeds, limit in sets:
            index = Path(tmp) / f"index-{name}"
            if seeds == c.SEEDS:
                docs = sum(1 for f in seeds.iterdir() if f.is_file())
            else:
                docs = write_eval_seeds(seeds, limit=limit)
                if args.index_cache is not None and not args.quick:
                    from qa.config import Settings
                    from qa.evaluation.corpus import cache_folder

                    index = cache_folder(args.index_cache, "scifact", Settings())
            t = time.perf_counter()
            build(seeds, index)
            build_s = time.perf_counter() - t
            runs = [
                one_start(seeds, index, embedder=args.embedder, followups=followups)
                for _ in range(reps)
            ]
            corpora[name] = {
                "documents": docs,
                "build_s_untimed_reference": round(build_s, 1),
                "runs": runs,
                "first_answer_s_median": round(
                    statistics.median(r["first_answer_s"] for r in runs), 3
                ),
                "vmhwm_mb_median": round(statistics.median(r["vmhwm_mb"] for r in runs), 1),
            }
            print(f"{name}: {corpora[name]}, load {c.loadavg()}", file=sys.stderr, flush=True)
    bare = [bare_start() for _ in range(reps)]
    bare_s = statistics.median(b["first_encode_s"] for b in bare)
    for row in corpora.values():
        row["first_answer_over_bare"] = c.ratio(row["first_answer_s_median"], bare_s)
    result = {
        "quick": args.quick,
        "embedder": args.embedder,
        "loadavg_start": load_start,
        "command": "python bench/startup.py " + " ".join(argv or sys.argv[1:]),
        "corpora": corpora,
        "bare_model_script": {
            "runs": bare,
            "first_encode_s_median": round(bare_s, 3),
            "vmhwm_mb_median": round(statistics.median(b["vmhwm_mb"] for b in bare), 1),
        },
    }
    c.write_result(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
