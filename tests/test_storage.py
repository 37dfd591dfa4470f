"""The index on disk: checksums catch altered or truncated files; other settings are refused."""

from __future__ import annotations

import pytest

from qa.config import Settings
from qa.errors import IndexCorruptError, IndexMismatchError
from qa.index import storage as store
from qa.index.builder import build_index
from qa.index.generation import load_index

from .test_builder import assert_provenance


def test_corrupted_file_is_detected_and_rebuild_recovers(settings: Settings) -> None:
    build_index(settings)
    folder = store.current_path(settings.index_dir)
    target = folder / "index.faiss"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=r"index.faiss' does not match its checksum"):
        load_index(settings)
    with pytest.raises(IndexCorruptError, match="--rebuild"):
        build_index(settings)
    build_index(settings, rebuild=True)
    assert_provenance(settings)


def test_truncated_file_and_manifest_are_detected(settings: Settings) -> None:
    build_index(settings)
    folder = store.current_path(settings.index_dir)
    passages = folder / "passages.jsonl"
    passages.write_bytes(passages.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match=r"passages.jsonl' is 100 bytes.*truncated"):
        load_index(settings)
    manifest = folder / store.MANIFEST
    manifest.write_text(manifest.read_text()[:50])
    with pytest.raises(IndexCorruptError, match=r"manifest .* unreadable"):
        load_index(settings)


def test_mismatched_settings_are_refused_with_a_rebuild_hint(settings: Settings) -> None:
    build_index(settings)
    with pytest.raises(IndexMismatchError, match=r"chunking .*--rebuild"):
        load_index(settings.replace(chunk_tokens=96))
    with pytest.raises(IndexMismatchError, match=r"model 'fake-hash-64'.*--rebuild"):
        load_index(settings.replace(model="bundled"))
    with pytest.raises(IndexMismatchError):
        build_index(settings.replace(chunk_tokens=96))
    summary = build_index(settings.replace(chunk_tokens=96), rebuild=True)
    assert summary.added == 5
