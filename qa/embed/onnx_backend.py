"""ONNX Runtime backend for mean-pooling sentence-transformers models (``backend = "onnx"``).

The transformer is exported once, locally, from the model folder's own weights with
``torch.onnx.export`` into a cache folder keyed by a hash of the weights (nothing is downloaded),
written aside and renamed into place so a reader never sees half a file. ONNX Runtime then runs
it; tokenising uses the model's own ``tokenizer.json`` through the ``tokenizers`` library.
Vectors match the torch backend within float error (cosine > 0.9999 on the seeds; the test
suite checks ≥ 0.999), so an index built with one backend is served by the other unchanged.

sentence-transformers' own ``backend="onnx"`` is not used: it needs ``optimum``, whose releases
pin transformers 4.x and would downgrade the transformers that sentence-transformers needs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.embed.base import Embedder, Vectors, length_sorted_batches, pool_sentences
from qa.embed.models import resolve_model
from qa.errors import ModelLoadError

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
MEAN_POOLING = "sentence_transformers.models.Pooling"


def default_cache_dir() -> Path:
    """Where exported graphs are kept: ``$SEEDQA_CACHE/onnx`` or ``~/.cache/seedqa/onnx``."""
    root = os.environ.get("SEEDQA_CACHE") or Path.home() / ".cache" / "seedqa"
    return Path(root) / "onnx"


def weights_digest(weights: Path) -> str:
    """Short SHA-256 of a weights file: the export cache key."""
    h = hashlib.sha256()
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _check_model_folder(model: str, folder: Path) -> Path:
    """The weights file of a sentence-transformers folder this backend can run, or an error."""
    if not folder.is_dir():
        raise ModelLoadError(
            f"backend 'onnx' needs a model folder; {model!r} is not one here "
            "(give a folder path, or use backend 'torch')"
        )
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        pooling_dir = next(folder / m["path"] for m in modules if m["type"] == MEAN_POOLING)
        pooling = json.loads((pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise ModelLoadError(
            f"backend 'onnx' cannot read the modules of model {model!r} in '{folder}': {exc}"
        ) from exc
    if not pooling.get("pooling_mode_mean_tokens") or any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and "mean_tokens" not in k
    ):
        raise ModelLoadError(
            f"backend 'onnx' runs mean-pooling models only; {model!r} pools otherwise "
            "(use backend 'torch')"
        )
    if not (folder / "tokenizer.json").is_file():
        raise ModelLoadError(f"backend 'onnx' needs tokenizer.json in '{folder}' ({model!r})")
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    names = ", ".join(WEIGHT_FILES)
    raise ModelLoadError(f"backend 'onnx' finds no weights ({names}) in '{folder}'")


def export_onnx(folder: Path, target: Path) -> Path:
    """Export the transformer of a sentence-transformers folder to ``target`` (ONNX, fp32)."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = AutoModel.from_pretrained(str(folder)).eval()
    inputs = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        inputs.append("token_type_ids")

    class _Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            return self.model(**dict(zip(inputs, args, strict=True))).last_hidden_state

    dummy = torch.ones((2, 8), dtype=torch.long)
    args = tuple(torch.zeros_like(dummy) if n == "token_type_ids" else dummy for n in inputs)
    axes = {0: "batch", 1: "sequence"}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        # The TorchScript exporter warns that it is deprecated and that tracing fixes shapes it
        # does not (dynamic axes are declared); the export is checked against torch by tests.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Encoder(),
                args,
                str(tmp),
                input_names=inputs,
                output_names=["last_hidden_state"],
                dynamic_axes={name: axes for name in [*inputs, "last_hidden_state"]},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT
            )
        os.replace(tmp, target)  # write aside, then rename
    finally:
        tmp.unlink(missing_ok=True)
    return target


def make_session(graph: Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``graph`` with all graph optimisations on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: on a few shared cores a spinning pool
    # steals the CPU from the web server's threads and from everything else.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def _mean_pool(hidden: Any, mask: Any) -> Vectors:
    """Unit mean of each row's token embeddings over its attention mask (padding left out)."""
    m = mask[:, :, None].astype(np.float32)
    pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return np.ascontiguousarray(pooled, dtype=np.float32)


class OnnxEmbedder(Embedder):
    """A mean-pooling sentence-transformers model run by ONNX Runtime on the CPU."""

    def __init__(
        self, *, model: str, cache_dir: Path | None = None, threads: int | None = None
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path, self.model_id = resolve_model(model)
        folder = Path(path)
        weights = _check_model_folder(model, folder)
        target = (cache_dir or default_cache_dir()) / weights_digest(weights) / "model.onnx"
        try:
            from tokenizers import Tokenizer

            if not target.exists():
                log.info("exporting %s to ONNX at %s (once)", model, target)
                export_onnx(folder, target)
            self.session = make_session(target, threads=threads)
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            st_config = json.loads((folder / "sentence_bert_config.json").read_text("utf-8"))
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"backend 'onnx' cannot load model {model!r} (graph '{target}'): {exc}. "
                "Delete that file to export it again, or use backend 'torch'."
            ) from exc
        self.path = target
        self.dimension = int(config["hidden_size"])
        self.max_seq_length = int(st_config.get("max_seq_length", 256))
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self._batch_tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._batch_tokenizer.enable_truncation(max_length=self.max_seq_length)
        self._batch_tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106
        # tokenizers' Tokenizer objects must not be used from several threads at once.
        self._tok_lock = threading.Lock()

    def _forward(self, texts: Sequence[str]) -> tuple[Any, Any, list[Any]]:
        """Token embeddings, attention mask and encodings (with offsets) of one batch."""
        with self._tok_lock:
            encodings = self._batch_tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self.session.run(None, feed)
        return hidden, mask, encodings

    def encode_batch(self, texts: Sequence[str]) -> Vectors:
        hidden, mask, _ = self._forward(texts)
        return _mean_pool(hidden, mask)

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[Sequence[tuple[int, int]]],
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """Passage vectors and sentence vectors pooled from the same forward pass (the
        contract of the torch backend's ``embed_passages``)."""
        dim = self.dimension
        vectors = np.empty((len(texts), dim), dtype=np.float32)
        sentences: list[Vectors] = [np.empty((0, dim), dtype=np.float32)] * len(texts)
        for idx in length_sorted_batches(texts, batch_size, progress=progress):
            hidden, mask, encodings = self._forward([texts[i] for i in idx])
            vectors[idx] = _mean_pool(hidden, mask)
            for j, i in enumerate(idx):
                n = int(mask[j].sum())
                offsets = encodings[j].offsets[:n]
                sentences[i] = pool_sentences(hidden[j, :n], offsets, sentence_spans[i], vectors[i])
        return vectors, sentences

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._tok_lock:
            encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        with self._tok_lock:
            encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return [(int(s), int(e)) for s, e in encoding.offsets]
