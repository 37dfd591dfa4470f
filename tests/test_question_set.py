"""The evaluation question set stays true to the seeds: evidence verbatim, answers inside it."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def test_question_set_matches_the_seeds() -> None:
    result = subprocess.run(
        [sys.executable, "eval/check_questions.py", "seeds"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: all checks passed" in result.stdout
