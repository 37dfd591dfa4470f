"""Issue 12 at full size: publishing, cold start, memory, HTTP latency, recall and a soak.

Runs the real ``qa index`` over SciFact abstracts written as seed files (``segments.py``'s
corpus: repeated with a variant mark past its 5,183 documents) with the fake embedder (64-d,
no model: the model's time is about zero, so this measures storage, publishing, loading and
search). Reuses the corpus and index in ``--work`` when they are there.

* publish: ``build_index`` after one article is edited, added or deleted (median of rounds);
  ``scan_ms`` is the seeds scan with the stat cache as the build uses it;
* targeted: the same three edits the way ``PUT`` / ``DELETE /api/documents/...`` make them
  (``qa.ask.changes`` on an in-process ``QAService``, ``wait=true``: the build is told the one
  path, and the policy merge runs afterwards on the service's background thread, waited for
  between rounds and timed apart);
* profile: cProfile of one targeted publish (``QAService.reindex(paths=[one file])`` after a
  warm-up one), its wall time and the top functions by cumulative time;
* cold start: a new process that loads the index and answers one question; its RSS;
* HTTP: ``POST /api/ask`` (hybrid, answer on, question cache off) p50/p99 against the real
  server (``serve.py`` in a subprocess), idle and while ``qa index --merge`` runs in another
  process; the server's RSS;
* recall@10 of the default index (IVF-PQ above ``exact_threshold``) against exact search over
  all live vectors, for the evaluation questions' (fake) vectors;
* soak: random edit / add / delete / policy-merge / query rounds; after them every seed file is
  in the index once with its current content hash, and the passages add up.

Each figure is written with the load average (``uptime``) beside it: the machine is shared.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import numpy as np
from _server import ask_http, start_server
from segments import cold_start, write_corpus


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def publish(settings: Any, rounds: int) -> dict[str, Any]:
    """Edit, add and delete one article, ``rounds`` times each (median ms), and the scan."""
    from qa.index import storage as store
    from qa.index.builder import build_index
    from qa.ingest.statcache import scan_changes

    out: dict[str, list[float]] = {"edit": [], "add": [], "delete": [], "scan": []}
    # One edit first: its build writes the stat cache the later ones trust (and, on an index
    # built by an older seedqa, draws the documents_id the cache is stamped with).
    first = settings.seeds_dir / "d0000099.txt"
    first.write_text(first.read_text("utf-8") + "\nWarm-up edit.\n", "utf-8")
    warmup = _timed(build_index, settings)
    load = [_load()]
    for r in range(rounds):
        target = settings.seeds_dir / f"d{r:07d}.txt"
        target.write_text(target.read_text("utf-8") + f"\nEdited, round {r}.\n", "utf-8")
        out["edit"].append(_timed(build_index, settings))
        new = settings.seeds_dir / f"new{r}.txt"
        new.write_text(f"New article {r}\n\nA new article about lung inflammation {r}.\n", "utf-8")
        out["add"].append(_timed(build_index, settings))
        new.unlink()
        out["delete"].append(_timed(build_index, settings))
        cache = store.read_stat_cache(settings.index_dir)
        out["scan"].append(_timed(scan_changes, settings.seeds_dir, cache))
        load.append(_load())
    result: dict[str, Any] = {
        f"{k}_ms": round(statistics.median(v) * 1000, 1) for k, v in out.items()
    }
    result["all_ms"] = {k: [round(x * 1000) for x in v] for k, v in out.items()}
    result["warmup_edit_ms"] = round(warmup * 1000, 1)
    result["load"] = load
    return result


def http_latency(settings: Any, questions: list[str], rounds: int) -> dict[str, Any]:
    """p50/p99 of ``POST /api/ask`` over the real server, idle then during ``qa index --merge``."""
    import httpx

    os.environ["QA_MODEL"] = "fake"
    out: dict[str, Any] = {}
    with (
        start_server(index_dir=settings.index_dir, seeds_dir=settings.seeds_dir, cache_size=0) as (
            base,
            proc,
        ),
        httpx.Client(base_url=base, timeout=120) as client,
    ):

        def ask(q: str) -> None:
            r = ask_http(client, q, answer=True)
            if r.status_code != 200:  # type: ignore[attr-defined]
                raise RuntimeError(f"/api/ask answered {r.status_code}")  # type: ignore[attr-defined]

        for q in questions[:5]:
            ask(q)
        out["rss_after_warmup_mb"] = round((c.proc_status_kb(proc.pid, "VmRSS") or 0) / 1024, 1)
        load0 = _load()
        times = [t for _ in range(rounds) for t in c.time_calls(ask, questions)]
        out["idle"] = {**c.summary_ms(times), "n": len(times), "load": [load0, _load()]}
        cmd = [sys.executable, "-m", "qa", "index", "--merge", "--model", "fake"]
        cmd += ["--seeds", str(settings.seeds_dir), "--index", str(settings.index_dir)]
        load0 = _load()
        t0 = time.perf_counter()
        merge = subprocess.Popen(cmd, cwd=c.ROOT, stdout=subprocess.DEVNULL)
        during: list[float] = []
        while merge.poll() is None:
            during.extend(c.time_calls(ask, questions[:10]))
        merge_s = time.perf_counter() - t0
        out["during_merge"] = {
            **c.summary_ms(during),
            "n": len(during),
            "merge_s": round(merge_s, 1),
            "merge_rc": merge.returncode,
            "load": [load0, _load()],
        }
        out["rss_end_mb"] = round((c.proc_status_kb(proc.pid, "VmRSS") or 0) / 1024, 1)
        out["hwm_end_mb"] = round((c.proc_status_kb(proc.pid, "VmHWM") or 0) / 1024, 1)
    return out


def recall(settings: Any, questions: list[str]) -> dict[str, Any]:
    """recall@10 of ``dense_search`` (the default index per segment) against exact search."""
    from qa.embed.registry import load_embedder
    from qa.index.generation import load_index

    gen = load_index(settings, verify=False)
    queries = load_embedder(settings).embed(questions, batch_size=64)
    parts = [np.asarray(ls.segment.vectors)[~ls.dead_mask] for ls in gen.segments]
    every = np.concatenate(parts)
    found, times = [], []
    for q in queries:
        truth = set(np.argsort(-(every @ q), kind="stable")[:10].tolist())
        t = time.perf_counter()
        hits = gen.dense_search(q, 10, allowed=None)
        times.append(time.perf_counter() - t)
        found.append(len(truth & {r for r, _ in hits}) / 10)
    types = [ls.segment.manifest["index"].get("type") for ls in gen.segments]
    return {
        "recall_at_10": round(statistics.fmean(found), 3),
        "dense_p50_ms": c.summary_ms(times)["p50_ms"],
        "segments": types,
        "live": gen.size,
        "load": _load(),
    }


def soak(settings: Any, rounds: int, questions: list[str], seed: int = 12) -> dict[str, Any]:
    """Random edit/add/delete/merge/query rounds, then the index checked against the seeds."""
    from qa.ask.service import QAService
    from qa.index.builder import build_index
    from qa.index.merge import merge_segments

    rng = random.Random(seed)
    names = sorted(p.name for p in settings.seeds_dir.glob("d*.txt"))
    added: list[Path] = []
    counts: dict[str, int] = {}
    failures = 0
    t0 = time.perf_counter()
    load0 = _load()
    svc = QAService(settings.replace(question_cache_size=0))
    for r in range(rounds):
        action = rng.choice(["edit", "edit", "add", "delete", "merge", "query", "query"])
        counts[action] = counts.get(action, 0) + 1
        if action == "edit":
            p = settings.seeds_dir / rng.choice(names)
            p.write_text(p.read_text("utf-8") + f"\nSoak edit {r}.\n", "utf-8")
        elif action == "add":
            p = settings.seeds_dir / f"soak{r}.txt"
            p.write_text(f"Soak article {r}\n\nAbout the lungs, round {r}.\n", "utf-8")
            added.append(p)
        elif action == "delete" and added:
            added.pop(rng.randrange(len(added))).unlink()
        elif action == "merge":
            merge_segments(settings)
        if action in ("edit", "add", "delete"):
            build_index(settings)
        if action == "query" or r % 10 == 0:
            svc.reload()
            try:
                svc.ask(rng.choice(questions))
            except Exception:
                failures += 1
    svc.close()
    out = {"rounds": rounds, "actions": counts, "query_failures": failures}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["load"] = [load0, _load()]
    out["check"] = check_index(settings)
    return out


def check_index(settings: Any) -> dict[str, Any]:
    """Every seed file in the live index once, with its current content hash, each with as
    many rows as its record lists; no chunk id twice; the rows add up to the size."""
    import hashlib

    from qa.index.generation import load_index

    gen = load_index(settings, verify=False)
    files = {p.name: p for p in settings.seeds_dir.iterdir() if p.suffix == ".txt"}
    docs = gen.documents
    missing = [s for s in files if s not in docs]
    extra = [s for s in docs if s not in files]
    stale, rows = 0, 0
    for source, path in files.items():
        rec = docs.get(source)
        if rec is None:
            continue
        if rec["hash"] != hashlib.sha256(path.read_bytes()).hexdigest():
            stale += 1
        n = len(gen.by_source[source])
        rows += n
        stale += n != len(rec["passages"])
    ids = [p.chunk_id for p in gen.passages]
    return {
        "documents": len(docs),
        "files": len(files),
        "missing": len(missing),
        "extra": len(extra),
        "stale_or_wrong_rows": stale,
        "rows": rows,
        "size": gen.size,
        "duplicate_chunk_ids": len(ids) - len(set(ids)),
    }


def targeted(settings: Any, rounds: int) -> dict[str, Any]:
    """Edit, add and delete one article through ``qa.ask.changes`` (median ms of ``rounds``)."""
    from qa.ask.changes import delete_document, put_document
    from qa.ask.service import QAService

    service = QAService(settings)
    service.reload()
    out: dict[str, list[float]] = {"edit": [], "add": [], "delete": [], "merge_after": []}
    load = [_load()]
    try:
        for r in range(-1, rounds):  # round -1 warms up (and stamps the cache if need be)
            name = f"d{r + 50:07d}.txt"
            body = (settings.seeds_dir / name).read_bytes() + f"\nPUT edit, round {r}.\n".encode()
            times = {
                "edit": _timed(put_document, service, name, body, wait_live=True),
                "add": _timed(
                    put_document,
                    service,
                    f"put{r}.txt",
                    f"New article {r}\n\nA new article about lung fibrosis {r}.\n".encode(),
                    wait_live=True,
                ),
                "delete": _timed(delete_document, service, f"put{r}.txt", wait_live=True),
                "merge_after": _timed(service.merger.wait_idle, 600),
            }
            if r >= 0:
                for k, v in times.items():
                    out[k].append(v)
                load.append(_load())
    finally:
        service.close()
    result: dict[str, Any] = {
        f"{k}_ms": round(statistics.median(v) * 1000, 1) for k, v in out.items()
    }
    result["all_ms"] = {k: [round(x * 1000) for x in v] for k, v in out.items()}
    result["merges"] = len(service.merger.merged)
    result["load"] = load
    return result


def profile(settings: Any, top: int = 25) -> dict[str, Any]:
    """One targeted publish under cProfile (after a warm-up one): seconds and top functions."""
    import cProfile
    import io
    import pstats

    from qa.ask.service import QAService

    service = QAService(settings)
    service.reload()

    def once(r: int) -> float:
        name = f"d{r:07d}.txt"
        path = settings.seeds_dir / name
        path.write_bytes(path.read_bytes() + f"\nProfiled edit {r}.\n".encode())
        return _timed(service.reindex, paths=[name])

    try:
        once(70)
        service.merger.wait_idle(600)
        prof = cProfile.Profile()
        prof.enable()
        took = once(71)
        prof.disable()
        service.merger.wait_idle(600)
    finally:
        service.close()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(top)
    print(text.getvalue())
    lines = [ln for ln in text.getvalue().splitlines() if "/" in ln or "{" in ln]
    return {"seconds": round(took, 4), "top": lines, "load": _load()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    from qa.config import Settings
    from qa.index.builder import build_index

    p = c.parser(__doc__)
    p.add_argument("--docs", type=int, default=325_000, help="documents (~3.1 passages each)")
    p.add_argument("--rounds", type=int, default=3, help="publish rounds per kind of edit")
    p.add_argument("--http-rounds", type=int, default=3, help="times each question is asked")
    p.add_argument("--soak", type=int, default=100, help="soak rounds")
    p.add_argument("--work", type=Path, default=Path("/work/bench-data/publish"))
    p.add_argument("--parts", default="build,publish,targeted,cold,http,recall,soak")
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    seeds, index = args.work / f"seeds{args.docs}", args.work / f"index{args.docs}"
    if not seeds.is_dir() or sum(1 for _ in seeds.glob("d*.txt")) < args.docs:
        write_corpus(seeds, args.docs)
    settings = Settings(seeds_dir=seeds, index_dir=index, model="fake", answer_threshold=0.0)
    result: dict[str, Any] = {
        "command": " ".join(["bench/publish_scale.py", *(argv or sys.argv[1:])]),
        "documents": args.docs,
        "started": time.strftime("%H:%M:%S", time.gmtime()),
    }
    qs = c.questions()

    def step(name: str, fn: Any) -> None:
        if name in parts:
            result[name] = fn()
            print(name, result[name], f"({time.strftime('%H:%M:%S', time.gmtime())})", flush=True)

    def full_build() -> dict[str, Any]:
        load0 = _load()
        t = time.perf_counter()
        first = build_index(settings, rebuild=True)
        return {
            "seconds": round(time.perf_counter() - t, 1),
            "passages": first.passages,
            "load": [load0, _load()],
        }

    step("build", full_build)
    step("publish", lambda: publish(settings, args.rounds))
    step("targeted", lambda: targeted(settings, args.rounds))
    step("profile", lambda: profile(settings))
    step("cold", lambda: {**cold_start(settings), "load": _load()})
    step("http", lambda: http_latency(settings, qs, args.http_rounds))
    step("recall", lambda: recall(settings, qs))
    step("soak", lambda: soak(settings, args.soak, qs))
    result["index_bytes"] = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
    c.write_result(args.out, f"publish_scale_{args.docs}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
