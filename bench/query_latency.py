"""Query latency: ``QAService.ask`` in-process and ``POST /api/ask`` over HTTP, vs the bare model.

The index covers ``seeds/`` (built into a temporary folder); the questions are those of
``eval/seeds_questions.jsonl``. Every question is measured in every configuration in turn
(bare ``SentenceTransformer.encode([q])``, in-process, HTTP; answer off and on), rotating the
order, so a change in machine load hits all of them alike. The uncached figures use
``question_cache_size=0``; the cached ones a second service and server with the default cache,
each question asked once before it is timed.

The HTTP server is a uvicorn subprocess serving ``web.app.create_app(settings)`` on 127.0.0.1;
the client is one keep-alive ``httpx.Client``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as c
from _server import ask_http, start_server

TARGETS = {"http_no_answer": 1.3, "http_answer": 1.6}


def measure(
    fns: dict[str, Callable[[str], object]], questions: list[str], rounds: int
) -> dict[str, list[float]]:
    """Seconds per call of every function on every question, interleaved and rotated."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    turn = 0
    for _ in range(rounds):
        for q in questions:
            turn += 1
            order = names[turn % len(names) :] + names[: turn % len(names)]
            for name in order:
                t = time.perf_counter()
                fns[name](q)
                times[name].append(time.perf_counter() - t)
    return times


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="passes over the question set")
    p.add_argument("--embedder", choices=["torch", "onnx"], default="onnx")
    p.add_argument("--torch-threads", type=int, help="torch.set_num_threads in both processes")
    p.add_argument("--name", default="query_latency")
    args = p.parse_args(argv)
    import httpx

    from qa.ask.service import QAService
    from qa.config import Settings
    from qa.index.builder import build_index

    questions = c.questions(limit=5 if args.quick else None)
    rounds = 1 if args.quick else args.rounds
    load_start = c.loadavg()
    with tempfile.TemporaryDirectory(prefix="seedqa-bench-") as tmp:
        index_dir = Path(tmp) / "index"
        settings = Settings(
            seeds_dir=c.SEEDS,
            index_dir=index_dir,
            question_cache_size=0,
            reload_interval=0,
            backend=args.embedder,
        )
        c.set_torch_threads(args.torch_threads)
        build = build_index(settings)
        service = QAService(settings)
        service.start(update=False, poll=False)
        bare = c.load_bare_model()
        bare.encode(["warm-up"])
        server_extra = ["--torch-threads", str(args.torch_threads)] if args.torch_threads else []
        http = {}
        with (
            start_server(
                index_dir=index_dir,
                seeds_dir=c.SEEDS,
                cache_size=0,
                embedder=args.embedder,
                extra=server_extra,
            ) as (base, _),
            httpx.Client(base_url=base, timeout=60) as client,
        ):

            def http_ask(q: str, answer: bool) -> None:
                r = ask_http(client, q, answer=answer)
                if r.status_code != 200:  # type: ignore[attr-defined]
                    raise RuntimeError(f"/api/ask answered {r.status_code}: {r.text[:200]}")  # type: ignore[attr-defined]

            timings: list[dict[str, float]] = []

            def ask(q: str, answer: bool) -> None:
                timings.append(service.ask(q, answer=answer).timings)

            own = service.embedder
            fns: dict[str, Callable[[str], object]] = {
                "bare_encode": lambda q: bare.encode([q]),
                # The service's own embedder called directly: the floor for this backend.
                "service_embedder_encode": lambda q: own.encode_batch([q]),
                "inprocess_no_answer": lambda q: ask(q, False),
                "inprocess_answer": lambda q: ask(q, True),
                "http_no_answer": lambda q: http_ask(q, False),
                "http_answer": lambda q: http_ask(q, True),
            }
            for q in questions[:3]:  # warm every path once
                for fn in fns.values():
                    fn(q)
            timings.clear()
            uncached = measure(fns, questions, rounds)
            print(f"uncached done, load {c.loadavg()}", file=sys.stderr, flush=True)
            http["uncached"] = uncached
        service.close()

        # Cached: the same questions again, each asked once before timing.
        cached_settings = settings.replace(question_cache_size=1024)
        cached_service = QAService(cached_settings)
        cached_service.start(update=False, poll=False)
        with (
            start_server(
                index_dir=index_dir,
                seeds_dir=c.SEEDS,
                cache_size=1024,
                embedder=args.embedder,
                extra=server_extra,
            ) as (base, _),
            httpx.Client(base_url=base, timeout=60) as client,
        ):
            cfns: dict[str, Callable[[str], object]] = {
                "bare_encode": lambda q: bare.encode([q]),
                "service_embedder_encode": lambda q: own.encode_batch([q]),
                "inprocess_no_answer": lambda q: cached_service.ask(q, answer=False),
                "inprocess_answer": lambda q: cached_service.ask(q, answer=True),
                "http_no_answer": lambda q: ask_http(client, q, answer=False),
                "http_answer": lambda q: ask_http(client, q, answer=True),
            }
            for q in questions:
                for fn in cfns.values():
                    fn(q)
            cached = measure(cfns, questions, rounds)
        cached_service.close()

    def table(times: dict[str, list[float]]) -> dict[str, Any]:
        rows = {name: c.summary_ms(ts) for name, ts in times.items()}
        base_p50 = rows["bare_encode"]["p50_ms"]
        own_p50 = rows["service_embedder_encode"]["p50_ms"]
        for row in rows.values():
            row["p50_ratio_to_bare"] = c.ratio(row["p50_ms"], base_p50)
            row["p50_ratio_to_service_embedder"] = c.ratio(row["p50_ms"], own_p50)
        return rows

    unc = table(http["uncached"])
    breakdown = {
        key: round(statistics.median(t[key] for t in timings if key in t), 3)
        for key in ("embed_ms", "search_ms", "answer_ms")
        if any(key in t for t in timings)
    }
    result = {
        "quick": args.quick,
        "embedder": args.embedder,
        "torch_threads": args.torch_threads,
        "loadavg_start": load_start,
        "command": "python bench/query_latency.py " + " ".join(argv or sys.argv[1:]),
        "questions": len(questions),
        "rounds": rounds,
        "passages": build.passages,
        "retrieval_mode": settings.retrieval_mode,
        "uncached": unc,
        "cached": table(cached),
        "inprocess_breakdown_p50_ms": breakdown,
        "targets": {
            name: {
                "max_ratio": limit,
                "ratio": unc[name]["p50_ratio_to_bare"],
                "met": unc[name]["p50_ratio_to_bare"] <= limit,
            }
            for name, limit in TARGETS.items()
        },
    }
    c.write_result(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
