"""``qa train-answerer``: its flags, and the command that fits, reports and writes the weights.

The fitting itself is :mod:`qa.evaluation.training`. The weights file is written aside, then
renamed into place.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from qa.ask.answerer import weights_json
from qa.ask.reread import REREAD_WEIGHT, SpanFinder
from qa.config import Settings, SpanPrecision
from qa.errors import ConfigError
from qa.evaluation.training import FOLDS, train


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``qa train-answerer``."""
    parser.add_argument("--xquad", type=Path, required=True, help="XQuAD / SQuAD v1.1 JSON file")
    parser.add_argument("--out", type=Path, required=True, help="weights file to write")
    parser.add_argument("--cache", type=Path, default=Path(".eval-cache"), help="cache folder")
    parser.add_argument("--limit", type=int, help="use only the first N questions")
    parser.add_argument(
        "--span-folds",
        type=Path,
        help="answer each held-out fold N with the span reader in DIR/fold-N "
        "(written by `qa train-span-reader --folds-out DIR`) instead of the linear scorer",
    )
    parser.add_argument(
        "--span-reader",
        type=Path,
        default=None,
        help="the span reader the refusal with the read margin is for (default: the shipped one)",
    )
    parser.add_argument(
        "--reread-weight",
        type=float,
        default=REREAD_WEIGHT,
        help="weight of the span reader's answer-vs-null margin when it re-reads sentences",
    )


def fold_span_readers(
    folder: Path, backend: str, precision: SpanPrecision
) -> dict[int, SpanFinder]:
    """The span readers ``qa train-span-reader --folds-out`` wrote, by held-out fold, run as the
    service would run the shipped one (``backend``, ``precision``)."""
    from qa.ask.span_model import load_span_model

    found = {f: folder / f"fold-{f}" for f in range(FOLDS) if (folder / f"fold-{f}").is_dir()}
    if not found:
        raise ConfigError(f"span reader folds '{folder}' hold no fold-0 .. fold-{FOLDS - 1}")
    return {
        f: load_span_model(path, backend=backend, precision=precision) for f, path in found.items()
    }


def run_train_command(args: argparse.Namespace, settings: Settings) -> int:
    """Fit, print the held-out report as JSON, write the weights aside then into place."""
    finders = None
    shipped = ""
    if args.span_folds is not None:
        from qa.ask.span_model import DEFAULT_SPAN_READER, WEIGHTS_NAME, file_digest

        finders = fold_span_readers(args.span_folds, settings.backend, settings.span_precision)
        shipped = file_digest((args.span_reader or DEFAULT_SPAN_READER) / WEIGHTS_NAME)
    weights, report = train(
        args.xquad,
        settings,
        cache=args.cache,
        limit=args.limit,
        span_finders=finders,
        reread_weight=args.reread_weight,
        span_reader_sha256=shipped,
    )
    text = json.dumps(weights_json(weights), indent=1, sort_keys=True) + "\n"
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, args.out)
    print(json.dumps(report))
    return 0
