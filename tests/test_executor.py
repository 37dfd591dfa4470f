"""The executor seam and its settings; runs without Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qa.config import Settings
from qa.errors import ConfigError
from qa.index.builder import build_index, make_executor
from qa.index.executor import LocalExecutor
from qa.index.generation import load_index


def test_executor_settings_from_env_and_toml(tmp_path: Path, no_env: None) -> None:
    config = tmp_path / "qa.toml"
    config.write_text('executor = "ray"\nray_address = "auto"\n', encoding="utf-8")
    s = Settings.load(config_file=config, environ={"QA_RAY_WORKERS": "3"})
    assert (s.executor, s.ray_address, s.ray_workers) == ("ray", "auto", 3)
    assert Settings.load(environ={}).executor == "local"


@pytest.mark.parametrize(("field", "value"), [("executor", "dask"), ("ray_workers", -1)])
def test_bad_executor_settings_are_named(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=str(value)):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_local_executor_is_the_default_path(settings: Settings) -> None:
    executor = make_executor(settings)
    assert isinstance(executor, LocalExecutor)
    summary = build_index(settings, executor=executor)
    assert executor.embedded == summary.embedded == summary.passages > 0
    gen = load_index(settings)
    assert sum(len(ls.segment.vectors) for ls in gen.segments) == summary.passages


def test_ray_executor_without_ray_says_how_to_install(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    monkeypatch.delitem(sys.modules, "qa.index.ray_executor", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'seedqa\[ray\]'"):
        build_index(settings.replace(executor="ray"))
    assert not settings.index_dir.exists()  # refused before the index folder is touched


def test_replicas_without_ray_say_how_to_install(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.replicas import deploy

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"--replicas needs .*pip install 'seedqa\[ray\]'"):
        deploy(settings, replicas=2, host="127.0.0.1", port=1)
    with pytest.raises(ConfigError, match="at least 1, got 0"):
        deploy(settings, replicas=0, host="127.0.0.1", port=1)
