"""The span reader run by ONNX Runtime (``backend = "onnx"``, the default).

The QA model, with the shipped tensors already laid over the base model, is exported once with
``torch.onnx.export`` into the ONNX cache (:func:`qa.embed.onnx_backend.default_cache_dir`),
keyed by the SHA-256 of the base weights and of the shipped weights, written aside and renamed
into place. On one short sentence ONNX Runtime is cheaper than torch's eager mode, which
matters because the span is computed for every answered question. With ``int8`` the exported
graph is then quantised once (ONNX Runtime's dynamic quantisation: int8 weights, activations
quantised per call) beside it, which halves the reader's time on the CPU.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.embed.onnx_backend import default_cache_dir, make_session
from qa.errors import ReaderError

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")

#: Runs the model on a tokenised batch (numpy int64 arrays by input name): start and end logits.
Forward = Callable[[dict[str, npt.NDArray[np.int64]]], tuple[npt.NDArray[Any], npt.NDArray[Any]]]


def export_span_graph(model: Any, target: Path) -> Path:
    """Export a torch BERT QA model to ``target`` (ONNX, fp32, dynamic batch and length)."""
    import torch

    class _Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            out = self.model(**dict(zip(INPUTS, args, strict=True)))
            return out.start_logits, out.end_logits

    ones = torch.ones((2, 8), dtype=torch.long)
    args = (ones, ones, torch.zeros_like(ones))
    axes = {0: "batch", 1: "sequence"}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        # The TorchScript exporter warns that it is deprecated and that tracing fixes shapes it
        # does not (dynamic axes are declared); the graph is checked against torch by a test.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Logits().eval(),
                args,
                str(tmp),
                input_names=list(INPUTS),
                output_names=["start_logits", "end_logits"],
                dynamic_axes={n: axes for n in [*INPUTS, "start_logits", "end_logits"]},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, target)  # write aside, then rename
    finally:
        tmp.unlink(missing_ok=True)
    return target


def quantize_span_graph(source: Path, target: Path) -> Path:
    """Write ``source`` with int8 weights (dynamic quantisation) to ``target``, aside first."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    quiet = logging.getLogger()  # the quantiser advises pre-processing through the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        # Per-channel scales keep the reader's spans closer to the fp32 graph's than one scale
        # per tensor (93 % against 86 % the same span on 600 XQuAD sentences), at the same speed.
        quantize_dynamic(source, tmp, weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, target)
    finally:
        quiet.setLevel(level)
        tmp.unlink(missing_ok=True)
    return target


def onnx_forward(
    build: Callable[[], Any],
    key: str,
    *,
    cache_dir: Path | None = None,
    threads: int | None = None,
    int8: bool = False,
) -> Forward:
    """A :data:`Forward` running the graph cached under ``key`` (its int8 form with ``int8``);
    when it is missing, ``build()`` makes the torch model to export it from (the only time
    torch is needed)."""
    graph = (cache_dir or default_cache_dir()) / f"span-{key}" / "model.onnx"
    if not graph.exists():
        model = build()  # its ReaderError (unreadable or mismatched weights) passes through
        try:
            log.info("exporting the span reader to ONNX at %s (once)", graph)
            export_span_graph(model.eval(), graph)
        except Exception as exc:
            raise ReaderError(
                f"the span reader's ONNX graph '{graph}' cannot be exported: {exc}"
            ) from exc
    target = graph.with_name("model.int8-per-channel.onnx") if int8 else graph
    if not target.exists():
        try:
            log.info("quantising the span reader to int8 at %s (once)", target)
            quantize_span_graph(graph, target)
        except Exception as exc:
            raise ReaderError(
                f"the span reader's ONNX graph '{graph}' cannot be quantised: {exc}"
            ) from exc
    try:
        session = make_session(target, threads=threads)
    except Exception as exc:
        raise ReaderError(
            f"the span reader's ONNX graph '{target}' cannot be loaded: {exc}. "
            "Delete that file to export it again, or use backend 'torch'."
        ) from exc
    names = {i.name for i in session.get_inputs()}

    def forward(
        feed: dict[str, npt.NDArray[np.int64]],
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        inputs = {k: v for k, v in feed.items() if k in names}
        if "token_type_ids" in names and "token_type_ids" not in inputs:
            inputs["token_type_ids"] = np.zeros_like(feed["input_ids"])
        start, end = session.run(["start_logits", "end_logits"], inputs)
        return np.asarray(start), np.asarray(end)

    return forward


Encoded = tuple[
    dict[str, npt.NDArray[np.int64]], list[list[tuple[int, int]]], list[list[int | None]]
]


def rust_encoder(base: Path, max_length: int) -> Callable[[list[tuple[str, str]]], Encoded]:
    """Tokenises (question, context) pairs with the base model's ``tokenizer.json`` through the
    ``tokenizers`` library (transformers' tokenizer would import torch)."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(base / "tokenizer.json"))
    except Exception as exc:
        raise ReaderError(f"the tokenizer of '{base}' cannot be loaded: {exc}") from exc
    tokenizer.enable_truncation(max_length=max_length, strategy="only_second")
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106

    def encode(pairs: list[tuple[str, str]]) -> Encoded:
        encodings = tokenizer.encode_batch(pairs)
        feed = {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.asarray([e.type_ids for e in encodings], dtype=np.int64),
        }
        offsets = [[(int(s), int(e)) for s, e in enc.offsets] for enc in encodings]
        return feed, offsets, [list(enc.sequence_ids) for enc in encodings]

    return encode
