"""Reading one indexed document: which paths resolve inside the seeds folder, and highlights."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.ask.documents import highlight, resolve_document
from qa.errors import DocumentNotFoundError, InvalidQueryError


def test_resolve_document_rules(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    (seeds / "sub").mkdir(parents=True)
    (seeds / "sub" / "a.txt").write_text("a", encoding="utf-8")
    (tmp_path / "out.txt").write_text("out", encoding="utf-8")
    (seeds / "inside.txt").symlink_to(seeds / "sub" / "a.txt")
    (seeds / "outside.txt").symlink_to(tmp_path / "out.txt")
    assert resolve_document(seeds, "sub/a.txt") == (seeds / "sub" / "a.txt").resolve()
    assert resolve_document(seeds, "inside.txt") == (seeds / "sub" / "a.txt").resolve()
    for bad in [
        "outside.txt",
        "../out.txt",
        "sub/../../out.txt",
        str(tmp_path / "out.txt"),
        "sub",
        "",
    ]:
        with pytest.raises(DocumentNotFoundError, match="no document"):
            resolve_document(seeds, bad)


def test_highlight_cuts_around_the_range_and_names_bad_ranges() -> None:
    assert highlight("abcdef", 1, 3) == ("a", "bc", "def")
    assert highlight("abcdef", None, None) is None
    with pytest.raises(InvalidQueryError, match="both start and end"):
        highlight("abcdef", 1, None)
    with pytest.raises(InvalidQueryError, match=r"start \(4\) is after end \(2\)"):
        highlight("abcdef", 4, 2)
