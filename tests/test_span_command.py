"""``qa train-span-reader``'s flags (``qa.evaluation.span_command``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from qa.config import Settings
from qa.errors import ConfigError
from qa.evaluation.span_command import add_span_arguments, run_span_command


def _args(out: Path, *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_span_arguments(parser)
    return parser.parse_args(["--xquad", str(out / "missing.json"), "--out", str(out), *flags])


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--jobs", "0"), "--jobs must be at least 1, got 0"),
        (("--negatives", "-1"), "--negatives must be at least 0, got -1"),
    ],
)
def test_a_bad_count_is_named_before_anything_is_read(
    flags: tuple[str, ...], named: str, tmp_path: Path
) -> None:
    # The data file does not exist: the count is checked before it is opened.
    with pytest.raises(ConfigError, match=named):
        run_span_command(_args(tmp_path / "reader", *flags), Settings())
    assert not (tmp_path / "reader").exists()
