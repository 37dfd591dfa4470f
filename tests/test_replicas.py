"""Two replicas of the app through Ray Serve follow a reindex without failing a query."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from qa.config import Settings
from qa.index import storage as store
from qa.index.builder import build_index

from .conftest import SEEDS

ray = pytest.importorskip("ray", reason="needs the 'ray' extra (make test installs it)")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.ray

TOKEN = "replica-test-token"  # a test's own admin token
QUESTIONS = ["Which city is a friendly city of Changchun?", "Chongqing trade office", "535"]


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """Two replicas on a free loopback port over one shared index folder (fake model)."""
    from web.replicas import deploy, prepare_ray_environment, shutdown

    root = tmp_path_factory.mktemp("replicas")
    shutil.copytree(SEEDS, root / "seeds", ignore=shutil.ignore_patterns(".*", "README*"))
    settings = Settings(
        seeds_dir=root / "seeds",
        index_dir=root / "embeddings",
        model="fake",
        answer_threshold=0.0,
        reload_interval=0.2,
        admin_token=TOKEN,
    )
    prepare_ray_environment()
    ray.init(
        address="local",  # a private cluster, even if another runs on this machine
        num_cpus=2,
        object_store_memory=100 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    port = free_port()
    try:
        deploy(settings, replicas=2, host="127.0.0.1", port=port, replica_cpus=0.5)
        yield f"http://127.0.0.1:{port}", settings
    finally:
        shutdown()


def replica_generations(client: httpx.Client, base: str, *, tries: int = 60) -> dict[float, str]:
    """``{replica: live generation}`` over ``tries`` health checks.

    A replica is known by the time of its own start-up build (``last_build_at``), which only
    changes when that replica builds; the test reindexes from outside."""
    seen: dict[float, str] = {}
    for _ in range(tries):
        body = client.get(f"{base}/healthz").json()
        seen[body["last_build_at"]] = body["generation"]
    return seen


def test_two_replicas_pick_up_a_reindex_without_failing_a_query(
    replicas: tuple[str, Settings],
) -> None:
    base, settings = replicas
    before = store.current_generation(settings.index_dir)
    with httpx.Client(timeout=30) as client:
        seen = replica_generations(client, base)
        assert len(seen) == 2, seen
        assert set(seen.values()) == {before}

        failures: list[str] = []
        answered: list[str] = []
        stop = threading.Event()

        def ask(n: int) -> None:
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    q = QUESTIONS[n % len(QUESTIONS)]
                    r = c.post(f"{base}/api/ask", json={"question": q, "k": 5})
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        answered.append(r.json()["generation"])
                    n += 1

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            target = sorted(settings.seeds_dir.glob("*.txt"))[0]
            target.write_text(target.read_text("utf-8") + "\nA new paragraph.\n", "utf-8")
            after = build_index(settings).generation
            assert after not in (None, before)
            published = time.monotonic()
            # Bounded so a broken reload fails instead of hanging; how fast replicas pick up a
            # generation is measured in bench/load_test.py --replicas, not asserted here.
            while time.monotonic() - published < 60:
                seen = replica_generations(client, base, tries=20)
                if len(seen) == 2 and set(seen.values()) == {after}:
                    break
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    assert set(seen.values()) == {after}, seen
    assert failures == []
    assert set(answered) <= {before, after}
    assert answered.count(before) > 0
    assert answered.count(after) > 0


def test_reindex_requests_to_both_replicas_are_serialised_by_the_build_lock(
    replicas: tuple[str, Settings],
) -> None:
    from qa.index.generation import load_index

    base, settings = replicas
    target = sorted(settings.seeds_dir.glob("*.txt"))[2]
    target.write_text(target.read_text("utf-8") + "\nAnother new paragraph.\n", "utf-8")
    replies: list[tuple[int, dict[str, object]]] = []

    def post() -> None:
        r = httpx.post(
            f"{base}/api/reindex", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        )
        replies.append((r.status_code, r.json()))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    codes = [code for code, _ in replies]
    assert len(codes) == 6
    assert set(codes) <= {200, 409}, replies
    # Exactly one request built the change; the others found nothing left to do or were told
    # that a build was running. Two builds racing would both report a change.
    assert [body["changed"] for code, body in replies if code == 200].count(True) == 1, replies
    live = store.current_generation(settings.index_dir)
    assert load_index(settings).generation == live  # complete, checksums verified
    with httpx.Client(timeout=30) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if set(replica_generations(client, base, tries=20).values()) == {live}:
                break
        assert set(replica_generations(client, base, tries=20).values()) == {live}
