"""Reader and reranker cost per question: ``QAService.ask`` with a bring-your-own QA model or
cross-encoder, against the built-in hand-set reader, on the seeds question set.

The models are randomly initialised and built here (nothing is downloaded): compute depends on
the architecture, not on the weights, so a random BERT-base QA model costs what a trained SQuAD
2.0 BERT-base costs, and a random 6-layer, 384-wide cross-encoder what a MiniLM-L6 one costs.
The tiny two-layer, 32-wide models of the tests measure the plumbing alone (tokenising,
windows, span search, offsets). The index uses the fake embedder, so only the answer step
(``timings["answer_ms"]``) and the reranking step (``timings["rerank_ms"]``) are compared. Every
configuration answers every question in turn, rotating the order.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as c

#: name -> (hidden size, layers, heads, intermediate size)
SIZES = {"tiny": (32, 2, 2, 64), "minilm": (384, 6, 12, 1536), "base": (768, 12, 12, 3072)}


def build(folder: Path, kind: str, size: str) -> Path:
    """A random BERT of ``size`` with a QA head (``kind="qa"``) or one score (``"cross"``)."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

    from tests.tiny_hf import copy_tokenizer

    vocab_size = copy_tokenizer(folder)
    hidden, layers, heads, intermediate = SIZES[size]
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        num_labels=2 if kind == "qa" else 1,  # a QA head gives start and end logits
    )
    torch.manual_seed(0)
    cls = BertForQuestionAnswering if kind == "qa" else BertForSequenceClassification
    cls(config).save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1, help="passes over the question set")
    p.add_argument("--k", type=int, default=5, help="passages per question (all are reranked)")
    p.add_argument("--torch-threads", type=int, help="torch.set_num_threads before measuring")
    p.add_argument("--name", default="reader_cost")
    args = p.parse_args(argv)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)

    from qa.ask.service import QAService
    from qa.config import Settings
    from qa.index.builder import build_index

    load_start = c.loadavg()
    questions = c.questions(5 if args.quick else None)
    qa_sizes = ["tiny"] if args.quick else ["tiny", "base"]
    cross_sizes = ["tiny"] if args.quick else ["tiny", "minilm"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = Settings(
            seeds_dir=c.SEEDS, index_dir=root / "index", model="fake", question_cache_size=0
        )
        build_index(base)
        configs: dict[str, Settings] = {"hand_set": base}
        for size in qa_sizes:
            configs[f"reader_{size}"] = base.replace(reader=build(root / f"qa-{size}", "qa", size))
        for size in cross_sizes:
            folder = build(root / f"cross-{size}", "cross", size)
            configs[f"reranker_{size}"] = base.replace(reranker=folder)
        services = {name: QAService(s) for name, s in configs.items()}
        for service in services.values():
            service.start(update=False, poll=False)
            service.ask(questions[0], k=args.k)  # first forward pass out of the timing
        timings: dict[str, dict[str, list[float]]] = {
            n: {"answer_ms": [], "rerank_ms": [], "took_ms": []} for n in services
        }
        names = list(services)
        turn = 0
        for _ in range(args.rounds):
            for q in questions:
                turn += 1
                for name in names[turn % len(names) :] + names[: turn % len(names)]:
                    result = services[name].ask(q, k=args.k)
                    for key in ("answer_ms", "rerank_ms"):
                        if key in result.timings:
                            timings[name][key].append(result.timings[key] / 1000)
                    timings[name]["took_ms"].append(result.took_ms / 1000)
        for service in services.values():
            service.close()
    out: dict[str, Any] = {
        name: {key: c.summary_ms(values) for key, values in t.items() if values}
        for name, t in timings.items()
    }
    c.write_result(
        args.out,
        args.name,
        {
            "quick": args.quick,
            "command": "python bench/reader_cost.py " + " ".join(argv or sys.argv[1:]),
            "questions": len(questions),
            "k": args.k,
            "torch_threads": args.torch_threads,
            "loadavg_start": load_start,
            "sizes": SIZES,
            "configs": out,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
