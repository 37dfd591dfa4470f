"""A corrupt, truncated or dangling index is refused with a message naming the file, and
``qa index --rebuild`` recovers; hostile seed folders build in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa.cli import main as cli_main
from qa.config import Settings
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.generation import load_index
from web.app import create_app

from ._reliability import (
    DEADLINE,
    MiB,
    child_env,
    generation_names,
    index_cmd,
    run_index,
    summary_of,
)
from .conftest import ROOT, SEED_NAMES


# -- corruption ------------------------------------------------------------------------------
def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


CORRUPTIONS = [
    "flipped index.faiss",
    "truncated passages",
    "deleted vectors",
    "garbage manifest",
    "dangling CURRENT",
]


def corrupt(index_dir: Path, kind: str) -> Path:
    """Damage the live index one way; the path the error message must name."""
    folder = store.current_path(index_dir)
    if kind == "flipped index.faiss":
        _flip_middle_byte(folder / "index.faiss")
        return folder / "index.faiss"
    if kind == "truncated passages":
        path = folder / "passages.jsonl"
        path.write_bytes(path.read_bytes()[:100])
        return path
    if kind == "deleted vectors":
        (folder / "vectors.npy").unlink()
        return folder / "vectors.npy"
    if kind == "garbage manifest":
        (folder / store.MANIFEST).write_text("{not json", encoding="utf-8")
        return folder / store.MANIFEST
    (index_dir / store.CURRENT).write_text("20000101T000000.000000-000000\n", encoding="utf-8")
    return index_dir / store.CURRENT


def _cli(settings: Settings, *args: str) -> list[str]:
    return [
        "index",
        "--seeds",
        str(settings.seeds_dir),
        "--index",
        str(settings.index_dir),
        "--model",
        "fake",
        *args,
    ]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupt_index_cli_says_which_file_and_rebuild_recovers(
    settings: Settings, corruption: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``qa index`` exits 2 naming the damaged file and suggesting --rebuild; --rebuild works."""
    assert cli_main(_cli(settings)) == 0
    named = corrupt(settings.index_dir, corruption)
    capsys.readouterr()
    assert cli_main(_cli(settings)) == 2
    err = capsys.readouterr().err
    assert str(named) in err, err
    assert "--rebuild" in err
    assert cli_main(_cli(settings, "--rebuild", "--json")) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["added"] == 5
    gen = load_index(settings)
    assert set(gen.documents) == set(SEED_NAMES)
    for p in gen.passages:
        raw = (settings.seeds_dir / p.source).read_bytes().decode("utf-8")
        assert raw[p.start : p.end] == p.text


@pytest.mark.slow
def test_corrupt_index_python_m_qa_exit_codes(settings: Settings) -> None:
    """The same through ``python -m qa`` itself: exit 2 and a message, then 0 after --rebuild."""
    summary_of(run_index(settings))
    target = store.current_path(settings.index_dir) / "index.faiss"
    _flip_middle_byte(target)
    refused = run_index(settings)
    assert refused.returncode == 2
    assert f"index file '{target}' does not match its checksum" in refused.stderr
    assert "python -m qa index --rebuild" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert summary_of(run_index(settings, "--rebuild"))["added"] == 5
    assert len(load_index(settings).documents) == 5


def test_unreadable_current_is_reported_and_rebuild_recovers(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(_cli(settings)) == 0
    (settings.index_dir / store.CURRENT).write_bytes(b"\xff\xfe\x00garbage")
    capsys.readouterr()
    assert cli_main(_cli(settings)) == 2
    err = capsys.readouterr().err
    assert str(settings.index_dir / store.CURRENT) in err
    assert "--rebuild" in err
    assert cli_main(_cli(settings, "--rebuild")) == 0
    assert set(load_index(settings).documents) == set(SEED_NAMES)


def test_a_dangling_current_is_refused_without_deleting_generations(
    settings: Settings,
) -> None:
    assert cli_main(_cli(settings)) == 0
    (settings.seeds_dir / "new.txt").write_text("New\n\nA second generation.\n", encoding="utf-8")
    assert cli_main(_cli(settings)) == 0
    intact = generation_names(settings.index_dir)
    assert len(intact) == 2
    # Say a backup restored an older CURRENT, or someone deleted a folder by hand.
    (settings.index_dir / store.CURRENT).write_text("0-restored\n", encoding="utf-8")
    assert cli_main(_cli(settings)) == 2
    assert generation_names(settings.index_dir) == intact  # the intact index must survive


# -- hostile seed folders --------------------------------------------------------------------
#: Runs a command and writes its peak RSS (kB). A child forked straight from pytest would start
#: with pytest's own high-water mark (Linux carries ``maxrss`` across fork and exec), which
#: after the model tests is far above what ``qa index`` uses; this small launcher is the parent.
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(
    cmd: Sequence[str], *, env: dict[str, str], logs: Path, timeout: float = DEADLINE
) -> tuple[int, str, str, int]:
    """Run ``cmd``; (exit code, stdout, stderr, peak RSS in bytes of that process)."""
    out, err, rss = (logs.with_suffix(s) for s in (".out", ".err", ".rss"))
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(rss), *cmd],
            cwd=ROOT,
            env=env,
            stdout=fo,
            stderr=fe,
            timeout=timeout,
            check=False,
        )
    text = (out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8"))
    return proc.returncode, text[0], text[1], int(rss.read_text()) * 1024  # kB on Linux


@pytest.mark.slow
def test_huge_sparse_seed_deep_folders_and_folder_loops_build_in_bounded_memory(
    settings: Settings, seeds_dir: Path, tmp_path: Path
) -> None:
    """A 50 MB file is skipped with a warning naming it (never read), a file 30 folders deep
    is indexed, symlinked folders that loop are not followed."""
    deep = seeds_dir.joinpath(*(f"level{i:02d}" for i in range(30)))
    deep.mkdir(parents=True)
    (deep / "article.txt").write_text(
        "Deep article\n\nThe deepest folder holds a report about kelp forests.\n",
        encoding="utf-8",
    )
    (seeds_dir / "loop").symlink_to(".")
    (deep / "up").symlink_to(seeds_dir)  # 30 levels down, back to the top
    deep_source = (deep / "article.txt").relative_to(seeds_dir).as_posix()

    control = run_measured(index_cmd(settings), env=child_env(), logs=tmp_path / "control")
    assert control[0] == 0, control[2][-3000:]
    with open(seeds_dir / "big.txt", "wb") as fh:
        fh.truncate(50 * MiB)  # sparse: 50 MB of NUL bytes that take no disk space
    code, out, err, peak = run_measured(
        index_cmd(settings, "--rebuild"), env=child_env(), logs=tmp_path / "big"
    )
    assert code == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["added"] == len(SEED_NAMES) + 1
    assert summary["skipped"] == 3
    assert "seed file 'big.txt' is too large (52,428,800 bytes" in err
    assert "'loop' is a symlinked folder (not followed)" in err
    assert f"'{deep_source.rsplit('/', 1)[0]}/up' is a symlinked folder" in err
    assert deep_source in load_index(settings).documents
    assert peak < 1.5 * 1024 * MiB  # the generous absolute bound
    # Sharper: the same build without the big file peaks at the same RSS (equal to the MB in
    # trials). Reading the file at all raised the peak by 14 MB (size check disabled: the bytes
    # are dropped as binary at once, while the process is still small).
    assert peak - control[3] < 8 * MiB, (peak // MiB, control[3] // MiB)


def test_a_looping_file_symlink_is_skipped_with_a_warning(
    settings: Settings, seeds_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (seeds_dir / "a.txt").symlink_to("b.txt")
    (seeds_dir / "b.txt").symlink_to("a.txt")
    (seeds_dir / "self.txt").symlink_to("self.txt")
    summary = build_index(settings)
    assert summary.added == len(SEED_NAMES)
    assert {s.source for s in summary.skipped_files} == {"a.txt", "b.txt", "self.txt"}
    assert "a.txt" in caplog.text


def test_a_looping_file_symlink_does_not_stop_the_server(
    settings: Settings, seeds_dir: Path
) -> None:
    (seeds_dir / "a.txt").symlink_to("b.txt")
    (seeds_dir / "b.txt").symlink_to("a.txt")
    with TestClient(create_app(settings)) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["documents"] == len(SEED_NAMES)
