"""ONNX variants measured by ``inference.py`` beside the library's ONNX Runtime backend.

``fp32`` is exactly what ``backend = "onnx"`` runs. ``opt`` adds ONNX Runtime's offline BERT
fusions (attention, layer norm, GELU) and ``int8`` dynamic weight quantisation; both are measured
here, not shipped (see docs/benchmarks.md, "Faster inference").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qa.config import BUNDLED_MODEL
from qa.embed.models import resolve_model
from qa.embed.onnx_backend import OnnxEmbedder, make_session


def optimize_onnx(source: Path, target: Path, *, num_heads: int, hidden: int) -> Path:
    """ONNX Runtime's BERT graph fusions saved as a new file (written aside, then renamed)."""
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(
        str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden, opt_level=1
    )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    opt.save_model_to_file(str(tmp))
    os.replace(tmp, target)
    return target


def quantize_onnx(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of the weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.onnx")
    quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
    os.replace(tmp, target)
    return target


def onnx_variant(
    variant: str = "fp32", *, cache_dir: Path | None = None, threads: int | None = None
) -> OnnxEmbedder:
    """The bundled model under ONNX Runtime as ``variant`` (fp32, opt or int8)."""
    embedder = OnnxEmbedder(model=BUNDLED_MODEL, cache_dir=cache_dir, threads=threads)
    if variant == "fp32":
        return embedder
    base = embedder.path
    if variant == "opt":
        config = json.loads((Path(resolve_model(BUNDLED_MODEL)[0]) / "config.json").read_text())
        graph = base.with_name("model.opt.onnx")
        if not graph.exists():
            optimize_onnx(
                base,
                graph,
                num_heads=int(config["num_attention_heads"]),
                hidden=int(config["hidden_size"]),
            )
    elif variant == "int8":
        graph = base.with_name("model.int8.onnx")
        if not graph.exists():
            quantize_onnx(base, graph)
    else:
        raise ValueError(f"unknown ONNX variant {variant!r}")
    embedder.session = make_session(graph, threads=threads)
    embedder.path = graph
    return embedder
