"""What a generation's manifest records about how it was built: the model and library versions.

A manifest names the embedding model (id, dimension, sequence length) so a later build or load can
refuse an index made for another model, and the versions of the libraries that shaped it, so a
report of a bad index says what built it.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from qa.config import Settings
from qa.embed.base import Embedder
from qa.embed.registry import load_embedder
from qa.index.generation import IndexGeneration


def build_versions() -> dict[str, str]:
    """The versions of Python and of the libraries that shape an index, for its manifest."""
    out = {"python": platform.python_version()}
    for dist in ("seedqa", "faiss-cpu", "sentence-transformers", "torch", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def model_info(
    settings: Settings, embedder: Embedder | None, previous: IndexGeneration | None
) -> dict[str, Any]:
    """What the manifest records of the model (an empty seeds folder still records it)."""
    if embedder is None and previous is not None:
        model: dict[str, Any] = previous.manifest["model"]
        return model
    embedder = embedder or load_embedder(settings)
    return {
        "id": embedder.model_id,
        "dimension": embedder.dimension,
        "max_seq_length": embedder.max_seq_length,
    }
