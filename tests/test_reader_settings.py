"""The reader and reranker settings: defaults, TOML, QA_READER / QA_RERANKER and the flags."""

from __future__ import annotations

from pathlib import Path

import pytest

import serve
from qa.cli import build_parser, settings_from
from qa.config import Settings


def test_off_by_default() -> None:
    settings = Settings.load(environ={})
    assert settings.reader is None
    assert settings.reranker is None


def test_environment_gives_paths() -> None:
    settings = Settings.load(environ={"QA_READER": "models/squad2", "QA_RERANKER": "models/ce"})
    assert settings.reader == Path("models/squad2")
    assert settings.reranker == Path("models/ce")


def test_empty_environment_value_leaves_it_off() -> None:
    assert Settings.load(environ={"QA_READER": ""}).reader is None


def test_toml_gives_paths(tmp_path: Path) -> None:
    config = tmp_path / "qa.toml"
    config.write_text('reader = "r"\nreranker = "c"\n', encoding="utf-8")
    settings = Settings.load(config_file=config, environ={})
    assert (settings.reader, settings.reranker) == (Path("r"), Path("c"))


@pytest.mark.parametrize("command", [["ask", "What?"], ["eval", "--questions", "q.jsonl"]])
def test_flags_override_the_environment(
    command: list[str], monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    monkeypatch.setenv("QA_READER", "from-env")
    monkeypatch.setenv("QA_RERANKER", "from-env")
    args = build_parser().parse_args([*command, "--reader", "from-flag", "--reranker", "ce"])
    settings = settings_from(args)
    assert settings.reader == Path("from-flag")
    assert settings.reranker == Path("ce")


def test_without_flags_the_environment_holds(monkeypatch: pytest.MonkeyPatch, no_env: None) -> None:
    monkeypatch.setenv("QA_READER", "from-env")
    assert settings_from(build_parser().parse_args(["ask", "What?"])).reader == Path("from-env")


def test_serve_has_the_flags() -> None:
    args = serve.build_parser().parse_args(["--reader", "r", "--reranker", "c"])
    assert (args.reader, args.reranker) == (Path("r"), Path("c"))
