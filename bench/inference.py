"""Faster inference for the bundled model: torch thread counts against ONNX Runtime variants.

Each variant embeds (a) every evaluation question alone, as a query does, and (b) passages in
batches of 32, as a build does. Variants run in turns (A B C ... A B C ...) and the medians are
reported. Every variant's vectors are compared with the reference (sentence-transformers, torch,
default threads) on the seed passages and the questions: the minimum cosine must be >= 0.999.

The ONNX graph is exported locally from the bundled weights (``onnx_embedder.export_onnx``)
into a cache folder; nothing is downloaded. Needs ``onnxruntime`` and ``onnx``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as c
import numpy as np

MIN_COSINE = 0.999


def seed_passages() -> list[str]:
    """The texts seedqa embeds for ``seeds/`` (built with the real model into a temp folder)."""
    from qa.config import Settings
    from qa.index import storage as store
    from qa.index.builder import build_index
    from qa.index.storage import read_passages

    with tempfile.TemporaryDirectory(prefix="seedqa-bench-") as tmp:
        settings = Settings(seeds_dir=c.SEEDS, index_dir=Path(tmp))
        build_index(settings)
        return [p.embed_text() for p in read_passages(store.current_path(settings.index_dir))]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="turns over all variants")
    p.add_argument("--passages", type=int, default=512, help="SciFact texts for the batch test")
    p.add_argument("--cache-dir", type=Path, help="ONNX export cache (default ~/.cache/seedqa)")
    p.add_argument("--name", default="inference")
    args = p.parse_args(argv)
    import torch
    from onnx_embedder import onnx_variant

    from qa.embed.torch_backend import SentenceTransformerEmbedder

    rounds = 1 if args.quick else args.rounds
    questions = c.questions(limit=8 if args.quick else None)
    batch_texts = [
        f"{d['title']}\n{d['text']}" for d in c.scifact_docs(32 if args.quick else args.passages)
    ]
    load_start = c.loadavg()
    default_threads = torch.get_num_threads()
    ref = SentenceTransformerEmbedder(model="bundled")
    passages = seed_passages()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are expected
        onnx2 = onnx_variant(cache_dir=args.cache_dir, threads=2)
    first_load_s = time.perf_counter() - t
    variants: dict[str, tuple[Any, int | None]] = {
        f"torch_threads_{default_threads}": (ref, default_threads),
        "torch_threads_1": (ref, 1),
        "onnx_fp32_threads_2": (onnx2, None),
        "onnx_fp32_threads_1": (
            onnx_variant(cache_dir=args.cache_dir, threads=1),
            None,
        ),
    }
    if not args.quick:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            variants["onnx_fused_threads_2"] = (
                onnx_variant("opt", cache_dir=args.cache_dir, threads=2),
                None,
            )
            variants["onnx_int8_threads_2"] = (
                onnx_variant("int8", cache_dir=args.cache_dir, threads=2),
                None,
            )

    def use(threads: int | None) -> None:
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    # Accuracy first (reference at default threads).
    use(default_threads)
    ref_p = ref.embed(passages)
    ref_q = ref.embed(questions)
    accuracy: dict[str, dict[str, float]] = {}
    for name, (emb, threads) in variants.items():
        use(threads)
        cp = float(np.min(np.sum(emb.embed(passages) * ref_p, axis=1)))
        cq = float(np.min(np.sum(emb.embed(questions) * ref_q, axis=1)))
        accuracy[name] = {
            "min_cosine_passages": round(cp, 6),
            "min_cosine_questions": round(cq, 6),
            "ok": min(cp, cq) >= MIN_COSINE,
        }
        emb.embed(batch_texts[:32], batch_size=32)  # warm

    single: dict[str, list[float]] = {n: [] for n in variants}
    batch: dict[str, list[float]] = {n: [] for n in variants}
    for r in range(rounds):
        for name, (emb, threads) in variants.items():
            use(threads)
            fn: Callable[[str], object] = lambda q, e=emb: e.encode_batch([q])  # noqa: E731
            single[name].extend(c.time_calls(fn, questions))
            t = time.perf_counter()
            emb.embed(batch_texts, batch_size=32)
            batch[name].append(time.perf_counter() - t)
        print(f"round {r} done, load {c.loadavg()}", file=sys.stderr, flush=True)
    use(default_threads)

    ref_name = f"torch_threads_{default_threads}"
    table: dict[str, Any] = {}
    for name in variants:
        s = c.summary_ms(single[name])
        rate = len(batch_texts) / sorted(batch[name])[len(batch[name]) // 2]
        table[name] = {
            "single_question": s,
            "batch32_passages_per_s": round(rate, 2),
            **accuracy[name],
        }
    ref_row = table[ref_name]
    for row in table.values():
        row["single_p50_speedup"] = c.ratio(
            ref_row["single_question"]["p50_ms"], row["single_question"]["p50_ms"]
        )
        row["batch_speedup"] = c.ratio(
            row["batch32_passages_per_s"], ref_row["batch32_passages_per_s"]
        )
    eligible = {n: r for n, r in table.items() if r["ok"]}
    fastest_single = min(eligible, key=lambda n: eligible[n]["single_question"]["p50_ms"])
    fastest_batch = max(eligible, key=lambda n: eligible[n]["batch32_passages_per_s"])
    result = {
        "quick": args.quick,
        "loadavg_start": load_start,
        "command": "python bench/inference.py " + " ".join(argv or sys.argv[1:]),
        "cpu_count": os.cpu_count(),
        "torch_default_threads": default_threads,
        "reference": ref_name,
        "questions": len(questions),
        "seed_passages": len(passages),
        "batch_texts": len(batch_texts),
        "onnx_first_load_s": round(first_load_s, 2),
        "onnx_model": str(onnx2.path),
        "variants": table,
        "fastest_single_within_tolerance": fastest_single,
        "fastest_batch_within_tolerance": fastest_batch,
    }
    c.write_result(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
