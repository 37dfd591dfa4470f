"""The segmented index at growing sizes: publishing an edit, cold start, memory, query latency,
and the large-index type's recall against exact search.

Part ``pipeline`` runs the real build (``qa index``) over SciFact abstracts written as seed files
(repeated with a variant mark beyond its 5,183 documents) with the fake embedder (64-d, no
model: this measures storage, publishing, loading and search, not the model):

* publish: ``build_index`` after one article is edited, added or deleted (median of rounds),
  with the scan of the seeds folder (which reads and hashes every file) timed apart;
* cold start: a fresh process that loads the index and answers one question (``QAService.ask``),
  its wall time and resident memory (``VmRSS``, ``VmHWM``);
* queries: ``QAService.ask`` (hybrid, with answer) p50/p99 in-process, alone and while a forced
  merge of all segments runs in another thread.

Part ``ann`` measures the approximate segment index alone on synthetic 384-d unit vectors
(``bench/search.py``'s low-dimensional data and near queries): IVF-PQ with the exact re-rank of
``qa.index.vectors.search_segment`` against exact search, recall@10 and p50 per query, bytes per
vector, build time.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common as c
import numpy as np
from search import lowdim_vectors, near_queries

COLD = """
import json, sys, time
t = time.perf_counter()
from qa.config import Settings
from qa.ask.service import QAService
from pathlib import Path
s = Settings(seeds_dir=Path(sys.argv[1]), index_dir=Path(sys.argv[2]), model="fake")
svc = QAService(s)
svc.ask("What causes inflammation in the lung?")
took = time.perf_counter() - t
st = open("/proc/self/status").read()
kb = lambda f: int(st.split(f + ":")[1].split()[0])
print(json.dumps({"seconds": took, "rss_mb": kb("VmRSS") / 1024, "hwm_mb": kb("VmHWM") / 1024}))
"""


def write_corpus(folder: Path, n_docs: int) -> None:
    """``n_docs`` SciFact abstracts as seed files, repeated with a variant mark when needed."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = c.scifact_docs()
    for i in range(n_docs):
        doc = docs[i % len(docs)]
        mark = f" (variant {i // len(docs)})" if i >= len(docs) else ""
        text = f"{doc['title']}{mark}\n\n{doc['text']}{mark}\n"
        (folder / f"d{i:07d}.txt").write_text(text, encoding="utf-8")


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def publish_rounds(settings: Any, rounds: int) -> dict[str, Any]:
    """Edit, add and delete one article, ``rounds`` times each; seconds per publish."""
    from qa.index.builder import build_index
    from qa.ingest.seeds import scan

    out: dict[str, list[float]] = {"edit": [], "add": [], "delete": [], "scan": []}
    for r in range(rounds):
        target = settings.seeds_dir / f"d{r:07d}.txt"
        target.write_text(target.read_text("utf-8") + f"\nEdited, round {r}.\n", "utf-8")
        out["edit"].append(_timed(build_index, settings))
        new = settings.seeds_dir / f"new{r}.txt"
        new.write_text(f"New article {r}\n\nA new article about lung inflammation {r}.\n", "utf-8")
        out["add"].append(_timed(build_index, settings))
        new.unlink()
        out["delete"].append(_timed(build_index, settings))
        t = time.perf_counter()
        scan(settings.seeds_dir)
        out["scan"].append(time.perf_counter() - t)
    return {f"{k}_ms": _median_ms(v) for k, v in out.items()}


def _timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def cold_start(settings: Any) -> dict[str, Any]:
    """A new process: load the index and answer one question."""
    env = {**os.environ, "PYTHONPATH": str(c.ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", COLD, str(settings.seeds_dir), str(settings.index_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    import json

    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: round(v, 3) for k, v in data.items()}


def query_latency(settings: Any, questions: list[str], *, merge: bool) -> dict[str, Any]:
    """``QAService.ask`` p50/p99 (hybrid, answer on); with ``merge``, while a forced merge of
    every segment runs in another thread (the merge takes the build lock, as ``qa index``)."""
    from qa.ask.service import QAService
    from qa.index.builder import build_index

    svc = QAService(settings.replace(question_cache_size=0))
    svc.ask(questions[0])
    times: list[float] = []
    merging = threading.Event()
    worker = None
    if merge:

        def run() -> None:
            merging.set()
            build_index(settings, merge=True)
            merging.clear()

        worker = threading.Thread(target=run)
        worker.start()
        merging.wait()
    rounds = 0
    while rounds < 3 or (merge and merging.is_set()):
        times.extend(c.time_calls(lambda q: svc.ask(q), questions))
        rounds += 1
    if worker is not None:
        worker.join()
    return c.summary_ms(times)


def pipeline(n_docs: int, rounds: int, work: Path) -> dict[str, Any]:
    """Every figure of part ``pipeline`` at one corpus size."""
    from qa.config import Settings
    from qa.index.builder import build_index
    from qa.index.generation import load_index

    seeds, index = work / f"seeds{n_docs}", work / f"index{n_docs}"
    write_corpus(seeds, n_docs)
    settings = Settings(seeds_dir=seeds, index_dir=index, model="fake", answer_threshold=0.0)
    t = time.perf_counter()
    first = build_index(settings)
    built = time.perf_counter() - t
    out: dict[str, Any] = {"documents": n_docs, "passages": first.passages}
    out["full_build_s"] = round(built, 1)
    out["publish"] = publish_rounds(settings, rounds)
    gen = load_index(settings)
    out["segments_after_edits"] = len(gen.segments)
    out["index_bytes"] = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
    out["cold_start"] = cold_start(settings)
    qs = c.questions()
    out["query"] = query_latency(settings, qs, merge=False)
    out["query_during_merge"] = query_latency(settings, qs, merge=True)
    out["cold_start_after_merge"] = cold_start(settings)
    return out


def ann(n: int, dim: int, queries: int) -> dict[str, Any]:
    """IVF-PQ plus exact re-rank against exact search over the same vectors."""
    from types import SimpleNamespace

    from qa.index.vectors import build_faiss, search_segment

    # The data and queries of bench/search.py --data lowdim, so the figures compare with HNSW's.
    vectors = lowdim_vectors(n, dim, seed=n)
    qv = near_queries(vectors, queries, seed=1)
    none = np.zeros(n, dtype=bool)
    exact_seg = SimpleNamespace(vectors=vectors, faiss_index=None)
    t = time.perf_counter()
    index, info = build_faiss(vectors, index_type="ivfpq")
    build_s = time.perf_counter() - t
    approx_seg = SimpleNamespace(vectors=vectors, faiss_index=index)
    truth = [set(search_segment(exact_seg, q, 10, excluded=none)[0].tolist()) for q in qv]
    exact_t = c.time_calls(lambda q: search_segment(exact_seg, q, 10, excluded=none), qv[:50])
    out: dict[str, Any] = {"n": n, "dim": dim, "build_s": round(build_s, 1), **info}
    out["exact_p50_ms"] = c.summary_ms(exact_t)["p50_ms"]
    import faiss

    out["index_bytes_per_vector"] = round(len(faiss.serialize_index(index)) / n, 1)
    sweep = []
    for nprobe in sorted({max(1, info["nlist"] // d) for d in (32, 16, 8, 4)}):
        index.nprobe = nprobe
        found = [set(search_segment(approx_seg, q, 10, excluded=none)[0].tolist()) for q in qv]
        recall = statistics.fmean(len(f & t) / 10 for f, t in zip(found, truth, strict=True))
        times = c.time_calls(lambda q: search_segment(approx_seg, q, 10, excluded=none), qv)
        sweep.append({"nprobe": nprobe, "recall_at_10": round(recall, 3), **c.summary_ms(times)})
    out["sweep"] = sweep
    return out


def passage_store(n: int, work: Path, reads: int = 2000) -> dict[str, Any]:
    """Opening a passage store and reading random passages: the offsets table into a
    memory-mapped JSON-lines file (what segments use) against SQLite (one row per passage)."""
    import json
    import sqlite3

    from qa.index.lexical import Postings
    from qa.index.segments import SegmentData, open_segment, write_segment

    docs = c.scifact_docs()
    records = (
        {
            "chunk_id": f"d{i}#0",
            "source": f"d{i}.txt",
            "title": docs[i % len(docs)]["title"],
            "date": None,
            "start": 0,
            "end": 10,
            "text": docs[i % len(docs)]["text"],
            "embed_hash": str(i),
            "tokens": 100,
            "sentences": [[0, 10]],
        }
        for i in range(n)
    )
    lines = [(json.dumps(r) + "\n").encode() for r in records]
    empty = Postings(
        np.zeros(0, np.uint64),
        np.zeros(1, np.int64),
        np.zeros(0, np.int32),
        np.zeros(0, np.float32),
        np.zeros(n, np.int32),
    )
    data = SegmentData(
        passages=lines,
        vectors=np.zeros((n, 8), np.float32),
        sentence_vectors=np.zeros((n, 8), np.float32),
        sentence_counts=np.ones(n, np.int64),
        postings=empty,
        faiss_index=None,
        index_info={"type": "flat"},
        documents=[],
    )
    root = work / f"store{n}"
    seg_id = write_segment(root, data)
    db = root / "passages.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE p (row INTEGER PRIMARY KEY, json TEXT)")
        rows_in = ((i, x.decode()) for i, x in enumerate(lines))
        con.executemany("INSERT INTO p VALUES (?, ?)", rows_in)
    rows = [int(r) for r in np.random.default_rng(0).integers(0, n, reads)]
    t = time.perf_counter()
    seg = open_segment(root, seg_id, full_check=False)
    out: dict[str, Any] = {"passages": n, "offsets_open_ms": _ms_since(t)}
    out["offsets_read"] = c.summary_ms(c.time_calls(seg.passage, rows))
    t = time.perf_counter()
    con = sqlite3.connect(db)
    out["sqlite_open_ms"] = _ms_since(t)

    def read_sqlite(r: int) -> object:
        (raw,) = con.execute("SELECT json FROM p WHERE row = ?", (r,)).fetchone()
        return json.loads(raw)

    out["sqlite_read"] = c.summary_ms(c.time_calls(read_sqlite, rows))
    con.close()
    out["offsets_bytes"] = sum(f.stat().st_size for f in (root / "segments" / seg_id).glob("*"))
    out["sqlite_bytes"] = db.stat().st_size
    return out


def _ms_since(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 2)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__)
    p.add_argument("--docs", type=int, nargs="*", default=[2000, 20000], help="corpus sizes")
    p.add_argument("--ann", type=int, nargs="*", default=[100_000, 1_000_000], help="vectors")
    p.add_argument("--rounds", type=int, default=5, help="publish rounds per kind of edit")
    p.add_argument("--store", type=int, nargs="*", default=[100_000], help="passage store sizes")
    p.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = p.parse_args(argv)
    docs = [40] if args.quick else args.docs
    sizes = [2000] if args.quick else args.ann
    rounds = 1 if args.quick else args.rounds
    result: dict[str, Any] = {
        "command": " ".join(["bench/segments.py", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "loadavg_start": c.loadavg(),
    }
    work = Path(tempfile.mkdtemp(prefix="seedqa-segments-", dir=args.keep))
    try:
        result["pipeline"] = [pipeline(n, rounds, work) for n in docs]
        stores = [500] if args.quick else args.store
        result["passage_store"] = [passage_store(n, work) for n in stores]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    result["ann"] = [ann(n, 64 if args.quick else 384, 20 if args.quick else 200) for n in sizes]
    c.write_result(args.out, "segments", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
