"""Prototype of an ONNX Runtime embedder for the bundled model, measured by ``inference.py``.

It is the code proposed for ``qa/embedder.py`` (see docs/benchmarks.md, "Faster inference"):
the ONNX graph is exported locally, once, from the bundled safetensors weights with
``torch.onnx.export`` into a cache folder keyed by the weights' hash (nothing is downloaded),
and run with ONNX Runtime. Tokenising uses the model's own ``tokenizer.json`` through the
``tokenizers`` library, so serving does not need torch at all once the export exists.

sentence-transformers' own ``backend="onnx"`` needs ``optimum``, whose current release pins
transformers 4.x and would downgrade the transformers 5 that sentence-transformers 6 needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.embedder import BUNDLED_MODEL_ID, Embedder, Vectors


def weights_digest(model_dir: Path) -> str:
    """Short SHA-256 of the weights file: the export cache key."""
    h = hashlib.sha256()
    with open(model_dir / "model.safetensors", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where exported graphs are kept: ``$SEEDQA_CACHE`` or ``~/.cache/seedqa``."""
    root = os.environ.get("SEEDQA_CACHE") or Path.home() / ".cache" / "seedqa"
    return Path(root) / "onnx"


def export_onnx(model_dir: Path, target: Path) -> Path:
    """Export the transformer of a sentence-transformers folder to ``target`` (ONNX, fp32)."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()

    class _Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    dummy = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with torch.no_grad():
        torch.onnx.export(
            _Encoder(),
            (dummy, dummy, torch.zeros_like(dummy)),
            str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT well
        )
    os.replace(tmp, target)  # write aside, then rename: a reader never sees half a file
    return target


def optimize_onnx(source: Path, target: Path, *, num_heads: int, hidden: int) -> Path:
    """ONNX Runtime's BERT graph fusions (attention, layer norm, GELU) saved as a new file."""
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(
        str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden, opt_level=1
    )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    opt.save_model_to_file(str(tmp))
    os.replace(tmp, target)
    return target


def quantize_onnx(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of the weights (measured, not recommended: see the report)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.onnx")
    quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
    os.replace(tmp, target)
    return target


def _unit(v: Any) -> Any:
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype(np.float32)


class OnnxEmbedder(Embedder):
    """The bundled model run by ONNX Runtime: same vectors as torch within float error."""

    def __init__(
        self,
        *,
        model_dir: Path,
        cache_dir: Path | None = None,
        threads: int | None = None,
        variant: str = "fp32",
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        cache = (cache_dir or default_cache_dir()) / weights_digest(model_dir)
        path = cache / "model.onnx"
        if not path.exists():
            export_onnx(model_dir, path)
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if variant == "opt":
            opt = cache / "model.opt.onnx"
            if not opt.exists():
                optimize_onnx(
                    path,
                    opt,
                    num_heads=int(config["num_attention_heads"]),
                    hidden=int(config["hidden_size"]),
                )
            path = opt
        elif variant == "int8":
            q = cache / "model.int8.onnx"
            if not q.exists():
                quantize_onnx(path, q)
            path = q
        elif variant != "fp32":
            raise ValueError(f"unknown ONNX variant {variant!r}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: on 2 shared cores a spinning pool steals
        # the CPU from the web server's own threads and from everything else on the machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path
        st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.max_seq_length = int(st_config.get("max_seq_length", 256))
        self.model_id = BUNDLED_MODEL_ID
        self.dimension = int(config["hidden_size"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self._batch_tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._batch_tok.enable_truncation(max_length=self.max_seq_length)
        self._batch_tok.enable_padding(pad_id=0, pad_token="[PAD]")
        # tokenizers' Tokenizer objects are not safe to share between threads.
        self._tok_lock = threading.Lock()

    def _forward(self, texts: Sequence[str]) -> tuple[Any, Any, list[Any]]:
        """Token embeddings, attention mask and encodings (with offsets) of one batch."""
        with self._tok_lock:
            encs = self._batch_tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        types = np.zeros_like(ids)
        (hidden,) = self.session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        return hidden, mask, encs

    def encode_batch(self, texts: Sequence[str]) -> Vectors:
        hidden, mask, _ = self._forward(texts)
        # Mean pooling over real tokens, then L2 norm: inner product is cosine similarity.
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return np.ascontiguousarray(pooled, dtype=np.float32)

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[Sequence[tuple[int, int]]],
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """Passage vectors and sentence vectors pooled from the same forward pass.

        The same contract as ``SentenceTransformerEmbedder.embed_passages``: each sentence
        vector mean-pools the passage's contextual token embeddings over its own tokens.
        """
        dim = self.dimension
        vectors = np.empty((len(texts), dim), dtype=np.float32)
        sentences: list[Vectors] = [np.empty((0, dim), dtype=np.float32)] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            hidden, mask, encs = self._forward([texts[i] for i in idx])
            for j, i in enumerate(idx):
                n = int(mask[j].sum())
                tokens = hidden[j, :n]
                vectors[i] = _unit(tokens.mean(axis=0))
                offsets = encs[j].offsets[:n]
                rows = []
                for s, e in sentence_spans[i]:
                    take = [t for t, (a, b) in enumerate(offsets) if b > a and a >= s and b <= e]
                    rows.append(_unit(tokens[take].mean(axis=0)) if take else vectors[i])
                sentences[i] = np.asarray(rows, dtype=np.float32).reshape(-1, dim)
        return vectors, sentences

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._tok_lock:
            encs = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encs]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        with self._tok_lock:
            enc = self.tokenizer.encode(text, add_special_tokens=False)
        return [(int(s), int(e)) for s, e in enc.offsets]
