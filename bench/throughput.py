"""Throughput of ``POST /api/ask`` with 1, 4 and 16 concurrent HTTP clients on loopback.

One uvicorn subprocess serves ``web.app.create_app(settings)`` over an index of ``seeds/`` with
the question cache off, so every request embeds its question. Each client is a thread with its
own keep-alive ``httpx.Client`` asking the evaluation questions in its own rotation; a level
runs for a fixed time (and at most a fixed number of requests). The server batches questions
that arrive together (``qa/batching.py``), which is what lets more clients get more done.

For scale, the bare model's own rates are measured too: one question per ``encode`` call, and
16 questions per call (the most batching could give at 16 clients).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common as c
from _server import ask_http, start_server


def run_level(
    base: str, questions: list[str], clients: int, *, answer: bool, seconds: float, cap: int
) -> dict[str, Any]:
    """Requests per second and latency with ``clients`` threads asking until time runs out."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]
    per_client_cap = max(1, cap // clients)

    def worker(i: int) -> None:
        with httpx.Client(base_url=base, timeout=120) as client:
            n = 0
            ask_http(client, questions[i % len(questions)], answer=answer)  # open the connection
            start.wait()
            while time.perf_counter() < stop_at[0] and n < per_client_cap:
                q = questions[(i * 7 + n) % len(questions)]
                t = time.perf_counter()
                r = ask_http(client, q, answer=answer)
                latencies[i].append(time.perf_counter() - t)
                if r.status_code != 200:  # type: ignore[attr-defined]
                    errors[i] += 1
                n += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    # Every client has connected when the barrier opens; the clock starts then.
    t0 = time.perf_counter()
    stop_at[0] = t0 + 3600
    start.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    done = sum(len(x) for x in latencies)
    return {
        "clients": clients,
        "requests": done,
        "errors": sum(errors),
        "seconds": round(elapsed, 2),
        "qps": round(done / elapsed, 2),
        "latency": c.summary_ms([x for xs in latencies for x in xs]),
    }


def bare_rates(questions: list[str], seconds: float) -> dict[str, float]:
    """Questions per second of the bare model, one per call and 16 per call."""
    model = c.load_bare_model()
    model.encode(questions[:16])
    out = {}
    for batch in (1, 16):
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            lo = (n * batch) % len(questions)
            chunk = (questions * 2)[lo : lo + batch]
            model.encode(chunk, batch_size=batch)
            n += 1
        out[f"batch_{batch}_qps"] = round(n * batch / (time.perf_counter() - t0), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each level")
    p.add_argument("--max-requests", type=int, default=5000, help="cap per level")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--embedder", choices=["torch", "onnx"], default="onnx")
    p.add_argument("--name", default="throughput")
    args = p.parse_args(argv)
    from qa.config import Settings
    from qa.index.builder import build_index

    seconds = 1.0 if args.quick else args.seconds
    questions = c.questions()
    load_start = c.loadavg()
    levels: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="seedqa-bench-") as tmp:
        index_dir = Path(tmp) / "index"
        settings = Settings(
            seeds_dir=c.SEEDS, index_dir=index_dir, question_cache_size=0, backend=args.embedder
        )
        build_index(settings)
        with start_server(
            index_dir=index_dir, seeds_dir=c.SEEDS, cache_size=0, embedder=args.embedder
        ) as (base, _):
            for answer in (False, True):
                key = "answer" if answer else "no_answer"
                levels[key] = []
                for n in args.clients:
                    row = run_level(
                        base,
                        questions,
                        n,
                        answer=answer,
                        seconds=seconds,
                        cap=args.max_requests,
                    )
                    levels[key].append(row)
                    print(
                        f"{key} clients={n}: {row['qps']} q/s, p50 "
                        f"{row['latency']['p50_ms']} ms, load {c.loadavg()}",
                        file=sys.stderr,
                        flush=True,
                    )
    bare = bare_rates(questions, 2.0 if args.quick else 10.0)
    scaling = {}
    for key, rows in levels.items():
        one = next((r["qps"] for r in rows if r["clients"] == 1), None)
        for r in rows:
            r["speedup_vs_1"] = c.ratio(r["qps"], one) if one else None
        most = max(rows, key=lambda r: r["clients"])
        scaling[key] = {
            "clients": most["clients"],
            "speedup_vs_1": most["speedup_vs_1"],
            "target": 2.0,
            "met": bool(most["speedup_vs_1"] and most["speedup_vs_1"] >= 2.0),
        }
    result = {
        "quick": args.quick,
        "embedder": args.embedder,
        "loadavg_start": load_start,
        "command": "python bench/throughput.py " + " ".join(argv or sys.argv[1:]),
        "seconds_per_level": seconds,
        "levels": levels,
        "bare_model": bare,
        "targets": scaling,
    }
    c.write_result(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
