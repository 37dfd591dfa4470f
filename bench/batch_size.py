"""Build-time embedding rate by batch size, on both backends, for the ``batch_size`` default.

The texts are real seedqa passages: SciFact abstracts written as seed files and chunked exactly
as a build chunks them (title prefix included), so lengths and padding are what a build sees.
Each (backend, batch size) pair embeds the same passages with ``embed_passages`` (passage and
sentence vectors, as a build does). Pairs run in turns, the order reversed every other round,
and the medians are reported as passages per second and as a ratio to batch 32, the usual
sentence-transformers and txtai default. ``--questions`` embeds the evaluation questions
instead: the most that batching concurrent questions can gain, with no server around it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c


def passages(limit: int) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Embedded texts and sentence spans of the passages of ``limit`` SciFact documents."""
    from qa.config import Settings
    from qa.embed.registry import load_embedder
    from qa.ingest.articles import parse_article
    from qa.ingest.passages import make_passages
    from qa.ingest.seeds import scan

    settings = Settings()
    embedder = load_embedder(settings)
    texts: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    with tempfile.TemporaryDirectory(prefix="seedqa-bench-") as tmp:
        c.write_scifact_seeds(Path(tmp), limit=limit)
        for seed in scan(Path(tmp))[0]:
            article = parse_article(seed)
            for p in make_passages(
                article,
                embedder,
                chunk_tokens=settings.chunk_tokens,
                chunk_overlap=settings.chunk_overlap,
            ):
                texts.append(p.embed_text())
                spans.append(p.sentence_spans_in_embed_text())
    return texts, spans


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=80, help="SciFact documents to chunk")
    p.add_argument("--rounds", type=int, default=3, help="turns over all pairs")
    p.add_argument("--sizes", default="4,8,16,32,64", help="batch sizes, comma-separated")
    p.add_argument(
        "--questions",
        action="store_true",
        help="embed the evaluation questions (3 passes each) instead of passages: how much "
        "batching concurrent questions can gain at most",
    )
    p.add_argument("--name", default="batch_size")
    args = p.parse_args(argv)
    from qa.embed.onnx_backend import OnnxEmbedder
    from qa.embed.torch_backend import SentenceTransformerEmbedder

    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes, rounds, docs = sizes[:2], 1, 4
    else:
        rounds, docs = args.rounds, args.docs
    if args.questions:
        texts = c.questions(limit=8 if args.quick else None) * 3
        spans: list[list[tuple[int, int]]] = [[] for _ in texts]
    else:
        texts, spans = passages(docs)
    load_start = c.loadavg()
    backends: dict[str, Any] = {
        "onnx": OnnxEmbedder(model="bundled"),
        "torch": SentenceTransformerEmbedder(model="bundled", device="cpu"),
    }
    for embedder in backends.values():  # load and warm both
        embedder.embed_passages(texts[:8], spans[:8], batch_size=8)
    pairs = [(name, size) for name in backends for size in sizes]
    seconds: dict[tuple[str, int], list[float]] = {pair: [] for pair in pairs}
    for r in range(rounds):
        for name, size in pairs if r % 2 == 0 else pairs[::-1]:
            t = time.perf_counter()
            if args.questions:
                backends[name].embed(texts, batch_size=size)
            else:
                backends[name].embed_passages(texts, spans, batch_size=size)
            seconds[(name, size)].append(time.perf_counter() - t)
            print(
                f"round {r}: {name} batch {size}: {seconds[(name, size)][-1]:.2f}s",
                file=sys.stderr,
                flush=True,
            )
    results: dict[str, Any] = {}
    for name in backends:
        rows = {}
        for size in sizes:
            median = statistics.median(seconds[(name, size)])
            rows[str(size)] = {
                "seconds": [round(s, 3) for s in seconds[(name, size)]],
                "median_s": round(median, 3),
                "passages_per_s": round(len(texts) / median, 2),
            }
        if "32" in rows:
            for row in rows.values():
                row["speed_over_batch_32"] = c.ratio(rows["32"]["median_s"], row["median_s"])
        results[name] = rows
    fastest = {
        name: max(rows, key=lambda s: rows[s]["passages_per_s"]) for name, rows in results.items()
    }
    c.write_result(
        args.out,
        args.name,
        {
            "benchmark": args.name,
            "quick": args.quick,
            "command": "python bench/batch_size.py " + " ".join(argv or sys.argv[1:]),
            "machine": c.machine(),
            "loadavg_start": load_start,
            "loadavg_end": c.loadavg(),
            "texts": "questions" if args.questions else "passages",
            "documents": None if args.questions else docs,
            "passages": len(texts),
            "mean_chars": round(statistics.fmean(len(t) for t in texts), 1),
            "rounds": rounds,
            "backends": results,
            "fastest_batch_size": fastest,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
