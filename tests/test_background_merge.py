"""Policy merges run on the service's background thread: a document change with ``wait=true``
returns when the edit is live, not after a merge, and the merge still publishes afterwards
without losing the edit."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from qa.ask.changes import put_document
from qa.ask.service import QAService
from qa.config import Settings
from qa.index import merger as merger_module
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.generation import load_index

from .conftest import SEED_NAMES

BODY = b"Harbour news\n\nThe lighthouse on the north pier was repainted red.\n"


def _segments(settings: Settings) -> int:
    return len(load_index(settings).segments)


def test_a_put_with_wait_returns_while_a_slow_merge_runs(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.replace(merge_factor=2)  # the second segment makes the policy merge
    build_index(settings)
    assert _segments(settings) == 1
    started, release = threading.Event(), threading.Event()
    real = merger_module.merge_segments

    def slow_merge(settings_: Settings, **kwargs: Any) -> str | None:
        started.set()
        assert release.wait(30), "the test never let the merge finish"
        return real(settings_, **kwargs)

    monkeypatch.setattr(merger_module, "merge_segments", slow_merge)
    service = QAService(settings)
    try:
        change = put_document(service, "uploads/harbour.txt", BODY, wait_live=True)
        # Returned with the edit live while the merge is still held up.
        assert change.status == "live"
        assert started.wait(10), "no merge was scheduled after the publish"
        assert service.merger.running
        assert not service.merger.merged
        assert not change.build or not change.build.merged
        assert "uploads/harbour.txt" in service.generation.documents
        assert _segments(settings) == 2
        release.set()
        assert service.merger.wait_idle(30)
        assert service.merger.merged, "the policy did not merge"
        assert store.current_generation(settings.index_dir) == service.merger.merged[-1]
        assert service.generation.generation == service.merger.merged[-1]
        assert _segments(settings) == 1
        gen = service.generation
        assert "uploads/harbour.txt" in gen.documents
        assert set(gen.documents) == set(SEED_NAMES) | {"uploads/harbour.txt"}
    finally:
        release.set()
        service.close()


def test_requests_during_a_merge_are_coalesced_into_one_more_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_index(settings)
    calls: list[int] = []
    running = threading.Event()
    release = threading.Event()
    overlap: list[bool] = []
    inside = threading.Lock()

    def counted(settings_: Settings, **kwargs: Any) -> str | None:
        overlap.append(not inside.acquire(blocking=False))
        try:
            calls.append(1)
            running.set()
            release.wait(10)
            return None
        finally:
            inside.release()

    monkeypatch.setattr(merger_module, "merge_segments", counted)
    merger = merger_module.BackgroundMerger(settings)
    merger.request()
    assert running.wait(10)
    for _ in range(5):
        merger.request()
    release.set()
    assert merger.wait_idle(10)
    assert len(calls) == 2  # the running one, then one for all five requests
    assert not any(overlap), "two merges ran at once"
    merger.close()
