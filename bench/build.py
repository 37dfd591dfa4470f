"""Index build speed against the bare model, and an incremental rebuild against a full build.

SciFact abstracts (``shared/data/scifact``) are written as seed files (title line, blank line,
abstract) into a temporary folder. Then, in turns:

* a full build (``build_index(settings, rebuild=True)``) against plain
  ``SentenceTransformer.encode`` of exactly the texts the build embedded (every passage's title +
  text), with the same batch size. The ratio is build passages/s over encode passages/s.
* an incremental build after one document changed (one sentence appended), against the full
  build time. A profile of one incremental build shows where its time goes.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c


def profile_top(fn: Any, limit: int = 15) -> list[str]:
    """The ``limit`` most expensive functions (cumulative) of one call of ``fn``."""
    prof = cProfile.Profile()
    prof.runcall(fn)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(limit)
    lines = [ln.rstrip() for ln in buf.getvalue().splitlines()]
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls")), 0)
    return [ln for ln in lines[start:] if ln.strip()]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=2000, help="SciFact documents to index")
    p.add_argument("--reps", type=int, default=3, help="full builds (and encodes) to time")
    p.add_argument("--incremental-reps", type=int, default=5)
    p.add_argument("--embedder", choices=["torch", "onnx"], default="onnx")
    p.add_argument("--name", default="build")
    args = p.parse_args(argv)
    from qa.config import Settings
    from qa.index import storage as store
    from qa.index.builder import build_index
    from qa.index.storage import read_passages

    docs = 20 if args.quick else args.docs
    reps = 1 if args.quick else args.reps
    inc_reps = 2 if args.quick else args.incremental_reps
    load_start = c.loadavg()
    with tempfile.TemporaryDirectory(prefix="seedqa-bench-") as tmp:
        seeds = Path(tmp) / "seeds"
        written = c.write_scifact_seeds(seeds, limit=docs)
        settings = Settings(seeds_dir=seeds, index_dir=Path(tmp) / "index", backend=args.embedder)
        bare = c.load_bare_model()
        # Load and warm the service's embedder outside the timings (both sides are warm).
        from qa.embed.registry import load_embedder

        load_embedder(settings).embed(["warm-up"] * 4)
        bare.encode(["warm-up"] * 4)

        full_s: list[float] = []
        encode_s: list[float] = []
        summary = None
        texts: list[str] = []
        for rep in range(reps):
            t = time.perf_counter()
            summary = build_index(settings, rebuild=True)
            full_s.append(time.perf_counter() - t)
            if not texts:
                passages = read_passages(store.current_path(settings.index_dir))
                texts = list(dict.fromkeys(p.embed_text() for p in passages))
            t = time.perf_counter()
            bare.encode(
                texts,
                batch_size=settings.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            encode_s.append(time.perf_counter() - t)
            print(
                f"rep {rep}: full build {full_s[-1]:.1f}s, bare encode {encode_s[-1]:.1f}s, "
                f"load {c.loadavg()}",
                file=sys.stderr,
                flush=True,
            )
        assert summary is not None
        n_passages = summary.passages
        n_embedded = summary.embedded

        files = sorted(seeds.iterdir())
        inc_s: list[float] = []
        inc_embedded: list[int] = []
        for rep in range(inc_reps):
            path = files[(rep * 37) % len(files)]
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"\nThis sentence was added by benchmark edit number {rep}.\n")
            t = time.perf_counter()
            s = build_index(settings)
            inc_s.append(time.perf_counter() - t)
            inc_embedded.append(s.embedded)
            if s.updated != 1:
                raise RuntimeError(f"expected one updated document, got {s.to_json()}")
        print(f"incremental: {inc_s}", file=sys.stderr, flush=True)
        with open(files[1], "a", encoding="utf-8") as fh:
            fh.write("\nOne more sentence, for the profile.\n")
        profile = profile_top(lambda: build_index(settings))

    full_med = statistics.median(full_s)
    enc_med = statistics.median(encode_s)
    inc_med = statistics.median(inc_s)
    build_rate = n_embedded / full_med
    encode_rate = len(texts) / enc_med
    result = {
        "quick": args.quick,
        "embedder": args.embedder,
        "loadavg_start": load_start,
        "command": "python bench/build.py " + " ".join(argv or sys.argv[1:]),
        "documents": written,
        "passages": n_passages,
        "embedded_texts": n_embedded,
        "batch_size": settings.batch_size,
        "full_build_s": [round(x, 3) for x in full_s],
        "bare_encode_s": [round(x, 3) for x in encode_s],
        "full_build_median_s": round(full_med, 3),
        "bare_encode_median_s": round(enc_med, 3),
        "build_passages_per_s": round(build_rate, 2),
        "bare_encode_passages_per_s": round(encode_rate, 2),
        "build_vs_encode_ratio": c.ratio(build_rate, encode_rate),
        "incremental_s": [round(x, 3) for x in inc_s],
        "incremental_median_s": round(inc_med, 3),
        "incremental_embedded": inc_embedded,
        "incremental_fraction_of_full": c.ratio(inc_med, full_med),
        "incremental_profile_top": profile,
        "targets": {
            "build_vs_encode": {
                "min_ratio": 0.9,
                "ratio": c.ratio(build_rate, encode_rate),
                "met": build_rate / encode_rate >= 0.9,
            },
            "incremental": {
                "max_fraction": 0.05,
                "fraction": c.ratio(inc_med, full_med),
                "met": inc_med / full_med <= 0.05,
                "documents_at_least_2000": written >= 2000,
            },
        },
    }
    c.write_result(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
