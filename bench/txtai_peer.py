"""seedqa against txtai: index time and query latency, same model folder, same passages.

SciFact abstracts are written as seed files and indexed by seedqa (``build_index``, full). The
passages seedqa made (title + text, as seedqa embeds them) are then indexed by txtai
``Embeddings`` loaded from the same bundled model folder, with ``content=True`` so a search
returns the passage text as seedqa's does. Below 5,000 rows both use an exact FAISS index
(txtai ``IDMap,Flat``, seedqa ``IndexFlatIP``).

Queries are SciFact claims, one at a time, alternating between the two libraries:
txtai ``Embeddings.search(q, 5)`` against seedqa ``QAService.ask(q, k=5, answer=False)`` in
dense mode (what txtai does) and in seedqa's default hybrid mode. seedqa's question cache is
off; txtai has none. Needs the ``bench`` extra (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c


def claims(limit: int) -> list[str]:
    """Distinct SciFact claims."""
    path = c.SCIFACT.parent / "queries.jsonl"
    out: dict[str, None] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.setdefault(json.loads(line)["text"], None)
            if len(out) >= limit:
                break
    return list(out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=1000, help="SciFact documents to index")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--reps", type=int, default=3, help="index builds to time on each side")
    p.add_argument("--embedder", choices=["torch", "onnx"], default="onnx")
    p.add_argument(
        "--txtai-encodebatch",
        type=int,
        help="txtai's model batch size (default: txtai's own, 32); seedqa uses its batch_size",
    )
    p.add_argument("--name", default="txtai_peer")
    args = p.parse_args(argv)
    try:
        from txtai import Embeddings
    except ImportError:
        print("txtai is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    from qa.ask.service import QAService
    from qa.config import Settings
    from qa.embed.registry import load_embedder
    from qa.index import storage as store
    from qa.index.builder import build_index
    from qa.index.storage import read_passages

    docs = 20 if args.quick else args.docs
    nq = 10 if args.quick else args.queries
    reps = 1 if args.quick else args.reps
    load_start = c.loadavg()
    model_dir = c.bundled_model_path()
    with tempfile.TemporaryDirectory(prefix="seedqa-bench-") as tmp:
        seeds = Path(tmp) / "seeds"
        written = c.write_scifact_seeds(seeds, limit=docs)
        settings = Settings(
            seeds_dir=seeds,
            index_dir=Path(tmp) / "index",
            question_cache_size=0,
            reload_interval=0,
            backend=args.embedder,
        )
        # Both sides load and warm their models before any timing.
        txtai_args: dict[str, Any] = {"path": model_dir, "content": True, "backend": "faiss"}
        if args.txtai_encodebatch:
            txtai_args["encodebatch"] = args.txtai_encodebatch
        load_embedder(settings).embed(["warm-up"] * 4)
        txtai = Embeddings(**txtai_args)
        txtai.index([(0, "warm-up", None)])  # load and warm txtai's model too

        seed_s: list[float] = []
        txtai_s: list[float] = []
        rows: list[tuple[int, str, None]] = []
        summary = None
        for _ in range(reps):
            t = time.perf_counter()
            summary = build_index(settings, rebuild=True)
            seed_s.append(time.perf_counter() - t)
            if not rows:
                passages = read_passages(store.current_path(settings.index_dir))
                rows = [(i, p.embed_text(), None) for i, p in enumerate(passages)]
            txtai = Embeddings(**txtai_args)
            t = time.perf_counter()
            txtai.index(rows)
            txtai_s.append(time.perf_counter() - t)
            print(
                f"index: seedqa {seed_s[-1]:.1f}s, txtai {txtai_s[-1]:.1f}s, load {c.loadavg()}",
                file=sys.stderr,
                flush=True,
            )
        assert summary is not None
        txtai_config = dict(txtai.config)

        service = QAService(settings)
        service.start(update=False, poll=False)
        qs = claims(nq)
        fns = {
            "txtai_search": lambda q: txtai.search(q, 5),
            "seedqa_dense": lambda q: service.ask(q, k=5, answer=False, mode="dense"),
            "seedqa_hybrid": lambda q: service.ask(q, k=5, answer=False),
            "seedqa_hybrid_answer": lambda q: service.ask(q, k=5, answer=True),
        }
        for q in qs[:3]:
            for fn in fns.values():
                fn(q)
        names = list(fns)
        times: dict[str, list[float]] = {n: [] for n in names}
        overlap = []
        for i, q in enumerate(qs):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                t = time.perf_counter()
                out = fns[name](q)
                times[name].append(time.perf_counter() - t)
                if name == "txtai_search":
                    tx_ids = {int(r["id"]) for r in out}  # type: ignore[union-attr]
                elif name == "seedqa_dense":
                    sq_ids = {h.row for h in out.passages}  # type: ignore[union-attr]
            overlap.append(len(tx_ids & sq_ids) / 5)
        service.close()

    lat = {name: c.summary_ms(ts) for name, ts in times.items()}
    tx_p50 = lat["txtai_search"]["p50_ms"]
    for row in lat.values():
        row["txtai_p50_over_this_p50"] = c.ratio(tx_p50, row["p50_ms"])
    seed_med = sorted(seed_s)[len(seed_s) // 2]
    txtai_med = sorted(txtai_s)[len(txtai_s) // 2]
    speedup = lat["seedqa_dense"]["txtai_p50_over_this_p50"]
    result: dict[str, Any] = {
        "quick": args.quick,
        "embedder": args.embedder,
        "loadavg_start": load_start,
        "command": "python bench/txtai_peer.py " + " ".join(argv or sys.argv[1:]),
        "documents": written,
        "passages": summary.passages,
        "txtai_config": {k: str(v) for k, v in txtai_config.items()},
        "batch_size": {
            "seedqa": settings.batch_size,
            "txtai": args.txtai_encodebatch or "default (32)",
        },
        "index_s": {
            "seedqa_full_build": [round(x, 3) for x in seed_s],
            "txtai_index": [round(x, 3) for x in txtai_s],
            "seedqa_median": round(seed_med, 3),
            "txtai_median": round(txtai_med, 3),
            "txtai_over_seedqa": c.ratio(txtai_med, seed_med),
        },
        "query": lat,
        "top5_overlap_dense": round(sum(overlap) / len(overlap), 4),
        "targets": {
            "query_speedup": {
                "min": 2.0,
                "txtai_p50_over_seedqa_dense_p50": speedup,
                "met": speedup >= 2.0,
            },
            "index_faster": {"met": seed_med < txtai_med},
        },
    }
    c.write_result(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
