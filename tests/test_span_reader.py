"""The fine-tuned span reader: decoding, deterministic training, the shipped folder's checks,
and the bold span it gives the learned reader (exact offsets, inside the quoted sentence).

Training runs on a tiny randomly initialised BERT built here, on a handful of examples.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from qa.ask.answer import Answer
from qa.ask.answerer import LearnedReader, load_weights
from qa.ask.reread import REREAD, read_order
from qa.ask.span_decode import SpanChoice
from qa.ask.span_model import (
    DEFAULT_SPAN_READER,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    SpanModel,
    load_span_model,
    qa_model,
)
from qa.ask.spans import best_span
from qa.config import Settings
from qa.errors import ConfigError, ReaderError
from qa.evaluation.span_command import manifest, write_folder
from qa.evaluation.span_training import (
    SpanExample,
    TrainConfig,
    _token_targets,
    fine_tune,
    half,
    null_rates,
    train_in,
    xquad_examples,
)
from qa.ingest.sentences import split_sentences
from tests.conftest import SEEDS
from tests.tiny_hf import copy_tokenizer, tiny_config

QUESTION = "How many US-funded enterprises had Chongqing approved?"
SENTENCES = [
    (
        "How many enterprises had Chongqing approved?",
        "Chongqing had approved 535 enterprises.",
        "535",
    ),
    (
        "Where was the festival first held?",
        "The festival was first held in Leeds in 1987.",
        "Leeds",
    ),
    ("When was the festival first held?", "The festival was first held in Leeds in 1987.", "1987"),
    ("Who founded the company?", "The company was founded by Ada Byron in London.", "Ada Byron"),
]
CONFIG = TrainConfig(epochs=2, batch_size=2, unfreeze=1, lora_rank=2, threads=1, max_length=48)


def examples() -> list[SpanExample]:
    out = []
    for question, sentence, answer in SENTENCES:
        start = sentence.index(answer)
        out.append(
            SpanExample(question, sentence, start, start + len(answer), (answer,), article=0)
        )
    return out


def build_base(folder: Path, seed: int = 0) -> Path:
    """A tiny random BERT encoder (no QA head), saved with the bundled tokenizer."""
    import torch
    from transformers import BertModel

    vocab = copy_tokenizer(folder)
    torch.manual_seed(seed)
    BertModel(tiny_config(vocab)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def trained(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("span_reader")
    data = tmp_path_factory.mktemp("data") / "data.json"
    data.write_text("{}")
    write_folder(out, half(fine_tune(examples(), base, CONFIG)), manifest(data, base, CONFIG, 4))
    return out


# -- training ----------------------------------------------------------------------------------
def test_training_twice_writes_the_same_bytes(base: Path, trained: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text("{}")
    again = tmp_path / "again"
    write_folder(again, half(fine_tune(examples(), base, CONFIG)), manifest(data, base, CONFIG, 4))
    for name in (WEIGHTS_NAME, MANIFEST_NAME):
        assert (again / name).read_bytes() == (trained / name).read_bytes()


def test_training_in_a_worker_process_gives_the_same_tensors(base: Path) -> None:
    """``qa train-span-reader --jobs N`` trains folds in spawned processes: same bytes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    here = train_in(None, examples(), base, CONFIG).result()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        there = train_in(pool, examples(), base, CONFIG).result()
    assert sorted(there) == sorted(here)
    assert all(torch.equal(there[name], here[name]) for name in here)


def test_training_changes_only_the_head_and_the_top_layer(base: Path) -> None:
    from transformers import BertModel

    tensors = fine_tune(
        examples()[:2], base, TrainConfig(epochs=1, unfreeze=1, lora_rank=0, threads=1)
    )
    top = "bert.encoder.layer.1."
    assert {k.split(".")[0] for k in tensors} == {"bert", "qa_outputs"}
    assert all(k.startswith((top, "qa_outputs.")) for k in tensors)
    before = BertModel.from_pretrained(base).state_dict()
    moved = [k for k in tensors if k.startswith(top) and k[5:] in before]
    assert any(not np.allclose(tensors[k].numpy(), before[k[5:]].numpy()) for k in moved)


def test_unfreezing_more_layers_than_the_model_has_is_refused(base: Path) -> None:
    with pytest.raises(ConfigError, match="unfreeze must be between 0 and 2, got 3"):
        fine_tune(examples(), base, TrainConfig(epochs=1, unfreeze=3, threads=1))


# -- loading -----------------------------------------------------------------------------------
def test_the_loaded_reader_adds_the_low_rank_deltas(base: Path, trained: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(trained / WEIGHTS_NAME)
    name = next(k[: -len(".lora_a")] for k in tensors if k.endswith(".lora_a"))
    model = load_span_model(trained, base=base)._model
    from transformers import AutoModelForQuestionAnswering

    plain = AutoModelForQuestionAnswering.from_pretrained(base)
    weight = dict(model.named_parameters())[name + ".weight"].detach()
    if name + ".weight" in tensors:  # an unfrozen layer: its trained weight, then the delta
        start = tensors[name + ".weight"].float()
    else:
        start = dict(plain.named_parameters())[name + ".weight"].detach()
    delta = tensors[name + ".lora_b"].float() @ tensors[name + ".lora_a"].float()
    assert float(delta.abs().max()) > 0
    assert np.allclose(weight.numpy(), (start + delta).numpy(), atol=1e-6)


def test_spans_are_exact_and_inside_the_window(base: Path, trained: Path) -> None:
    reader = load_span_model(trained, base=base)
    for question, sentence, _ in SENTENCES:
        context = f"Before it. {sentence} After it."
        lo = context.index(sentence)
        choice = reader.find(question, context, (lo, lo + len(sentence)))
        assert choice is not None
        assert lo <= choice.start < choice.end <= lo + len(sentence)
        text = context[choice.start : choice.end]
        assert text == text.strip()
        assert text in sentence


def test_the_onnx_graph_gives_the_torch_logits(
    base: Path, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEDQA_CACHE", str(tmp_path))
    by_torch = load_span_model(trained, base=base, backend="torch")
    by_onnx = load_span_model(trained, base=base, backend="onnx")
    assert list(tmp_path.glob("onnx/span-*/model.onnx"))
    items = [(q, s, (0, len(s))) for q, s, _ in SENTENCES]
    for a, b in zip(by_torch.find_many(items), by_onnx.find_many(items), strict=True):
        assert a is not None
        assert b is not None
        assert (a.start, a.end) == (b.start, b.end)
        assert abs(a.score - b.score) < 1e-3
        assert abs(a.null_score - b.null_score) < 1e-3


def test_sentences_read_side_by_side_come_back_in_order(base: Path, trained: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    one = load_span_model(trained, base=base, backend="torch")
    items = [(q, s, (0, len(s))) for q, s, _ in SENTENCES] * 3
    side_by_side = SpanModel(
        tokenizer=AutoTokenizer.from_pretrained(base, local_files_only=True),
        model=qa_model(base, load_file(trained / WEIGHTS_NAME)),
        workers=3,
    )
    assert side_by_side.find_many(items) == one.find_many(items)
    assert [one.find(q, s) for q, s, _ in items] == one.find_many(items)


def test_the_int8_graph_is_quantised_once_and_reads_like_the_fp32_one(
    base: Path, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEDQA_CACHE", str(tmp_path))
    fp32 = load_span_model(trained, base=base, backend="onnx")
    int8 = load_span_model(trained, base=base, backend="onnx", precision="int8")
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    [graph] = tmp_path.glob("onnx/span-*/model.int8-per-channel.onnx")
    # int8 weights: the quantised graph is much smaller than the fp32 one beside it.
    assert graph.stat().st_size < 0.6 * (graph.parent / "model.onnx").stat().st_size
    stamp = graph.stat().st_mtime_ns
    load_span_model(trained, base=base, backend="onnx", precision="int8")
    assert graph.stat().st_mtime_ns == stamp  # cached, not quantised again
    items = [(q, s, (0, len(s))) for q, s, _ in SENTENCES]
    for a, b in zip(fp32.find_many(items), int8.find_many(items), strict=True):
        assert a is not None
        assert b is not None
        assert a.score != b.score  # really another graph
        # Quantisation moves logits a little: the scores stay close.
        assert abs(a.score - b.score) < 0.25 * max(1.0, abs(a.score))
        assert abs(a.null_score - b.null_score) < 0.25 * max(1.0, abs(a.null_score))


def test_an_unknown_precision_is_named(base: Path, trained: Path) -> None:
    with pytest.raises(ReaderError, match="'int4'"):
        load_span_model(trained, base=base, backend="onnx", precision="int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"span_precision.*'int4'"):
        Settings(span_precision="int4")  # type: ignore[arg-type]


def test_a_reader_trained_on_another_base_model_is_refused(trained: Path, tmp_path: Path) -> None:
    other = build_base(tmp_path / "other", seed=1)
    with pytest.raises(ReaderError, match=r"trained on base model .* but the base model at"):
        load_span_model(trained, base=other)


def test_a_missing_or_broken_weights_file_is_named(
    base: Path, trained: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_bytes((trained / MANIFEST_NAME).read_bytes())
    with pytest.raises(ReaderError, match=f"weights '{folder / WEIGHTS_NAME}' are unreadable"):
        load_span_model(folder, base=base)
    (folder / WEIGHTS_NAME).write_bytes(b"not safetensors")
    with pytest.raises(ReaderError, match="are unreadable"):
        load_span_model(folder, base=base)
    with pytest.raises(ReaderError, match=f"'{tmp_path / 'absent'}' does not exist"):
        load_span_model(tmp_path / "absent", base=base)
    (folder / MANIFEST_NAME).write_text('{"version": 99}')
    with pytest.raises(ReaderError, match="has version 99"):
        load_span_model(folder, base=base)


# -- wiring ------------------------------------------------------------------------------------
class LastWord:
    """A stand-in span model: the last word of the context (one the linear scorer avoids)."""

    reads_no_answer = False
    #: Not the shipped reader: the service uses the refusal without the read margin with it.
    weights_sha256 = None
    precision = "fp32"

    def find(
        self, question: str, context: str, window: tuple[int, int] | None = None
    ) -> SpanChoice | None:
        words = context.rstrip(".").split()
        end = len(context.rstrip("."))
        return SpanChoice(end - len(words[-1]), end, 1.0, 0.0)

    def find_many(
        self, items: Sequence[tuple[str, str, tuple[int, int]]]
    ) -> list[SpanChoice | None]:
        return [self.find(q, c, w) for q, c, w in items]


class PrefersTheLast(LastWord):
    """A stand-in span model trained with negatives: of the sentences it is given in one call,
    it says the last one answers (margin +50) and the others do not (margin -50)."""

    reads_no_answer = True

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def find_many(
        self, items: Sequence[tuple[str, str, tuple[int, int]]]
    ) -> list[SpanChoice | None]:
        self.calls.append([c for _, c, _ in items])
        out: list[SpanChoice | None] = []
        for i, choice in enumerate(super().find_many(items)):
            assert choice is not None
            margin = 50.0 if i == len(items) - 1 else -50.0
            out.append(SpanChoice(choice.start, choice.end, margin, 0.0))
        return out


def _ask(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    finder: object,
    gap: float | None = None,
) -> object:
    from qa.ask import pipeline
    from qa.ask import service as service_module
    from qa.ask.service import QAService
    from qa.index.builder import build_index

    monkeypatch.setattr(pipeline, "load_span_finder", lambda s: finder)
    if gap is not None:  # the reader the settings load, re-reading within another gap
        load = pipeline.load_reader
        monkeypatch.setattr(
            service_module,
            "load_reader",
            lambda s: dataclasses.replace(load(s), reread_gap=gap),  # type: ignore[type-var]
        )
    build_index(settings)
    service = QAService(settings.replace(retrieval_mode="bm25"))
    try:
        return service.ask(QUESTION).answer
    finally:
        service.close()


def test_the_bold_span_is_the_span_models_with_exact_offsets(
    settings: Settings, seeds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = _ask(settings, monkeypatch, LastWord())
    linear = _ask(settings, monkeypatch, None)
    assert isinstance(answer, Answer)
    assert isinstance(linear, Answer)
    assert answer.span is not None
    assert linear.span is not None
    raw = (seeds_dir / answer.source).read_text(encoding="utf-8")
    assert raw[answer.span.start : answer.span.end] == answer.span.text
    assert answer.start <= answer.span.start < answer.span.end <= answer.end
    assert answer.span.text == answer.text.rstrip(".").split()[-1]
    assert answer.span.text != linear.span.text


def test_a_reader_trained_with_negatives_rereads_the_best_sentences_and_can_overrule(
    settings: Settings, seeds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _ask(settings, monkeypatch, LastWord())
    rereader = PrefersTheLast()
    answer = _ask(settings, monkeypatch, rereader, gap=math.inf)
    assert isinstance(plain, Answer)
    assert isinstance(answer, Answer)
    # One call, with the sentence model's best REREAD sentences (no gap limit), best first.
    assert len(rereader.calls) == 1
    asked = rereader.calls[0]
    assert len(asked) == REREAD
    assert len(set(asked)) == REREAD
    assert plain.text.endswith(asked[0])
    # Its margin outweighs the sentence model's logits: the last sentence read is quoted, with
    # the span it found there, at exact offsets.
    assert answer.text.endswith(asked[-1])
    assert answer.text != plain.text
    assert answer.span is not None
    raw = (seeds_dir / answer.source).read_text(encoding="utf-8")
    assert raw[answer.start : answer.end] == answer.text
    assert raw[answer.span.start : answer.span.end] == answer.span.text
    assert answer.span.text == asked[-1].rstrip(".").split()[-1]


def test_a_gap_of_zero_rereads_the_best_sentence_alone(
    settings: Settings, seeds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything, near = PrefersTheLast(), PrefersTheLast()
    _ask(settings, monkeypatch, everything, gap=math.inf)
    _ask(settings, monkeypatch, near, gap=0.0)
    assert len(everything.calls[0]) == REREAD
    # A gap of 0 reads the best sentence alone (unless another ties it exactly).
    assert near.calls[0] == everything.calls[0][:1]


def test_read_order_keeps_the_best_and_those_within_the_gap() -> None:
    logits = [0.5, 3.0, 2.5, 1.9, 2.9]
    assert read_order(logits, 3, math.inf) == [1, 4, 2]
    assert read_order(logits, 3, 0.5) == [1, 4, 2]  # 2.5 is exactly 0.5 below 3.0
    assert read_order(logits, 3, 0.2) == [1, 4]
    assert read_order(logits, 3, 0.0) == [1]
    assert read_order(logits, 1, math.inf) == [1]
    assert read_order([], 3, 1.0) == []


def test_negatives_are_sibling_sentences_without_the_answer(tmp_path: Path) -> None:
    context = (
        "The bridge opened in 1932. It carries six lanes of traffic. "
        "The bridge was designed by John Bradfield. Bradfield also planned the city railway."
    )
    qas = [
        {
            "id": "q1",
            "question": "Who designed the bridge?",
            "answers": [{"text": "John Bradfield", "answer_start": context.index("John")}],
        }
    ]
    data = {"data": [{"title": "Bridge", "paragraphs": [{"context": context, "qas": qas}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert [ex.answerable for ex in xquad_examples(path)] == [True]
    positive, *negatives = xquad_examples(path, negatives=2)
    assert positive.sentence[positive.start : positive.end] == "John Bradfield"
    assert [ex.answerable for ex in negatives] == [False, False]
    # The sibling sharing the most words with the question comes first ("bridge"; the title
    # line "Bridge" is never one); the one naming "Bradfield" alone holds no gold answer.
    assert negatives[0].sentence == "The bridge opened in 1932."
    assert all("John Bradfield" not in ex.sentence for ex in negatives)
    assert all(ex.question == positive.question for ex in negatives)


def test_null_rates_count_answering_and_non_answering_sentences() -> None:
    pos = SpanExample("q", "a b", 0, 1, ("a",), 0)
    neg = SpanExample("q", "c d", 0, 0, ("a",), 0, answerable=False)
    spans = [SpanChoice(0, 1, 5.0, 1.0), SpanChoice(0, 1, 0.5, 2.0), SpanChoice(0, 1, 3.0, 1.0)]
    rates = null_rates([pos, neg, neg], spans)
    assert rates == {"answer_sentences_read_as_answering": 1.0, "other_sentences_read_as_not": 0.5}


def test_a_negative_example_targets_the_null_span(base: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    # Offsets that cover "Nobody": a negative's target is [CLS] whatever its offsets say.
    neg = SpanExample("Who?", "Nobody here.", 0, 6, ("x",), 0, answerable=False)
    pos = SpanExample("Who?", "Ada wrote.", 0, 3, ("Ada",), 0)
    enc = tokenizer(
        [neg.question, pos.question], [neg.sentence, pos.sentence], return_offsets_mapping=True
    )
    assert _token_targets(enc["offset_mapping"][0], enc.sequence_ids(0), neg) == (0, 0)
    first, last = _token_targets(enc["offset_mapping"][1], enc.sequence_ids(1), pos)
    assert 0 < first <= last


def test_features_setting_falls_back_to_the_linear_scorer(
    settings: Settings, seeds_dir: Path
) -> None:
    from qa.ask.pipeline import load_reader, load_span_finder
    from qa.ask.service import QAService
    from qa.index.builder import build_index

    features = settings.replace(span_model="features", retrieval_mode="bm25")
    assert load_span_finder(features) is None
    assert isinstance(load_reader(features), LearnedReader)
    build_index(features)
    service = QAService(features)
    try:
        answer = service.ask(QUESTION).answer
    finally:
        service.close()
    assert answer is not None
    assert answer.span is not None
    raw = (seeds_dir / answer.source).read_text(encoding="utf-8")
    s, e = next((s, e) for s, e in split_sentences(raw) if s <= answer.span.start < e)
    found = best_span(raw[s:e], QUESTION, load_weights().span)
    assert found is not None
    assert raw[s + found[0] : s + found[1]] == answer.span.text


def test_a_span_model_folder_that_does_not_exist_stops_the_start(
    settings: Settings, tmp_path: Path
) -> None:
    from qa.ask.service import QAService
    from qa.index.builder import build_index

    build_index(settings)
    missing = tmp_path / "nowhere"
    service = QAService(settings.replace(span_model=str(missing)))
    with pytest.raises(ReaderError, match=f"span reader folder '{missing}' does not exist"):
        service.start(update=False, poll=False)
    service.close()


@pytest.mark.model
def test_the_shipped_reader_starts_its_span_at_the_number_asked_for() -> None:
    # The example of issue 10: the linear scorer bolded "1,753.18 million" here, not "535". The
    # shipped reader's span starts at "535" (the reader trained without negatives ran on past it
    # to "... USD 1,753.18 million"; the one trained with them stops at "535").
    raw = next(SEEDS.glob("004_*.txt")).read_text(encoding="utf-8")
    s, e = next((s, e) for s, e in split_sentences(raw) if "535" in raw[s:e])
    question = "How many US-funded enterprises had Chongqing approved by 2013?"
    # torch (fp32), and the int8 graph the service runs by default.
    for reader in (
        load_span_model(DEFAULT_SPAN_READER),
        load_span_model(DEFAULT_SPAN_READER, backend="onnx", precision="int8"),
    ):
        choice = reader.find(question, raw[s:e])
        assert choice is not None
        assert raw[s + choice.start : s + choice.end].split()[0] == "535"


def test_the_span_model_flag_and_setting_reach_the_settings(no_env: None) -> None:
    from qa.cli import build_parser, settings_from

    args = build_parser().parse_args(["ask", "--span-model", "features", "a question"])
    assert settings_from(args).span_model == "features"
    assert Settings.load(environ={"QA_SPAN_MODEL": "/x/reader"}).span_model == "/x/reader"
    with pytest.raises(ConfigError, match="span_model must be 'learned', 'features' or the path"):
        Settings(span_model=" ")


def test_the_span_precision_flag_and_setting_reach_the_settings(no_env: None) -> None:
    from qa.cli import build_parser, settings_from

    assert Settings().span_precision == "int8"
    args = build_parser().parse_args(["ask", "--span-precision", "fp32", "a question"])
    assert settings_from(args).span_precision == "fp32"
    assert Settings.load(environ={"QA_SPAN_PRECISION": "fp32"}).span_precision == "fp32"
    with pytest.raises(ConfigError, match="'int4'"):
        Settings.load(environ={"QA_SPAN_PRECISION": "int4"})
