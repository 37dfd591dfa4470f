"""The torch backend: a sentence-transformers model, with sentence vectors pooled from one pass."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from qa.embed.base import Embedder, Vectors, length_sorted_batches, pool_sentences
from qa.embed.models import default_device, resolve_model
from qa.errors import ModelLoadError


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

            self.model = SentenceTransformer(path, device=device or default_device())
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
        for idx in length_sorted_batches(texts, batch_size, progress=progress):
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
