"""Load test: concurrent clients against ``serve.py`` for a fixed time; errors, latency, memory.

Starts ``serve.py`` (the real bundled model unless ``--model``) over a temporary copy of
``seeds/`` with a temporary index, on a free 127.0.0.1 port. ``--clients`` threads (keep-alive
httpx clients) then ask the questions of ``eval/seeds_questions.jsonl`` in rotation, answer on
and off in turn, for ``--warmup`` seconds (not measured) and then ``--seconds`` seconds. The
server's RSS (``VmRSS`` of ``/proc/<pid>/status``) is sampled every second. Then the server
gets SIGTERM and must exit cleanly. Everything stops by itself; nothing leaves the machine.

Success: no error (every response a 200 whose body has the contract's shape), a clean exit,
and memory that does not grow: the RSS at the end within 5 % of the RSS after the warm-up
(not enforced with ``--quick``: five seconds say nothing about growth).

    .venv/bin/python bench/load_test.py                  # 60 s, 16 clients, real model
    .venv/bin/python bench/load_test.py --quick          # 5 s, 4 clients, fake model
    .venv/bin/python bench/load_test.py --cache-size 0   # every question embedded afresh
    .venv/bin/python bench/load_test.py --replicas 2     # serve.py --replicas 2 (Ray Serve)

With ``--replicas`` the memory criterion is not enforced: ``serve.py`` is then only the Ray
driver, and the replicas are Ray worker processes.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common as c
from _server import free_port

#: The RSS at the end may exceed the RSS after the warm-up by this fraction at most.
RSS_TOLERANCE = 0.05
#: Bounds for one request and for the server's start (the real model is built and loaded).
REQUEST_TIMEOUT = 60.0
START_TIMEOUT = 600.0
STOP_TIMEOUT = 60.0
#: A hard cap per client, far above what the time allows, so every loop is bounded twice.
MAX_REQUESTS_PER_CLIENT = 1_000_000


def parse_args() -> Any:
    """The command line."""
    p = c.parser(__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=60.0, help="measured load (default: 60)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    p.add_argument(
        "--warmup", type=float, help="unmeasured load first (default: 10%% of --seconds, >= 2)"
    )
    p.add_argument("--model", help="embedding model (default: bundled; fake with --quick)")
    p.add_argument(
        "--cache-size", type=int, help="the server's question cache (default: its own, 1024)"
    )
    p.add_argument(
        "--replicas", type=int, help="serve.py --replicas N (Ray Serve; needs the 'ray' extra)"
    )
    args = p.parse_args()
    if args.quick:
        args.seconds, args.clients = 5.0, 4
        args.model = args.model or "fake"
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else max(2.0, args.seconds / 10)
    return args


def uptime() -> str:
    """``uptime``'s line (how busy the shared machine is), or the load averages."""
    if shutil.which("uptime"):
        out = subprocess.run(["uptime"], capture_output=True, text=True, check=False, timeout=10)
        return out.stdout.strip()
    return "load average: " + ", ".join(str(x) for x in c.loadavg())


def start_server(
    work: Path,
    *,
    model: str | None,
    cache_size: int | None,
    log: Path,
    replicas: int | None = None,
) -> tuple[subprocess.Popen[bytes], str, float]:
    """``serve.py`` over a copy of the seeds; (process, base URL, seconds until it answered)."""
    import httpx

    seeds = work / "seeds"
    shutil.copytree(c.SEEDS, seeds, ignore=shutil.ignore_patterns(".*", "README*"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if cache_size is not None:
        env["QA_QUESTION_CACHE_SIZE"] = str(cache_size)
    cmd = [sys.executable, str(c.ROOT / "serve.py"), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--seeds", str(seeds), "--index", str(work / "emb")]
    if model:
        cmd += ["--model", model]
    if replicas is not None:
        cmd += ["--replicas", str(replicas)]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=err, stderr=err)
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"serve.py exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return proc, base, time.monotonic() - started
        except httpx.TransportError:
            pass
        if time.monotonic() - started > START_TIMEOUT:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"serve.py did not answer within {START_TIMEOUT:.0f}s")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """SIGTERM, then wait (bounded); whether it stopped cleanly."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
        killed = False
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
        killed = True
    text = log.read_text(encoding="utf-8", errors="replace")
    problems = [line for line in text.splitlines() if "Traceback" in line or " ERROR " in line]
    return {
        "code": code,
        "killed_after_timeout": killed,
        "log_problems": problems[:10],
        "clean": not killed and code in (0, -signal.SIGTERM) and not problems,
    }


def check_body(body: Any, answer: bool) -> str | None:
    """What is wrong with a 200 body, if anything (the contract's shape, not its quality)."""
    if not isinstance(body, dict) or not isinstance(body.get("passages"), list):
        return "no passages list"
    if not body["passages"]:
        return "no passages"
    if answer and body.get("answer") is None and not isinstance(body.get("abstain_reason"), str):
        return "neither an answer nor a reason to abstain"
    if not answer and body.get("answer") is not None:
        return "an answer although answer=false"
    return None


class Load:
    """The client threads and the RSS sampler, with what they recorded."""

    def __init__(self, base: str, pid: int, questions: list[str], clients: int) -> None:
        self.base = base
        self.pid = pid
        self.questions = questions
        self.clients = clients
        self.counter = itertools.count()
        #: (start, seconds, answer asked, answer given, error or None) per request.
        self.records: list[tuple[float, float, bool, bool, str | None]] = []
        #: (seconds since the load started, VmRSS in kB) every second.
        self.rss: list[tuple[float, int]] = []
        #: (seconds since the load started, number of threads) every second: RSS that steps
        #: up with the thread count is per-thread memory (stacks, malloc arenas), not a leak.
        self.threads: list[tuple[float, int]] = []

    def _client(self, deadline: float) -> None:
        import httpx

        with httpx.Client(base_url=self.base, timeout=REQUEST_TIMEOUT) as client:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() >= deadline:
                    return
                i = next(self.counter)
                question = self.questions[i % len(self.questions)]
                answer = i % 2 == 0
                given = False
                t0 = time.monotonic()
                try:
                    r = client.post(
                        "/api/ask", json={"question": question, "k": 5, "answer": answer}
                    )
                    if r.status_code == 200:
                        body = r.json()
                        error = check_body(body, answer)
                        given = isinstance(body, dict) and body.get("answer") is not None
                    else:
                        error = f"status {r.status_code}: {r.text[:200]}"
                except (httpx.HTTPError, ValueError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                self.records.append((t0, time.monotonic() - t0, answer, given, error))

    def _sample(self, start: float, stop: threading.Event) -> None:
        for _ in range(int(START_TIMEOUT * 10)):
            kb = c.proc_status_kb(self.pid, "VmRSS")
            threads = c.proc_status_kb(self.pid, "Threads")  # a plain count, same format
            now = round(time.monotonic() - start, 2)
            if kb is not None:
                self.rss.append((now, kb))
            if threads is not None:
                self.threads.append((now, threads))
            if stop.wait(1.0):
                return

    def run(self, seconds: float) -> float:
        """Load the server for ``seconds``; returns the monotonic time it started."""
        start = time.monotonic()
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(start, stop), daemon=True)
        sampler.start()
        threads = [
            threading.Thread(target=self._client, args=(start + seconds,), daemon=True)
            for _ in range(self.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + REQUEST_TIMEOUT + 10)
        stop.set()
        sampler.join(timeout=10)
        kb = c.proc_status_kb(self.pid, "VmRSS")  # one last sample at the very end
        if kb is not None:
            self.rss.append((round(time.monotonic() - start, 2), kb))
        return start


def slope_per_minute(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, kB) points, in kB per minute (0 for < 2 points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in points) / var * 60


def summarise(load: Load, start: float, warmup: float, seconds: float) -> dict[str, Any]:
    """Errors, latency and throughput of the measured part; RSS after warm-up against the end."""
    measured = [r for r in load.records if r[0] >= start + warmup]
    errors = [r[4] for r in load.records if r[4] is not None]
    rss_main = [(t, kb) for t, kb in load.rss if t >= warmup]
    rss_start = rss_main[0][1] if rss_main else None
    rss_end = rss_main[-1][1] if rss_main else None
    growth = (rss_end - rss_start) / rss_start if rss_start and rss_end else float("nan")
    latencies = [r[1] * 1000 for r in measured]
    return {
        "requests": len(measured),
        "warmup_requests": len(load.records) - len(measured),
        "errors": len(errors),  # warm-up included: an error is an error
        "error_samples": errors[:10],
        "mix": {
            "answer_true": sum(1 for r in measured if r[2]),
            "answer_false": sum(1 for r in measured if not r[2]),
            "answers_given": sum(1 for r in measured if r[3]),
        },
        "throughput_rps": round(len(measured) / seconds, 2),
        "latency_ms": {
            "p50": round(c.percentile(latencies, 50), 1),
            "p90": round(c.percentile(latencies, 90), 1),
            "p99": round(c.percentile(latencies, 99), 1),
            "mean": round(sum(latencies) / len(latencies), 1) if latencies else float("nan"),
            "max": round(max(latencies), 1) if latencies else float("nan"),
        },
        "rss_kb": {
            "at_first_sample": load.rss[0][1] if load.rss else None,
            "start": rss_start,
            "end": rss_end,
            "min": min((kb for _, kb in rss_main), default=None),
            "max": max((kb for _, kb in rss_main), default=None),
            "slope_kb_per_min": round(slope_per_minute(rss_main), 1),
            "growth_pct": round(growth * 100, 2),
            "samples": [[t, kb] for t, kb in load.rss],
        },
        "server_threads": {
            "max": max((n for _, n in load.threads), default=None),
            "samples": [[t, n] for t, n in load.threads],
        },
        "memory": {
            "criterion": f"RSS at the end within {RSS_TOLERANCE:.0%} of the RSS after warm-up",
            "stable": bool(growth <= RSS_TOLERANCE),
        },
    }


def main() -> int:
    """Run the load test; exit 0 on success (see the module docstring), 1 otherwise."""
    args = parse_args()
    questions = c.questions()
    result: dict[str, Any] = {
        "quick": args.quick,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": args.model or "bundled",
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "clients": args.clients,
        "replicas": args.replicas,
        "question_cache_size": args.cache_size if args.cache_size is not None else "default",
        "questions": len(questions),
        "loadavg_start": c.loadavg(),
        "uptime_start": uptime(),
    }
    with tempfile.TemporaryDirectory(prefix="seedqa-load-") as tmp:
        work = Path(tmp)
        log = work / "serve.log"
        proc, base, ready_s = start_server(
            work, model=args.model, cache_size=args.cache_size, log=log, replicas=args.replicas
        )
        try:
            result["server_start_seconds"] = round(ready_s, 1)
            load = Load(base, proc.pid, questions, args.clients)
            start = load.run(args.warmup + args.seconds)
        finally:
            result["server_exit"] = stop_server(proc, log)
    result.update(summarise(load, start, args.warmup, args.seconds))
    result["memory"]["enforced"] = not args.quick and args.replicas is None
    result["uptime_end"] = uptime()
    result["success"] = bool(
        result["errors"] == 0
        and result["server_exit"]["clean"]
        and (not result["memory"]["enforced"] or result["memory"]["stable"])
    )
    c.write_result(args.out, "load_test", result)
    lat, rss = result["latency_ms"], result["rss_kb"]
    print(
        f"\n{result['requests']} requests in {args.seconds:.0f}s from {args.clients} clients "
        f"({result['throughput_rps']}/s), {result['errors']} errors; "
        f"p50 {lat['p50']} ms, p99 {lat['p99']} ms; RSS {rss['start']} -> {rss['end']} kB "
        f"({rss['growth_pct']:+}%, {rss['slope_kb_per_min']:+} kB/min); "
        f"{'OK' if result['success'] else 'FAILED'}"
    )
    return 0 if result["success"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
