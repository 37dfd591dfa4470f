"""The command line: ``qa index``, ``qa ask``, ``qa eval``.

Human-readable output by default; ``--json`` makes the last line printed one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, get_args

from qa.config import ExecutorName, RetrievalMode, Settings, SpanPrecision
from qa.errors import QAError

log = logging.getLogger("qa")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=Path, help="seeds folder (default: seeds/)")
    parser.add_argument("--index", type=Path, help="index folder (default: embeddings/)")
    parser.add_argument("--model", help="embedding model: 'bundled', a name, or a folder path")
    parser.add_argument("--config", type=Path, help="TOML file with settings")
    parser.add_argument("--json", action="store_true", help="print one JSON object as last line")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")


def _models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reader", type=Path, help="extractive QA model folder that picks the answer span"
    )
    parser.add_argument(
        "--reranker", type=Path, help="cross-encoder model folder that reorders the passages"
    )
    parser.add_argument(
        "--span-model",
        help="bold answer span: 'learned' (default), 'features' (linear) or a span reader folder",
    )
    parser.add_argument(
        "--span-precision",
        choices=get_args(SpanPrecision),
        help="the span reader's weights under ONNX Runtime: 'int8' (default, faster) or 'fp32'",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="qa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="build or update the index from the seeds folder")
    _common(p)
    p.add_argument("--rebuild", action="store_true", help="ignore the existing index, embed all")
    p.add_argument("--merge", action="store_true", help="merge all segments into one afterwards")
    p.add_argument(
        "--rehash",
        action="store_true",
        help="read and hash every seed file (default: trust files whose size, mtime and inode "
        "are unchanged)",
    )
    p.add_argument(
        "--check", action="store_true", help="verify every checksum of the live index; no build"
    )
    p.add_argument(
        "--wait", type=float, default=0.0, help="seconds to wait if another build is running"
    )
    p.add_argument(
        "--executor", choices=get_args(ExecutorName), help="where to embed (default: local)"
    )
    p.add_argument("--address", help="Ray cluster to join with --executor ray (e.g. 'auto')")
    p.add_argument(
        "--workers", type=int, help="Ray embedding actors (default: one per cluster CPU)"
    )

    p = sub.add_parser("ask", help="answer a question from the index")
    _common(p)
    _models(p)
    p.add_argument("question")
    p.add_argument("--k", type=int, default=5, help="number of passages (1-50)")
    p.add_argument("--mode", choices=get_args(RetrievalMode), help="retrieval mode")
    p.add_argument("--no-answer", action="store_true", help="passages only, no extracted answer")

    p = sub.add_parser("eval", help="measure retrieval and answer quality")
    _common(p)
    _models(p)
    _add_eval_arguments(p)

    from qa.evaluation.train_command import add_train_arguments

    p = sub.add_parser("train-answerer", help="fit the answer models on XQuAD, write weights")
    _common(p)
    add_train_arguments(p)

    from qa.evaluation.span_command import add_span_arguments

    p = sub.add_parser(
        "train-span-reader", help="fine-tune the answer span reader on XQuAD, write its folder"
    )
    _common(p)
    add_span_arguments(p)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the config file, the environment and the flags given."""
    return Settings.load(
        config_file=args.config,
        seeds_dir=args.seeds,
        index_dir=args.index,
        model=args.model,
        retrieval_mode=getattr(args, "mode", None),
        executor=getattr(args, "executor", None),
        ray_address=getattr(args, "address", None),
        ray_workers=getattr(args, "workers", None),
        reader=getattr(args, "reader", None),
        reranker=getattr(args, "reranker", None),
        span_model=getattr(args, "span_model", None),
        span_precision=getattr(args, "span_precision", None),
    )


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m qa`` and the ``seedqa`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        settings = settings_from(args)
        if args.command == "index":
            return _index(args, settings)
        if args.command == "ask":
            return _ask(args, settings)
        if args.command == "train-answerer":
            from qa.evaluation.train_command import run_train_command

            return run_train_command(args, settings)
        if args.command == "train-span-reader":
            from qa.evaluation.span_command import run_span_command

            return run_span_command(args, settings)
        return _run_eval(args, settings)
    except QAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _emit(args: argparse.Namespace, data: dict[str, Any], human: str) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(human)


def _index(args: argparse.Namespace, settings: Settings) -> int:
    from qa.index.builder import build_index

    if args.check:
        from qa.index.generation import load_index

        gen = load_index(settings, full_check=True)
        _emit(
            args,
            {"generation": gen.generation, "segments": len(gen.segments), "passages": gen.size},
            f"index {settings.index_dir}: generation {gen.generation} is intact "
            f"({len(gen.segments)} segments, {gen.size} passages)",
        )
        return 0
    summary = build_index(
        settings,
        rebuild=args.rebuild,
        rehash=args.rehash,
        merge=args.merge,
        wait=args.wait,
        progress=not args.json and sys.stderr.isatty(),
    )
    data = summary.to_json()
    keys = ("added", "updated", "removed", "unchanged", "skipped", "passages", "embedded")
    out = {k: data[k] for k in keys}
    out["took_ms"] = data["took_ms"]
    out["renamed"] = data["renamed"]
    out["generation"] = data["generation"]
    out["merged"] = data["merged"]
    out["published"] = data["published"]
    for s in summary.skipped_files:
        print(f"skipped: {s.reason}", file=sys.stderr)
    human = (
        f"index {settings.index_dir}: {summary.added} added, {summary.updated} updated, "
        f"{summary.removed} removed, {summary.renamed} renamed, {summary.unchanged} unchanged, "
        f"{summary.skipped} skipped; {summary.passages} passages, {summary.embedded} embedded "
        f"in {summary.took_ms / 1000:.1f}s"
    )
    _emit(args, out, human)
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from qa.ask.service import QAService

    service = QAService(settings)
    try:
        # Load the index and the model first, so took_ms measures the question, not the start-up.
        service.start(update=False, poll=False)
        result = service.ask(args.question, k=args.k, answer=not args.no_answer)
    finally:
        service.close()
    from qa.ask.serialize import ask_result_json

    data = ask_result_json(result)
    lines = []
    if result.answer is not None:
        lines += [f"Answer: {result.answer.rendered}", ""]
    elif not args.no_answer:
        lines += [f"No answer: {result.abstain_reason}", ""]
    for h in result.passages:
        p = h.passage
        lines.append(
            f"[{h.rank}] {p.title or p.source} ({p.date or 'undated'}) {p.source}:{p.start}-{p.end}"
            f"  score {h.score:.4f}"
        )
        lines.append("    " + " ".join(p.text.split())[:300])
    _emit(args, data, "\n".join(lines) or "No passages found.")
    return 0


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``qa eval``."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--questions", type=Path, help="JSON-lines question file")
    what.add_argument("--beir", type=Path, help="BEIR folder (corpus, queries, qrels)")
    what.add_argument("--xquad", type=Path, help="XQuAD / SQuAD v1.1 JSON file")
    parser.add_argument("--split", default="test", help="BEIR qrels split (default: test)")
    parser.add_argument("--k", type=int, default=10, help="passages per question (default 10)")
    parser.add_argument("--mode", choices=get_args(RetrievalMode), help="retrieval mode")
    parser.add_argument("--chunk-tokens", type=int, help="chunk size for the temporary index")
    parser.add_argument("--threshold", type=float, help="abstention threshold to use")
    parser.add_argument("--limit", type=int, help="evaluate only the first N questions")
    parser.add_argument(
        "--whole-documents",
        action="store_true",
        help="--beir only: encode each document whole ('title text', truncated by the model) "
        "and search exactly, the published dense set-up (a check of the model path)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep the --beir/--xquad index under this folder and reuse it on the next run "
        "(one index per dataset, model and chunking; modes share it)",
    )


def _run_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch ``qa eval`` and print its report."""
    # Imported here: evaluation pulls in the service and the model stack, which `qa index` and
    # `qa --help` do not need.
    from qa.ask.service import QAService
    from qa.evaluation.beir import evaluate_beir, evaluate_beir_whole_documents
    from qa.evaluation.questions import evaluate_questions, read_questions
    from qa.evaluation.squad import evaluate_xquad

    settings = settings.replace(chunk_tokens=args.chunk_tokens, answer_threshold=args.threshold)
    if args.questions is not None:
        questions = read_questions(args.questions)[: args.limit]
        service = QAService(settings)
        try:
            service.start(update=True, poll=False)
            report = evaluate_questions(service, questions, k=args.k)
        finally:
            service.close()
        data: dict[str, Any] = asdict(report)
    elif args.beir is not None and args.whole_documents:
        data = evaluate_beir_whole_documents(
            args.beir, settings, split=args.split, limit=args.limit
        )
    elif args.beir is not None:
        data = evaluate_beir(
            args.beir, settings, split=args.split, limit=args.limit, cache=args.cache
        )
    else:
        data = evaluate_xquad(
            args.xquad, settings, k=min(args.k, 5), limit=args.limit, cache=args.cache
        )
    _print_report(data, as_json=args.json)
    return 0


def _print_report(data: dict[str, Any], *, as_json: bool) -> None:
    failures = data.pop("failures", [])
    if as_json:
        data["failures"] = failures
        print(json.dumps(data, ensure_ascii=False))
        return
    for key, value in data.items():
        print(f"{key:>24}: {value}")
    if failures:
        print(f"\n{len(failures)} questions failed:")
        for f in failures:
            print(
                f"- {f['question']!r}: gold {f.get('gold')}, "
                f"relevant rank {f.get('relevant_rank')}, "
                f"answer {f.get('answer')!r}, abstained {f.get('abstained')}, "
                f"support {f.get('support')}",
                file=sys.stdout,
            )
