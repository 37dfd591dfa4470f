"""Shared fixtures: a copy of the seeds in tmp_path and settings that use the fake embedder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from qa.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_NAMES = sorted(p.name for p in SEEDS.glob("*.txt"))

# CI runs the same examples every time, so a landing never hinges on a random draw; local runs
# keep exploring new examples.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def seeds_dir(tmp_path: Path) -> Path:
    """A private copy of the five seed articles."""
    target = tmp_path / "seeds"
    shutil.copytree(SEEDS, target, ignore=shutil.ignore_patterns(".*", "README*"))
    return target


@pytest.fixture
def settings(seeds_dir: Path, tmp_path: Path) -> Settings:
    """Settings over the seed copy with the deterministic fake embedder (fast, no model)."""
    return Settings(
        seeds_dir=seeds_dir,
        index_dir=tmp_path / "embeddings",
        model="fake",
        answer_threshold=0.0,
        reload_interval=0.05,
    )


@pytest.fixture
def real_settings(seeds_dir: Path, tmp_path: Path) -> Settings:
    """Settings over the seed copy with the real bundled model."""
    return Settings(seeds_dir=seeds_dir, index_dir=tmp_path / "embeddings", model="bundled")


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No QA_* variables from the developer's shell leak into a test."""
    for key in list(os.environ):
        if key.startswith("QA_"):
            monkeypatch.delenv(key)
    return


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app over the seed copy with the fake embedder, lifespan entered."""
    from web.app import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client
