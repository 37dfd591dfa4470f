"""Queries during rebuilds come from one complete generation; two builds; kill -9 mid-build.

Builds run through the real command line in subprocesses, servers in-process or as serve.py
subprocesses, all with the fake embedder on 127.0.0.1. Every wait is bounded; nothing asserts a
duration. Each passage of each answer is checked against exactly the version of its file that
the answer's own generation indexed (the manifest records every document's SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa.ask.serialize import ask_result_json
from qa.ask.service import QAService
from qa.config import Settings
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.generation import load_index
from web.app import create_app

from ._reliability import (
    BULK_FILES,
    DEADLINE,
    GenerationChecker,
    QueryLoad,
    Versions,
    build_lock_held,
    child_env,
    generation_names,
    http_ask,
    index_cmd,
    run_index,
    summary_of,
    wait_for,
    write_bulk,
)
from .conftest import ROOT, SEED_NAMES


# -- queries during rebuilds -----------------------------------------------------------------
def change_seeds(versions: Versions, round_: int) -> None:
    """Round 0 edits a file, 1 adds one, 2 edits another and deletes the added one, 3 renames
    a file and edits the first again: every kind of change a build handles."""
    seeds = versions.seeds
    if round_ == 0:
        versions.edit(SEED_NAMES[0], round_)
    elif round_ == 1:
        versions.write("added.txt", "Added\n\nA heron stood in the harbour at dawn.\n")
    elif round_ == 2:
        versions.edit(SEED_NAMES[1], round_)
        (seeds / "added.txt").unlink()
    else:
        os.replace(seeds / SEED_NAMES[2], seeds / "renamed.txt")
        versions.edit(SEED_NAMES[0], round_)


@pytest.mark.slow
def test_queries_during_cli_rebuilds_come_from_one_complete_generation(
    settings: Settings, seeds_dir: Path
) -> None:
    """A service polling CURRENT answers every query while other processes rebuild, and each
    answer comes entirely from one generation that a build completed."""
    versions = Versions(seeds_dir)
    env = child_env(QA_KEEP_GENERATIONS="100")  # keep every manifest for the checks
    built = [summary_of(run_index(settings, env=env))["generation"]]
    service = QAService(settings)  # reload_interval=0.05: follows CURRENT
    service.start(update=False)
    checker = GenerationChecker(settings.index_dir, versions)

    def ask(question: str, answer: bool) -> dict[str, Any]:
        return ask_result_json(service.ask(question, k=8, answer=answer))

    try:
        with QueryLoad(ask, checker) as load:
            load.wait_answered(5)
            for round_ in range(4):
                change_seeds(versions, round_)
                summary = summary_of(run_index(settings, env=env))
                assert summary["generation"] not in built
                built.append(summary["generation"])
            assert wait_for(lambda: service.generation.generation == built[-1])
            load.wait_answered(load.answered + 10)
    finally:
        service.close()
    assert not load.problems, load.problems[:10]
    assert load.generations <= set(built)
    assert len(load.generations) >= 2  # the queries really spanned generation switches
    assert built[0] in load.generations
    assert built[-1] in load.generations


@pytest.mark.slow
def test_queries_during_watch_rebuilds_come_from_one_complete_generation(
    settings: Settings, seeds_dir: Path
) -> None:
    """The same through the app with ``watch=True``: edits to the seeds folder trigger builds in
    the server while clients ask over the JSON API."""
    versions = Versions(seeds_dir)
    app = create_app(settings.replace(keep_generations=100), watch=True, watch_debounce=0.2)
    checker = GenerationChecker(settings.index_dir, versions)
    with TestClient(app) as client:
        first = client.get("/healthz").json()["generation"]
        with QueryLoad(http_ask(client), checker) as load:
            load.wait_answered(5)
            time.sleep(0.3)  # let the watch start before the first change it should see
            current = first
            for round_ in range(4):
                versions.edit(SEED_NAMES[round_], round_)
                previous = current
                assert wait_for(
                    lambda prev=previous: client.get("/healthz").json()["generation"] != prev
                ), f"the watcher did not rebuild after edit {round_}"
                current = client.get("/healthz").json()["generation"]
                # The watcher rebuilt from this edit: the live index has the new version.
                docs = checker.documents(current)
                data = (seeds_dir / SEED_NAMES[round_]).read_bytes()
                assert docs[SEED_NAMES[round_]]["hash"] == hashlib.sha256(data).hexdigest()
            load.wait_answered(load.answered + 10)
    assert not load.problems, load.problems[:10]
    on_disk = generation_names(settings.index_dir)
    assert load.generations <= on_disk  # every answer names a generation that was written
    assert {first, current} <= load.generations


# -- two builds, kill -9 ---------------------------------------------------------------------
@pytest.mark.slow
def test_two_builds_at_once_one_runs_and_the_other_exits_2(
    settings: Settings, seeds_dir: Path
) -> None:
    """Two ``qa index --rebuild --wait 0`` processes: the second is refused while the first
    holds the lock, and only the first writes a generation."""
    first = build_index(settings)
    write_bulk(seeds_dir)
    env = child_env(QA_KEEP_GENERATIONS="10")  # nothing pruned: every generation is counted
    with subprocess.Popen(
        index_cmd(settings, "--rebuild", "--wait", "0"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as running:
        try:
            assert wait_for(
                lambda: build_lock_held(settings.index_dir) or running.poll() is not None
            )
            assert running.poll() is None, "the first build ended before it was seen running"
            second = run_index(settings, "--rebuild", "--wait", "0", env=env)
            overlapped = running.poll() is None
            out, err = running.communicate(timeout=DEADLINE)
        finally:
            if running.poll() is None:
                running.kill()
    assert overlapped, "the first build finished before the second one tried; add BULK_FILES"
    assert second.returncode == 2, second.stderr
    assert "another build is already running" in second.stderr
    assert str(settings.index_dir) in second.stderr
    assert "Traceback" not in second.stderr
    assert second.stdout.strip() == ""  # no summary: it built nothing
    assert running.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["added"] == len(SEED_NAMES) + BULK_FILES
    assert generation_names(settings.index_dir) == {first.generation, summary["generation"]}
    assert store.current_generation(settings.index_dir) == summary["generation"]
    assert len(load_index(settings).documents) == len(SEED_NAMES) + BULK_FILES


@pytest.mark.slow
def test_build_killed_with_sigkill_while_a_server_answers(
    settings: Settings, seeds_dir: Path
) -> None:
    """kill -9 of a CLI build: the running server answers from the previous generation all
    along, a restarted service loads it, and the next build completes and is picked up."""
    versions = Versions(seeds_dir)
    with TestClient(create_app(settings)) as client:
        before = client.get("/healthz").json()["generation"]
        checker = GenerationChecker(settings.index_dir, versions)
        with QueryLoad(http_ask(client), checker, threads=2) as load:
            load.wait_answered(5)
            write_bulk(seeds_dir)
            versions.remember_all()
            with subprocess.Popen(
                index_cmd(settings, "--rebuild", "--wait", "0"),
                cwd=ROOT,
                env=child_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ) as build:
                try:
                    assert wait_for(
                        lambda: build_lock_held(settings.index_dir) or build.poll() is not None
                    )
                    time.sleep(0.5)  # well into the build (chunking and embedding)
                    assert build.poll() is None, "the build ended before it could be killed"
                    os.kill(build.pid, signal.SIGKILL)
                    build.wait(timeout=30)
                finally:
                    if build.poll() is None:
                        build.kill()
            assert build.returncode == -signal.SIGKILL
            assert store.current_generation(settings.index_dir) == before
            answered = load.answered
            load.wait_answered(answered + 10)  # still answering, from the previous generation
            assert load.generations == {before}

            restarted = QAService(settings)
            try:
                restarted.start(update=False, poll=False)
                assert restarted.generation.generation == before
                assert restarted.ask("Chongqing", k=3).passages
            finally:
                restarted.close()

            summary = summary_of(run_index(settings, "--wait", "0"))
            assert summary["added"] == BULK_FILES
            assert wait_for(lambda: client.get("/healthz").json()["generation"] != before)
            after = client.get("/healthz").json()
            assert after["generation"] == summary["generation"]
            assert after["documents"] == len(SEED_NAMES) + BULK_FILES
            load.wait_answered(load.answered + 10)
    assert not load.problems, load.problems[:10]
    assert load.generations == {before, summary["generation"]}
    # The killed build's half-written folder (if it got that far) was cleaned up.
    assert generation_names(settings.index_dir) == {before, summary["generation"]}
