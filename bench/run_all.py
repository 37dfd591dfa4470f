"""Run every benchmark in turn (each in its own interpreter) and print a summary of the targets.

``make bench`` runs this with no arguments: the full suite, about an hour on 2 cores (the 1M-vector
search benchmarks take most of it). ``--quick`` runs every script on tiny inputs in a minute or
two; ``--only`` picks scripts by name. Results go to ``bench/results/`` (gitignored).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from typing import Any

import _common as c

#: name -> (script, extra arguments, result file)
SCRIPTS: dict[str, tuple[str, list[str], str]] = {
    "inference": ("inference.py", [], "inference"),
    "batch_size": ("batch_size.py", [], "batch_size"),
    "query_latency": ("query_latency.py", [], "query_latency"),
    "throughput": ("throughput.py", [], "throughput"),
    "build": ("build.py", [], "build"),
    "txtai_peer": ("txtai_peer.py", [], "txtai_peer"),
    "startup": ("startup.py", [], "startup"),
    "reader_cost": ("reader_cost.py", ["--torch-threads", "1"], "reader_cost"),
    "span_reader": ("span_reader.py", [], "span_reader"),
    "search": ("search.py", [], "search"),
    "put_searchable": ("put_searchable.py", [], "put_searchable"),
    "search_lowdim": (
        "search.py",
        ["--data", "lowdim", "--name", "search_lowdim"],
        "search_lowdim",
    ),
}


def targets_of(result: dict[str, Any]) -> Any:
    """The ``targets`` (or ``target``) entry of a result, for the summary."""
    return result.get("targets", result.get("target"))


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; exit 1 if any script failed (missed targets do not fail)."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(SCRIPTS), help="run just these")
    p.add_argument("--name", default="summary", help="result file name of the summary")
    args = p.parse_args(argv)
    names = args.only or list(SCRIPTS)
    summary: dict[str, Any] = {}
    failed = []
    for name in names:
        script, extra, result_name = SCRIPTS[name]
        if name == "txtai_peer" and importlib.util.find_spec("txtai") is None:
            summary[name] = {"skipped": "txtai is not installed (pip install -e '.[bench]')"}
            print(f"== {name}: skipped, txtai is not installed", flush=True)
            continue
        cmd = [sys.executable, str(c.ROOT / "bench" / script), *extra, "--out", str(args.out)]
        if args.quick:
            cmd.append("--quick")
        print(f"== {name}: {' '.join(cmd[1:])}  (load {c.loadavg()})", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=c.ROOT, check=False)
        took = round(time.perf_counter() - t, 1)
        if proc.returncode != 0:
            failed.append(name)
            summary[name] = {"failed": proc.returncode, "took_s": took}
            continue
        result = json.loads((args.out / f"{result_name}.json").read_text(encoding="utf-8"))
        summary[name] = {"took_s": took, "targets": targets_of(result)}
    c.write_result(
        args.out,
        args.name,
        {
            "quick": args.quick,
            "command": "python bench/run_all.py " + " ".join(argv or sys.argv[1:]),
            "scripts": summary,
        },
    )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
