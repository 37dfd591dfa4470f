"""Which files are read, which are skipped, and the warnings that name them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from qa.errors import SeedFileError
from qa.ingest.seeds import read_seed, scan


def test_skips_are_named_and_the_scan_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seeds = tmp_path / "seeds"
    (seeds / "deep" / "er" / "still").mkdir(parents=True)
    (seeds / "ok.txt").write_text("Title\n\nBody sentence.")
    (seeds / "deep" / "er" / "still" / "nested.md").write_text("# Nested\n\nText.")
    (seeds / ".hidden.txt").write_text("secret")
    (seeds / "image.png").write_bytes(b"\x89PNG\r\n")
    (seeds / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (seeds / "empty.txt").write_text("  \n\n ")
    (seeds / "binary.txt").write_bytes(b"abc\x00def")
    (seeds / "bom.txt").write_bytes("\ufeffBOM title\n\nFine.".encode())
    outside = tmp_path / "outside.txt"
    outside.write_text("Outside the seeds folder.")
    os.symlink(outside, seeds / "link_out.txt")
    os.symlink(seeds / "ok.txt", seeds / "link_in.txt")
    os.symlink(seeds, seeds / "deep" / "loop")

    with caplog.at_level(logging.WARNING, logger="qa.ingest.seeds"):
        files, skipped = scan(seeds)

    assert sorted(f.source for f in files) == [
        "bom.txt",
        "deep/er/still/nested.md",
        "link_in.txt",
        "ok.txt",
    ]
    reasons = {s.source: s.reason for s in skipped}
    assert "hidden" in reasons[".hidden.txt"]
    assert "not a text file" in reasons["image.png"]
    assert reasons["latin1.txt"] == (
        "seed file 'latin1.txt' is not UTF-8 text (byte 0xe9 at offset 3)"
    )
    assert "empty" in reasons["empty.txt"]
    assert "binary" in reasons["binary.txt"]
    assert "offset 3" in reasons["binary.txt"]
    assert "outside the seeds folder" in reasons["link_out.txt"]
    assert "symlinked folder" in reasons["deep/loop"]
    # Every skip was logged with the file's name.
    for source in reasons:
        assert any(source in r.getMessage() for r in caplog.records)


def test_large_file_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # sparse: 50 MB without using the disk
    with pytest.raises(SeedFileError, match=r"'big.txt' is too large \(52,428,800 bytes"):
        read_seed(tmp_path, big)


def test_missing_seeds_folder(tmp_path: Path) -> None:
    with pytest.raises(SeedFileError, match="does not exist"):
        scan(tmp_path / "nope")
