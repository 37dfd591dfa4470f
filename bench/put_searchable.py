"""Time from ``PUT /api/documents/{source}?wait=true`` to searchable, for one new article.

Two corpora, each served by the app in-process (``TestClient``: the real routes, lifespan,
middleware and build locks, without a socket):

* ``seeds``: the five seed articles, with the configured model (``--model``, default bundled).
* ``scifact``: 2,000 SciFact abstracts as seed files, with ``model = "fake"`` (the deterministic
  hashing embedder): it keeps the set-up short (the real model takes about four minutes for
  2,000 documents on 2 cores), and an incremental build embeds only the new article's passages
  either way, so the fake model measures what grows with the index (scan, hashing, FAISS and
  BM25 rebuild, writing).

Each round PUTs a fresh article with a made-up name (``wait=true`` returns once the new
generation is live), checks that ``/api/ask`` finds it right away, then DELETEs it (also timed).
``--profile`` then profiles one such incremental build of the big corpus (``cProfile``).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def article(i: int) -> tuple[str, str]:
    """A new article whose made-up name no other document mentions, and a question about it."""
    name = f"Zelvorran{i:03d}"
    text = (
        f"{name} Harbour Lantern Society\n"
        "Published: 2024-03-02\n"
        f"The {name} Harbour Lantern Society was founded by Quorvath Belisande in Essmere.\n"
        "Its members restore ship lanterns and light them on the last night of every year.\n"
    )
    return text, f"Who founded the {name} Harbour Lantern Society?"


def run_corpus(seeds: Path, index: Path, model: str, rounds: int) -> dict[str, Any]:
    """Start the app over ``seeds``, then time ``rounds`` PUT-to-searchable and DELETE rounds."""
    from fastapi.testclient import TestClient

    from qa.config import Settings
    from web.app import create_app

    settings = Settings(seeds_dir=seeds, index_dir=index, model=model, admin_token=TOKEN)
    t = time.perf_counter()
    with TestClient(create_app(settings)) as client:
        startup_s = time.perf_counter() - t
        documents = client.get("/healthz").json()["documents"]
        put_s, build_ms, delete_s = [], [], []
        for i in range(rounds):
            text, question = article(i)
            source = f"bench/article_{i:03d}.txt"
            t = time.perf_counter()
            r = client.put(f"/api/documents/{source}?wait=true", content=text, headers=AUTH)
            put_s.append(time.perf_counter() - t)
            if r.status_code != 201:
                raise RuntimeError(f"PUT failed: {r.status_code} {r.text}")
            build_ms.append(r.json()["build"]["took_ms"])
            found = client.get("/api/ask", params={"q": question, "k": 3}).json()
            if source not in {p["source"] for p in found["passages"]}:
                raise RuntimeError(f"{source} was not searchable right after the PUT returned")
            t = time.perf_counter()
            r = client.delete(f"/api/documents/{source}?wait=true", headers=AUTH)
            delete_s.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"DELETE failed: {r.status_code} {r.text}")
    return {
        "model": model,
        "documents": documents,
        "startup_s": round(startup_s, 2),
        "put_to_searchable": c.summary_ms(put_s),
        "build_took_ms_median": round(statistics.median(build_ms), 1),
        "delete_to_gone": c.summary_ms(delete_s),
    }


def profile_build(seeds: Path, index: Path, limit: int = 12) -> dict[str, Any]:
    """Profile one incremental build after one new article: the most expensive functions."""
    from qa.config import Settings
    from qa.index.builder import build_index

    settings = Settings(seeds_dir=seeds, index_dir=index, model="fake")
    text, _ = article(999)
    (seeds / "profiled.txt").write_text(text, encoding="utf-8")
    prof = cProfile.Profile()
    summary = prof.runcall(build_index, settings)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(limit)
    lines = [ln.rstrip() for ln in buf.getvalue().splitlines()]
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls")), 0)
    return {
        "took_ms_under_profiler": summary.took_ms,
        "top": [ln for ln in lines[start:] if ln.strip()],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10, help="PUT/DELETE rounds per corpus")
    p.add_argument("--docs", type=int, default=2000, help="SciFact documents in the big corpus")
    p.add_argument("--model", default="bundled", help="model for the seeds corpus")
    p.add_argument("--profile", action="store_true", help="profile one build of the big corpus")
    args = p.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    docs = 20 if args.quick else args.docs
    model = "fake" if args.quick else args.model
    load_start = c.loadavg()
    corpora: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="seedqa-bench-") as tmp:
        seeds = Path(tmp) / "seeds"
        shutil.copytree(c.SEEDS, seeds, ignore=shutil.ignore_patterns(".*", "README*"))
        corpora["seeds"] = run_corpus(seeds, Path(tmp) / "index-seeds", model, rounds)
        big = Path(tmp) / "scifact"
        c.write_scifact_seeds(big, limit=docs)
        corpora["scifact"] = run_corpus(big, Path(tmp) / "index-scifact", "fake", rounds)
        profile = profile_build(big, Path(tmp) / "index-scifact") if args.profile else None
    c.write_result(
        args.out,
        "put_searchable",
        {
            "quick": args.quick,
            "rounds": rounds,
            "corpora": corpora,
            "profile": profile,
            "loadavg_start": load_start,
            "command": "python bench/put_searchable.py " + " ".join(argv or sys.argv[1:]),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
