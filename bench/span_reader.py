"""Span reader cost: the shipped span reader run by ONNX Runtime at fp32 and at int8, reading
one, two and three sentences per question (``SpanModel.find_many``, as the answerer calls it).

The questions are those of ``eval/seeds_questions.jsonl``; each is paired with the seed
sentences that share the most words with it, so the inputs have the seeds' real lengths (the
answerer gives the reader its best sentences, which are such sentences). Every configuration
reads every question in turn, rotating the order, so machine load hits all of them alike. Also
reported: how often int8 picks the same span as fp32, and the mean change of the read margin
(``span - null``) that the refusal reads.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import _common as c

COUNTS = (1, 2, 3)


def question_sentences(questions: list[str], per_question: int) -> list[tuple[str, list[str]]]:
    """Each question with the ``per_question`` seed sentences sharing the most words with it."""
    from qa.index.lexical import tokenize
    from qa.ingest.sentences import split_sentences

    sentences = []
    for path in sorted(c.SEEDS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        sentences += [text[s:e] for s, e in split_sentences(text) if e - s > 20]
    terms = [set(tokenize(s)) for s in sentences]
    out = []
    for q in questions:
        asked = set(tokenize(q))
        best = sorted(range(len(sentences)), key=lambda i: -len(asked & terms[i]))
        out.append((q, [sentences[i] for i in best[:per_question]]))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="passes over the question set")
    p.add_argument("--name", default="span_reader")
    args = p.parse_args(argv)
    from qa.ask.span_model import DEFAULT_SPAN_READER, load_span_model

    load_start = c.loadavg()
    questions = [
        json.loads(line)["question"]
        for line in c.QUESTIONS.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    if args.quick:
        questions, args.rounds = questions[:3], 1
    pairs = question_sentences(questions, max(COUNTS))
    models = {
        p: load_span_model(DEFAULT_SPAN_READER, backend="onnx", precision=p)
        for p in ("fp32", "int8")
    }
    calls = {f"{precision}_{n}": (model, n) for precision, model in models.items() for n in COUNTS}
    for model, n in calls.values():  # warm up
        model.find_many([(pairs[0][0], s, (0, len(s))) for s in pairs[0][1][:n]])
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    turn = 0
    for _ in range(args.rounds):
        for q, sents in pairs:
            turn += 1
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                model, n = calls[name]
                items = [(q, s, (0, len(s))) for s in sents[:n]]
                t = time.perf_counter()
                model.find_many(items)
                times[name].append(time.perf_counter() - t)
    same, shift, total = 0, 0.0, 0
    for q, sents in pairs:
        items = [(q, s, (0, len(s))) for s in sents]
        for a, b in zip(
            models["fp32"].find_many(items), models["int8"].find_many(items), strict=True
        ):
            if a is None or b is None:
                continue
            total += 1
            same += (a.start, a.end) == (b.start, b.end)
            shift += abs((a.score - a.null_score) - (b.score - b.null_score))
    table: dict[str, Any] = {name: c.summary_ms(ts) for name, ts in times.items()}
    for n in COUNTS:
        table[f"int8_{n}"]["speedup_vs_fp32"] = c.ratio(
            table[f"fp32_{n}"]["p50_ms"], table[f"int8_{n}"]["p50_ms"]
        )
    result = {
        "quick": args.quick,
        "loadavg_start": load_start,
        "command": "python bench/span_reader.py " + " ".join(argv or sys.argv[1:]),
        "questions": len(pairs),
        "rounds": args.rounds,
        "reads": table,
        "int8_same_span_share": round(same / max(total, 1), 3),
        "int8_mean_abs_margin_change": round(shift / max(total, 1), 3),
    }
    c.write_result(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
