"""``qa train-span-reader``: fine-tune the span reader on XQuAD, report held-out folds, ship it.

Writes ``weights.safetensors`` (fp16) and ``manifest.json`` into ``--out``, each written aside
then renamed into place, and prints the held-out report as JSON. ``--end-to-end`` also answers
each fold through the real pipeline (``qa train-answerer``'s held-out report) with that fold's
span reader in place of the linear span scorer. Nothing here reads WikiQA or the seeds
question set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from qa.ask.span_decode import MAX_ANSWER_TOKENS
from qa.ask.span_model import (
    BASE_MODEL_ID,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    WEIGHTS_NAME,
    base_fingerprint,
    bundled_base,
)
from qa.config import Settings
from qa.errors import ConfigError
from qa.evaluation.span_training import (
    FOLDS,
    SpanExample,
    TrainConfig,
    cross_validate,
    half,
    span_model_from,
    train_in,
    xquad_examples,
)
from qa.index.segments import sha256_file

log = logging.getLogger(__name__)


def add_span_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``qa train-span-reader``."""
    d = TrainConfig()
    parser.add_argument("--xquad", type=Path, required=True, help="XQuAD / SQuAD v1.1 JSON file")
    parser.add_argument("--out", type=Path, required=True, help="span reader folder to write")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate")
    parser.add_argument("--unfreeze", type=int, default=d.unfreeze, help="top layers trained")
    parser.add_argument("--lora-rank", type=int, default=d.lora_rank, help="0: no adapters")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--negatives",
        type=int,
        default=d.negatives,
        help="sentences without the answer per question, taught the no-answer span; 0: none",
    )
    parser.add_argument("--no-folds", action="store_true", help="skip the held-out folds")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trainings run at once, one process and one torch thread each (same bytes)",
    )
    parser.add_argument(
        "--end-to-end", action="store_true", help="also answer each fold through the pipeline"
    )
    parser.add_argument("--cache", type=Path, default=Path(".eval-cache"), help="cache folder")
    parser.add_argument(
        "--folds-out",
        type=Path,
        help="also write each fold's reader (trained without that fold) to DIR/fold-N",
    )


def config_from(args: argparse.Namespace) -> TrainConfig:
    """The training settings the flags give."""
    return TrainConfig(
        epochs=args.epochs,
        learning_rate=args.lr,
        unfreeze=args.unfreeze,
        lora_rank=args.lora_rank,
        seed=args.seed,
        negatives=args.negatives,
    )


def manifest(path: Path, base: Path, config: TrainConfig, questions: int) -> dict[str, Any]:
    """What ``manifest.json`` records: the base model, the data, the settings."""
    return {
        "version": MANIFEST_VERSION,
        "base_model": BASE_MODEL_ID,
        "base_sha256": base_fingerprint(base),
        "dtype": "float16",
        "context": "sentence",
        "max_answer_tokens": MAX_ANSWER_TOKENS,
        "trained_on": {
            "data": path.name,
            "sha256": sha256_file(path),
            "questions": questions,
            "folds": f"article index mod {FOLDS}",
        },
        "training": {
            "epochs": config.epochs,
            "learning_rate": config.learning_rate,
            "batch_size": config.batch_size,
            "warmup": config.warmup,
            "unfreeze": config.unfreeze,
            "lora_rank": config.lora_rank,
            "lora_alpha": config.lora_alpha,
            "seed": config.seed,
            "threads": config.threads,
            "negatives": config.negatives,
        },
    }


def write_folder(out: Path, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    """The weights and the manifest, each written aside then renamed into place."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(tensors, str(tmp), metadata={"base_model": BASE_MODEL_ID})
    tmp.chmod(0o644)  # safetensors creates the file private; a package file is world-readable
    os.replace(tmp, out / WEIGHTS_NAME)
    tmp = out / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST_NAME)


def run_span_command(args: argparse.Namespace, settings: Settings) -> int:
    """Held-out folds (unless ``--no-folds``), then the reader trained on every fold."""
    for flag, value, least in (("negatives", args.negatives, 0), ("jobs", args.jobs, 1)):
        if value < least:
            raise ConfigError(f"--{flag} must be at least {least}, got {value}")
    config = config_from(args)
    base = bundled_base()
    examples = xquad_examples(args.xquad, config.negatives)
    questions = sum(ex.answerable for ex in examples)
    report: dict[str, Any] = {"examples": len(examples), "questions": questions}
    with contextlib.ExitStack() as stack:
        pool = None
        if args.jobs > 1:
            context = multiprocessing.get_context("spawn")  # torch is not fork-safe
            pool = stack.enter_context(ProcessPoolExecutor(args.jobs, mp_context=context))
        shipped = train_in(pool, examples, base, config)
        if not args.no_folds:
            _held_out(args, settings, report, examples, questions, base, config, pool)
        tensors = half(shipped.result())
    write_folder(args.out, tensors, manifest(args.xquad, base, config, questions))
    report["weights_bytes"] = (args.out / WEIGHTS_NAME).stat().st_size
    print(json.dumps(report))
    return 0


def _held_out(
    args: argparse.Namespace,
    settings: Settings,
    report: dict[str, Any],
    examples: list[SpanExample],
    questions: int,
    base: Path,
    config: TrainConfig,
    pool: Executor | None,
) -> None:
    """The folds' figures into ``report``: given the gold sentence, and through the pipeline."""
    report["given_gold_sentence"], fold_tensors = cross_validate(examples, base, config, pool)
    if args.folds_out is not None:
        for f, tensors in fold_tensors.items():
            meta = manifest(args.xquad, base, config, questions)
            meta["trained_on"]["held_out_fold"] = f
            write_folder(args.folds_out / f"fold-{f}", tensors, meta)
    if args.end_to_end:
        from qa.evaluation.training import train

        finders = {f: span_model_from(base, t, config) for f, t in fold_tensors.items()}
        _, pipeline = train(args.xquad, settings, cache=args.cache, span_finders=finders)
        report["end_to_end"] = pipeline["held_out"]
        report["end_to_end_folds"] = pipeline["folds"]
