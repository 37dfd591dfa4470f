"""Fine-tune the span reader (:mod:`qa.ask.span_model`) on XQuAD English, deterministically.

Each XQuAD question becomes one example: the question and the sentence of its paragraph that
holds the gold answer (sentences split as the index splits them), with the answer's character
offsets in that sentence. With ``negatives`` (SQuAD 2.0 style), each question also gets the
sibling sentences of its paragraph that share the most words with it but hold no gold answer,
with the [CLS] span as their target: the reader then learns to say "not in this sentence"
(its null score), which the answerer uses to re-read its best candidate sentences.

The bundled all-MiniLM-L6-v2 gets a fresh start/end head; only its top ``unfreeze`` layers,
low-rank adapters and the head are trained, so only they are shipped. Seeds, the number of
torch threads and ``torch.use_deterministic_algorithms(True)`` make two runs write the same
bytes.

Folds are ``article index mod 4``, as in ``qa train-answerer``: each fold is answered by a model
trained on the other three, and beside it by the linear span scorer (:mod:`qa.ask.spans`) fitted
on the same three folds, on the same sentences.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.ask.logistic import fit_logistic
from qa.ask.span_decode import SpanChoice
from qa.ask.span_model import SpanModel, qa_model
from qa.ask.spans import SPAN_FEATURES, best_span, span_candidates, span_features
from qa.errors import ConfigError
from qa.evaluation.metrics import exact_match, token_f1
from qa.index.lexical import tokenize
from qa.ingest.sentences import split_sentences

log = logging.getLogger(__name__)

FOLDS = 4
#: A linear-scorer candidate is a positive example at this F1 (as in ``qa train-answerer``).
SPAN_POSITIVE_F1 = 0.67


@dataclass(frozen=True, slots=True)
class SpanExample:
    """A question, the sentence holding its gold answer, and the answer's offsets in it."""

    question: str
    sentence: str
    start: int
    end: int
    answers: tuple[str, ...]
    article: int
    #: ``False``: a sentence without the answer (target: the [CLS] span; offsets unused).
    answerable: bool = True


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """How the span reader is fine-tuned."""

    epochs: int = 5
    learning_rate: float = 3e-4
    batch_size: int = 16
    warmup: float = 0.1
    #: Top encoder layers trained (and shipped) besides the head.
    unfreeze: int = 2
    #: Rank of the low-rank adapters on every encoder linear layer; 0: none.
    lora_rank: int = 8
    lora_alpha: float = 16.0
    seed: int = 13
    threads: int = 1
    max_length: int = 192
    #: Sentences without the answer per question (target [CLS]); 0: positives only. 1 ships:
    #: held out it lifts span F1 given the gold sentence from 0.548 to 0.602 (docs/quality.md).
    negatives: int = 1


def xquad_examples(path: Path, negatives: int = 0) -> list[SpanExample]:
    """One example per XQuAD question whose first answer lies inside one sentence, followed
    by up to ``negatives`` sentences of its paragraph (not the title line) without a gold
    answer: the ones sharing the most words with the question, ties to the earlier."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"'{path}' is not a SQuAD v1.1 JSON file: {exc!r}") from None
    out: list[SpanExample] = []
    for a, article in enumerate(data):
        title = str(article.get("title") or f"article {a}").replace("_", " ")
        for paragraph in article["paragraphs"]:
            # The seed file's layout (qa.evaluation.squad.read_squad): title line, blank line.
            text = f"{title}\n\n{paragraph['context']}"
            shift = len(title) + 2
            sentences = split_sentences(text)
            for qa in paragraph["qas"]:
                gold = qa["answers"][0]
                s = shift + int(gold["answer_start"])
                e = s + len(gold["text"])
                hold = [(ss, se) for ss, se in sentences if ss <= s and e <= se]
                if not hold or text[s:e] != gold["text"]:
                    continue
                ss, se = hold[0]
                question = str(qa["question"])
                answers = tuple(str(x["text"]) for x in qa["answers"])
                out.append(SpanExample(question, text[ss:se], s - ss, e - ss, answers, a))
                out += [
                    SpanExample(question, text[ns:ne], 0, 0, answers, a, answerable=False)
                    for ns, ne in _hard_negatives(
                        text, [x for x in sentences if x[0] >= shift], question, answers, negatives
                    )
                ]
    return out


def _hard_negatives(
    text: str,
    sentences: Sequence[tuple[int, int]],
    question: str,
    answers: Sequence[str],
    count: int,
) -> list[tuple[int, int]]:
    """The ``count`` sentences holding no gold answer that share the most words with the
    question (ties to the earlier sentence)."""
    if count <= 0:
        return []
    q_terms = set(tokenize(question))
    golds = [g.lower() for g in answers if g.strip()]
    ranked = sorted(
        (
            (-len(q_terms & set(tokenize(text[s:e]))), s, e)
            for s, e in sentences
            if text[s:e].strip() and not any(g in text[s:e].lower() for g in golds)
        ),
    )
    return [(s, e) for _, s, e in ranked[:count]]


def _token_targets(
    offsets: Sequence[tuple[int, int]], ids: Sequence[int | None], ex: SpanExample
) -> tuple[int, int]:
    """The first and last context tokens of the answer; (0, 0), the [CLS] span, if cut off
    or if the sentence does not hold the answer."""
    if not ex.answerable:
        return 0, 0
    tokens = [
        t for t, (sid, (s, e)) in enumerate(zip(ids, offsets, strict=True)) if sid == 1 and e > s
    ]
    first = next((t for t in tokens if offsets[t][1] > ex.start), None)
    last = next((t for t in reversed(tokens) if offsets[t][0] < ex.end), None)
    if first is None or last is None or last < first:
        return 0, 0
    return first, last


def _set_determinism(config: TrainConfig) -> None:
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)


def fine_tune(examples: Sequence[SpanExample], base: Path, config: TrainConfig) -> dict[str, Any]:
    """The trained tensors (head, top layers, low-rank factors; float32) after fine-tuning."""
    import torch
    from transformers import AutoTokenizer

    _set_determinism(config)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = qa_model(base)
    adapters: dict[str, Any] = {}
    if config.lora_rank:
        from qa.evaluation.lora import add_adapters

        adapters = add_adapters(model, config.lora_rank, config.lora_alpha)
    whole = {n for n in trainable_names(model, config.unfreeze) if not n.endswith(_LOW_RANK)}
    trained = whole | {n for n, _ in model.named_parameters() if n.endswith(_LOW_RANK)}
    for name, p in model.named_parameters():
        p.requires_grad_(name in trained)
    enc = tokenizer(
        [ex.question for ex in examples],
        [ex.sentence for ex in examples],
        truncation="only_second",
        max_length=config.max_length,
        return_offsets_mapping=True,
    )
    targets = [
        _token_targets(enc["offset_mapping"][i], enc.sequence_ids(i), ex)
        for i, ex in enumerate(examples)
    ]
    _train(model, tokenizer, enc, torch.tensor(targets), config)
    out = {
        n.replace(".base.", "."): p.detach().clone()
        for n, p in model.named_parameters()
        if n in whole
    }
    if adapters:
        from qa.evaluation.lora import adapter_tensors

        out.update(adapter_tensors(adapters))
    return out


_LOW_RANK = ("lora_a", "lora_b")


def train_in(
    pool: Executor | None, examples: Sequence[SpanExample], base: Path, config: TrainConfig
) -> Future[dict[str, Any]]:
    """:func:`fine_tune` submitted to ``pool``, or run here (a finished future) without one."""
    if pool is not None:
        return pool.submit(fine_tune, list(examples), base, config)
    done: Future[dict[str, Any]] = Future()
    done.set_result(fine_tune(examples, base, config))
    return done


def _train(model: Any, tokenizer: Any, enc: Any, targets: Any, config: TrainConfig) -> None:
    """AdamW with linear warm-up and decay over shuffled batches of the encoded examples."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    n = len(targets)
    steps = config.epochs * math.ceil(n / config.batch_size)
    warm = max(1, int(config.warmup * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min((k + 1) / warm, max(0.0, (steps - k) / max(steps - warm, 1)))
    )
    rng = np.random.default_rng(config.seed)
    model.train()
    for epoch in range(config.epochs):
        total = 0.0
        for rows in np.array_split(rng.permutation(n), math.ceil(n / config.batch_size)):
            keys = ("input_ids", "token_type_ids", "attention_mask")
            batch = tokenizer.pad(
                {k: [enc[k][int(i)] for i in rows] for k in keys}, return_tensors="pt"
            )
            idx = torch.as_tensor(rows)
            out = model(**batch, start_positions=targets[idx, 0], end_positions=targets[idx, 1])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += float(out.loss.detach()) * len(rows)
        log.info("epoch %s: mean loss %.4f", epoch + 1, total / max(n, 1))
    model.eval()


def trainable_names(model: Any, unfreeze: int) -> set[str]:
    """Parameter names of the QA head and of the top ``unfreeze`` encoder layers."""
    layers = int(model.config.num_hidden_layers)
    if not 0 <= unfreeze <= layers:
        raise ConfigError(f"unfreeze must be between 0 and {layers}, got {unfreeze}")
    top = range(layers - unfreeze, layers)
    prefixes = ("qa_outputs.", *(f"{model.base_model_prefix}.encoder.layer.{i}." for i in top))
    return {n for n, _ in model.named_parameters() if n.startswith(prefixes)}


def half(tensors: dict[str, Any]) -> dict[str, Any]:
    """The tensors as shipped: fp16, contiguous."""
    return {k: v.detach().to("cpu").half().contiguous() for k, v in sorted(tensors.items())}


def span_model_from(base: Path, tensors: dict[str, Any], config: TrainConfig) -> SpanModel:
    """A :class:`SpanModel` of ``tensors`` laid over ``base``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    return SpanModel(
        tokenizer=tokenizer,
        model=qa_model(base, tensors),
        max_length=config.max_length,
        no_answer=config.negatives > 0,
    )


def predict(model: SpanModel, examples: Sequence[SpanExample]) -> list[SpanChoice | None]:
    """The model's span of each example's sentence."""
    out: list[SpanChoice | None] = []
    for b in range(0, len(examples), 32):
        chunk = examples[b : b + 32]
        out += model.find_many([(ex.question, ex.sentence, (0, len(ex.sentence))) for ex in chunk])
    return out


def score(
    examples: Sequence[SpanExample], spans: Sequence[tuple[int, int] | None]
) -> dict[str, float]:
    """SQuAD F1 and exact match of the spans, over the examples."""
    f1 = em = 0.0
    for ex, span in zip(examples, spans, strict=True):
        text = ex.sentence[span[0] : span[1]] if span else None
        f1 += token_f1(text, ex.answers)
        em += exact_match(text, ex.answers)
    n = max(len(examples), 1)
    return {"f1": round(f1 / n, 4), "exact_match": round(em / n, 4)}


def linear_spans(
    train_set: Sequence[SpanExample], test_set: Sequence[SpanExample]
) -> list[tuple[int, int] | None]:
    """The linear span scorer fitted on ``train_set``, applied to ``test_set``."""
    xs, ys = [], []
    for ex in train_set:
        spans, words = span_candidates(ex.sentence, ex.question)
        if spans:
            xs.append(span_features(ex.sentence, ex.question, spans, words))
            ys.append(
                [
                    float(token_f1(ex.sentence[c.start : c.end], ex.answers) >= SPAN_POSITIVE_F1)
                    for c in spans
                ]
            )
    model = fit_logistic(np.vstack(xs), np.concatenate(ys), features=SPAN_FEATURES, l2=1.0)
    return [best_span(ex.sentence, ex.question, model) for ex in test_set]


def cross_validate(
    examples: Sequence[SpanExample],
    base: Path,
    config: TrainConfig,
    pool: Executor | None = None,
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Held-out figures per fold and pooled, and each fold's trained tensors (fp16).

    With a ``pool`` the folds train in parallel processes; each training is seeded and
    single-threaded on its own, so the tensors are the same bytes either way."""
    folds: list[dict[str, Any]] = []
    tensors: dict[int, dict[str, Any]] = {}
    splits = {
        f: (
            [ex for ex in examples if ex.article % FOLDS != f],
            [ex for ex in examples if ex.article % FOLDS == f],
        )
        for f in range(FOLDS)
    }
    splits = {f: (tr, te) for f, (tr, te) in splits.items() if tr and te}
    pending = {f: train_in(pool, tr, base, config) for f, (tr, _) in splits.items()}
    for f, (train_set, test_set) in splits.items():
        tensors[f] = half(pending[f].result())
        spans = predict(span_model_from(base, tensors[f], config), test_set)
        positives = [i for i, ex in enumerate(test_set) if ex.answerable]
        tested = [test_set[i] for i in positives]
        folds.append(
            {
                "fold": f,
                "questions": len(tested),
                "learned": score(
                    tested, [(s.start, s.end) if s else None for s in (spans[i] for i in positives)]
                ),
                "linear": score(
                    tested, linear_spans([ex for ex in train_set if ex.answerable], tested)
                ),
                "null": null_rates(test_set, spans),
            }
        )
        log.info("fold %s: %s", f, folds[-1])
    total = sum(f["questions"] for f in folds) or 1
    pooled: dict[str, Any] = {
        who: {
            key: round(sum(f[who][key] * f["questions"] for f in folds) / total, 4)
            for key in (folds[0][who] if folds else ())
        }
        for who in ("learned", "linear", "null")
    }
    return {"questions": total, **pooled, "folds": folds, "config": asdict(config)}, tensors


def null_rates(
    examples: Sequence[SpanExample], spans: Sequence[SpanChoice | None]
) -> dict[str, float]:
    """How often the reader's best span beats its [CLS] score on sentences holding the
    answer, and how often it does not on sentences without it (negatives)."""
    said = [
        (ex.answerable, s is not None and s.score > s.null_score)
        for ex, s in zip(examples, spans, strict=True)
    ]
    pos = [answered for answerable, answered in said if answerable]
    neg = [not answered for answerable, answered in said if not answerable]
    return {
        "answer_sentences_read_as_answering": round(sum(pos) / max(len(pos), 1), 4),
        "other_sentences_read_as_not": round(sum(neg) / max(len(neg), 1), 4),
    }
