"""What a manifest records of how its index was built (qa/index/provenance.py)."""

from __future__ import annotations

import platform

from qa.config import Settings
from qa.embed.fake import FakeEmbedder
from qa.index.builder import build_index
from qa.index.generation import load_index
from qa.index.provenance import build_versions, model_info


def test_versions_name_python_and_the_libraries_that_shape_an_index() -> None:
    versions = build_versions()
    assert versions["python"] == platform.python_version()
    assert {"faiss-cpu", "numpy"} <= set(versions)


def test_model_info_describes_the_embedder(settings: Settings) -> None:
    embedder = FakeEmbedder()
    info = model_info(settings, embedder, None)
    assert info == {
        "id": embedder.model_id,
        "dimension": embedder.dimension,
        "max_seq_length": embedder.max_seq_length,
    }


def test_a_build_with_nothing_to_embed_keeps_the_previous_model_record(
    settings: Settings,
) -> None:
    build_index(settings)
    previous = load_index(settings)
    previous.manifest["model"]["note"] = "kept as it was"
    assert model_info(settings, None, previous) is previous.manifest["model"]
