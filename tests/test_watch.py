"""The seeds-folder watcher: debounced reindexing that survives errors and stops promptly."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qa.ask.service import QAService
from qa.config import Settings
from qa.errors import IndexBusyError
from qa.index.watch import SeedWatcher

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
#: Upper bound for anything the watcher should do; it normally takes well under a second.
DEADLINE = 20.0


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[QAService]:
    shutil.copytree(SEEDS, tmp_path / "seeds")
    settings = Settings(seeds_dir=tmp_path / "seeds", index_dir=tmp_path / "emb", model="fake")
    svc = QAService(settings)
    svc.start(poll=False)
    yield svc
    svc.close()


def test_adding_a_file_reindexes_the_service(service: QAService) -> None:
    seeds = service.settings.seeds_dir
    before = service.generation.generation
    watcher = SeedWatcher(service, seeds, debounce=0.2)
    watcher.start()
    try:
        time.sleep(0.3)  # let the watch start before the change it should see
        (seeds / "new.txt").write_text("Fresh news\n\nA heron was seen at the harbour.\n")
        assert wait_for(lambda: "new.txt" in service.generation.documents), "no reindex happened"
        assert service.generation.generation != before
        assert service.last_build is not None
        assert service.last_build.added == 1
        assert watcher.runs == 1
        assert watcher.failures == 0
    finally:
        watcher.stop()
    assert not watcher.running


def test_a_burst_of_changes_is_debounced_into_one_reindex(tmp_path: Path) -> None:
    calls: list[float] = []
    watcher = SeedWatcher(lambda: calls.append(time.monotonic()), tmp_path, debounce=0.5)
    watcher.start()
    try:
        time.sleep(0.3)
        for i in range(5):
            (tmp_path / f"f{i}.txt").write_text(str(i))
            time.sleep(0.1)
        assert wait_for(lambda: len(calls) == 1)
        time.sleep(1.0)  # nothing else changed: no second call
        assert len(calls) == 1
    finally:
        watcher.stop()


def test_a_failing_reindex_is_logged_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[Exception | None] = [IndexBusyError("busy"), RuntimeError("boom"), None]
    done = threading.Event()

    def flaky() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        done.set()
        return "built"

    watcher = SeedWatcher(flaky, tmp_path, debounce=0.1, retry=0.2)
    watcher.start()
    try:
        time.sleep(0.3)
        (tmp_path / "a.txt").write_text("a")
        assert done.wait(DEADLINE), "the watcher gave up after an error"
        assert watcher.running
        assert watcher.failures == 2
        assert watcher.runs == 1
    finally:
        watcher.stop()
    assert "index is busy" in caplog.text
    assert "boom" in caplog.text


def test_a_missing_folder_is_watched_once_it_appears(tmp_path: Path) -> None:
    seeds = tmp_path / "later"
    called = threading.Event()
    watcher = SeedWatcher(called.set, seeds, debounce=0.1, retry=0.2)
    watcher.start()
    try:
        time.sleep(0.3)
        assert watcher.running  # survived the missing folder
        seeds.mkdir()
        time.sleep(0.6)  # the next attempt finds the folder and starts watching it
        (seeds / "a.txt").write_text("a")
        assert called.wait(DEADLINE)
    finally:
        watcher.stop()


def test_stop_is_prompt(tmp_path: Path) -> None:
    watcher = SeedWatcher(lambda: None, tmp_path, debounce=5.0)
    watcher.start()
    time.sleep(0.2)
    started = time.monotonic()
    watcher.stop()
    assert not watcher.running
    assert time.monotonic() - started < 2.0


def test_the_app_follows_the_seeds_folder_when_asked(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from web.app import create_app

    shutil.copytree(SEEDS, tmp_path / "seeds")
    settings = Settings(seeds_dir=tmp_path / "seeds", index_dir=tmp_path / "emb", model="fake")
    with TestClient(create_app(settings, watch=True, watch_debounce=0.2)) as client:
        assert client.get("/healthz").json()["documents"] == 5
        time.sleep(0.3)
        (tmp_path / "seeds" / "new.txt").write_text("Fresh news\n\nA heron at the harbour.\n")
        assert wait_for(lambda: client.get("/healthz").json()["documents"] == 6)
