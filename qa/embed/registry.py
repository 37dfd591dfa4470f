"""The embedder the settings name: the factory that picks a backend, and a per-process cache."""

from __future__ import annotations

import logging
import threading

from qa.config import FAKE_MODEL, Settings
from qa.embed.base import Embedder
from qa.embed.fake import FakeEmbedder
from qa.embed.models import default_device, resolve_model
from qa.embed.onnx_backend import OnnxEmbedder
from qa.embed.torch_backend import SentenceTransformerEmbedder

log = logging.getLogger(__name__)


def model_id_for(model: str) -> str:
    """The manifest id of ``model`` without loading it (used to check an index before loading)."""
    if model == FAKE_MODEL:
        return FakeEmbedder().model_id
    return resolve_model(model)[1]


_CACHE: dict[tuple[str, str | None, str], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def load_embedder(settings: Settings) -> Embedder:
    """The embedder the settings name; loaded once per process and shared (models are big).

    ``backend = "onnx"`` runs the same model with ONNX Runtime on the CPU
    (:mod:`qa.embed.onnx_backend`); when a GPU is asked for, or found with no device set,
    torch runs it.
    """
    if settings.model == FAKE_MODEL:
        return FakeEmbedder()
    key = (settings.model, settings.device, settings.backend)
    with _CACHE_LOCK:
        if key not in _CACHE:
            log.info("loading embedding model %s (%s)", settings.model, settings.backend)
            device = settings.device or default_device()
            if settings.backend == "onnx" and device == "cpu":
                _CACHE[key] = OnnxEmbedder(model=settings.model)
            else:
                _CACHE[key] = SentenceTransformerEmbedder(model=settings.model, device=device)
        return _CACHE[key]
