"""Shared helpers of the reliability tests: subprocess builds, generation checks, query load."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from qa.config import Settings
from qa.index import storage as store
from qa.index.generation import read_documents
from qa.index.segments import segments_dir

from .conftest import ROOT, SEED_NAMES

QUESTIONS = [
    json.loads(line)["question"]
    for line in (ROOT / "eval" / "seeds_questions.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
][:24]
#: Seed files added to make a build last seconds with the fake embedder (about 0.8 s per 100).
BULK_FILES = 600
#: Upper bound for anything that should take a few seconds (a build, a reload, a start).
DEADLINE = 120.0
MiB = 1024 * 1024


# -- helpers ---------------------------------------------------------------------------------
def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll ``condition`` every 50 ms until it holds or ``timeout`` seconds have passed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: offline, and no QA_* setting from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def index_cmd(settings: Settings, *args: str) -> list[str]:
    """``python -m qa index`` over the settings' folders with the fake model."""
    return [
        sys.executable,
        "-m",
        "qa",
        "index",
        "--seeds",
        str(settings.seeds_dir),
        "--index",
        str(settings.index_dir),
        "--model",
        "fake",
        "--json",
        *args,
    ]


def run_index(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one CLI build to completion (bounded)."""
    return subprocess.run(
        index_cmd(settings, *args),
        cwd=ROOT,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON summary a successful ``qa index --json`` printed last."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def generation_names(index_dir: Path) -> set[str]:
    """Every generation folder on disk."""
    root = store.generations_dir(index_dir)
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def live_segment(index_dir: Path) -> Path:
    """The folder of the first segment the live generation lists."""
    manifest = store.read_manifest(store.current_path(index_dir))
    return segments_dir(index_dir) / manifest["segments"][0]["id"]


def build_lock_held(index_dir: Path) -> bool:
    """Whether some process holds the build lock, read from /proc/locks (never touching it)."""
    try:
        st = os.stat(index_dir / store.LOCK)
        locks = Path("/proc/locks").read_text(encoding="ascii")
    except OSError:
        return False
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any(line.split()[5:6] == [wanted] for line in locks.splitlines())


def write_bulk(seeds: Path, count: int = BULK_FILES) -> None:
    """``count`` distinct articles (each a seed with its words varied), so builds take seconds."""
    texts = [(seeds / name).read_text(encoding="utf-8") for name in SEED_NAMES]
    bulk = seeds / "bulk"
    bulk.mkdir()
    for i in range(count):
        text = texts[i % len(texts)].replace(" the ", f" the{i} ")
        (bulk / f"b{i:04d}.txt").write_text(f"Bulk article {i}\n\n{text}", encoding="utf-8")


class Versions:
    """The text of every version of every seed file written, by SHA-256 of its bytes."""

    def __init__(self, seeds: Path) -> None:
        self.seeds = seeds
        self.by_hash: dict[str, str] = {}
        self.remember_all()

    def remember_all(self) -> None:
        """Remember the files as they are now (after writing some without :meth:`write`)."""
        for path in self.seeds.rglob("*.txt"):
            self._remember(path.read_bytes())

    def _remember(self, data: bytes) -> None:
        self.by_hash[hashlib.sha256(data).hexdigest()] = data.decode("utf-8")

    def write(self, name: str, text: str) -> None:
        """Write a new version atomically (aside, then renamed), so no build sees half of it."""
        data = text.encode("utf-8")
        self._remember(data)  # before the file exists: readers may meet it at once
        tmp = self.seeds / f".{name}.tmp"  # hidden: never indexed
        tmp.write_bytes(data)
        os.replace(tmp, self.seeds / name)

    def edit(self, name: str, round_: int) -> None:
        """A new version whose every offset moved and one word changed."""
        old = (self.seeds / name).read_text(encoding="utf-8")
        self.write(name, f"Edited {round_}: a new first line.\n" + old.replace(" the ", " THE ", 1))


class GenerationChecker:
    """Checks answers against the generation they name (its manifest says which versions)."""

    def __init__(self, index_dir: Path, versions: Versions) -> None:
        self.index_dir = index_dir
        self.versions = versions
        self._manifests: dict[str, Mapping[str, Mapping[str, Any]]] = {}
        self._lock = threading.Lock()

    def documents(self, generation: str) -> Mapping[str, Mapping[str, Any]]:
        with self._lock:
            if generation not in self._manifests:
                # Copied now: the generation's segments may be deleted once it is pruned.
                docs = read_documents(self.index_dir, generation)
                self._manifests[generation] = {s: dict(d) for s, d in docs.items()}
            return self._manifests[generation]

    def problems(self, body: dict[str, Any]) -> list[str]:
        """What is wrong with one answer (nothing, normally)."""
        generation = body["generation"]
        documents = self.documents(generation)
        spans = list(body["passages"]) + ([body["answer"]] if body.get("answer") else [])
        out = []
        for span in spans:
            doc = documents.get(span["source"])
            text = self.versions.by_hash.get(doc["hash"]) if doc else None
            if text is None:
                out.append(f"{generation}: {span['source']} is not a version that was written")
            elif text[span["start"] : span["end"]] != span["text"]:
                out.append(f"{generation}: {span['source']}:{span['start']}-{span['end']} differs")
        return out


class QueryLoad:
    """Threads asking questions in rotation until stopped, checking every answer at once."""

    def __init__(
        self,
        ask: Callable[[str, bool], dict[str, Any]],
        checker: GenerationChecker,
        *,
        threads: int = 3,
        max_queries: int = 20_000,
        max_seconds: float = 300.0,
    ) -> None:
        self.ask = ask
        self.checker = checker
        self.answered = 0
        self.generations: set[str] = set()
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._limit = (max_queries, time.monotonic() + max_seconds)
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        max_queries, deadline = self._limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            i = next(self._counter)
            if i >= max_queries:
                return
            try:
                body = self.ask(QUESTIONS[i % len(QUESTIONS)], i % 2 == 0)
                found = self.checker.problems(body)
            except Exception as exc:
                found = [f"query failed: {exc!r}"]
                body = None
            with self._lock:
                if found:
                    self.problems.extend(found[:3])
                elif body is not None:
                    self.answered += 1
                    self.generations.add(body["generation"])

    def wait_answered(self, count: int) -> None:
        """Block until ``count`` answers arrived (bounded)."""
        assert wait_for(lambda: self.answered >= count or bool(self.problems)), "no answers"

    def __enter__(self) -> QueryLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads), "a query thread hung"


def http_ask(client: TestClient) -> Callable[[str, bool], dict[str, Any]]:
    """An ``ask`` for :class:`QueryLoad` through the JSON API (raises on any non-200)."""

    def ask(question: str, answer: bool) -> dict[str, Any]:
        r = client.post("/api/ask", json={"question": question, "k": 8, "answer": answer})
        if r.status_code != 200:
            raise AssertionError(f"status {r.status_code}: {r.text[:200]}")
        body: dict[str, Any] = r.json()
        return body

    return ask
