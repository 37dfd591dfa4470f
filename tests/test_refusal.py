"""Refusals: the question-type detector, the unknown-names rule, the calibrated threshold, the
weights file's validation and the training command's reproducibility."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from qa.ask.answer import (
    Abstention,
    Answer,
    is_unknown_terms_reason,
    question_type,
    unsupported_terms,
)
from qa.ask.answerer import (
    READ_REFUSAL_FEATURES,
    LearnedReader,
    ReadRefusal,
    load_weights,
    weights_json,
)
from qa.ask.logistic import LinearModel
from qa.ask.reader import ReaderContext
from qa.ask.retrieval import Hit
from qa.ask.service import QAService
from qa.ask.span_decode import SpanChoice
from qa.ask.spans import wh_word
from qa.cli import main
from qa.config import DEFAULT_TEMPLATE, Settings
from qa.errors import ConfigError
from qa.evaluation.train_command import fold_span_readers
from qa.evaluation.training import calibrate_threshold
from qa.index.builder import build_index
from qa.index.lexical import known_word, tokenize
from tests.hits import passage_hit


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many enterprises did Chongqing approve?", "number"),
        ("How much did the trade grow?", "number"),
        ("What is the population of Chongqing?", "number"),
        ("When did the expo open?", "date"),
        ("In which year did the festival begin?", "date"),
        ("Who chairs the township board?", "name"),
        ("Where was the forum held?", "name"),
        ("Which company built the railway?", "name"),
        ("What did the delegation visit?", None),
        ("Why did the delegation come?", None),
    ],
)
def test_question_type(question: str, kind: str | None) -> None:
    assert question_type(question) == kind


@pytest.mark.parametrize(
    ("question", "wh"),
    [
        ("How many enterprises?", "how_many"),
        ("In which year did it begin?", "when"),
        ("Whose idea was it?", "who"),
        ("Which city signed?", "which"),
        ("Why did it close?", "why"),
        ("What is the capital?", "what"),
        ("Name the capital.", "other"),
    ],
)
def test_wh_word(question: str, wh: str) -> None:
    assert wh_word(question) == wh


def test_names_the_index_never_mentions_are_refused(settings: Settings) -> None:
    build_index(settings)
    service = QAService(settings)  # answer_threshold 0.0: only the rule can refuse
    try:
        unknown = service.ask("Who is the governor of Texas?")
        known = service.ask("Who is chairman of the West Chester Township Board of Trustees?")
    finally:
        service.close()
    assert unknown.answer is None
    assert is_unknown_terms_reason(unknown.abstain_reason)
    assert "'Texas'" in (unknown.abstain_reason or "")
    assert unknown.unrefused is not None  # what would have been said is still measured
    assert known.answer is not None
    assert not is_unknown_terms_reason(known.abstain_reason)


@pytest.mark.parametrize(
    ("question", "missing"),
    [
        ("When was the Maastricht Treaty signed?", []),
        ("When was the Maastrich Treaty signed?", []),  # one letter left out
        ("What did the UMC decide about fasting?", []),  # the text spells it out
        ("What did the UMC's board decide?", []),
        ("What did the AMC decide about fasting?", ["AMC"]),  # an abbreviation of nothing here
        ("When was the Lisbon Treaty signed?", ["Lisbon"]),
        ("What did the Methodists decide in 2023?", ["2023"]),  # numbers stay exact
    ],
)
def test_names_spelled_another_way_are_not_unknown(question: str, missing: list[str]) -> None:
    text = "The Maastricht Treaty of 1992. The United Methodist Church asked members to fast."
    terms = frozenset(tokenize(text))
    found = unsupported_terms(
        question,
        known=lambda w: known_word(w, terms.__contains__),
        article_terms=terms,
        hits=[_hit(text)],
    )
    assert found == missing


def test_calibrated_threshold_keeps_to_the_refusal_budget() -> None:
    rng = np.random.default_rng(7)
    confidence = rng.uniform(size=1000)
    none_ruled = np.zeros(1000, dtype=bool)
    threshold = calibrate_threshold(confidence, none_ruled, 0.05)
    assert np.mean(confidence < threshold) <= 0.05
    assert np.mean(confidence < threshold) >= 0.04  # the budget is used, not wasted
    # Questions the unknown-names rule refuses anyway use up part of the budget.
    ruled = np.zeros(1000, dtype=bool)
    ruled[:30] = True
    lower = calibrate_threshold(confidence, ruled, 0.05)
    assert lower < threshold
    refused = ruled | (confidence < lower)
    assert np.mean(refused) <= 0.05 + 1e-9
    ruled[:80] = True
    assert calibrate_threshold(confidence, ruled, 0.05) == 0.0


def _hit(text: str = "The expo opened in 2019. It drew 500 firms from 30 countries.") -> Hit:
    return passage_hit(text)


def test_the_reader_refuses_below_its_threshold_and_answers_above() -> None:
    weights = load_weights()
    context = ReaderContext(np.zeros(4, dtype=np.float32), lambda _row: [0.7, 0.3])
    question = "When did the expo open?"
    refused = LearnedReader(template=DEFAULT_TEMPLATE, weights=weights, threshold=1.0).answer(
        question, [_hit()], context
    )
    assert isinstance(refused, Abstention)
    assert "needed 1.00" in refused.reason
    assert refused.best is not None
    answered = LearnedReader(template=DEFAULT_TEMPLATE, weights=weights, threshold=0.0).answer(
        question, [_hit()], context
    )
    assert isinstance(answered, Answer)
    assert answered.support == refused.support  # the confidence does not depend on the threshold
    # Without a threshold of its own the reader uses the calibrated one.
    default = LearnedReader(template=DEFAULT_TEMPLATE, weights=weights).answer(
        question, [_hit()], context
    )
    assert isinstance(default, Answer) == (answered.support >= weights.threshold)


def test_weights_of_another_version_or_feature_list_are_refused(tmp_path: Path) -> None:
    from qa.ask.answerer import DEFAULT_WEIGHTS

    data = json.loads(DEFAULT_WEIGHTS.read_text(encoding="utf-8"))
    data["version"] = 99
    (tmp_path / "v.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="version 99"):
        load_weights(tmp_path / "v.json")
    data = json.loads(DEFAULT_WEIGHTS.read_text(encoding="utf-8"))
    data["sentence"]["features"][0] = "shoe_size"
    (tmp_path / "f.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="shoe_size"):
        load_weights(tmp_path / "f.json")


def _squad(path: Path) -> Path:
    """Eight small articles (two folds' worth each way), each with answerable questions."""
    articles = []
    for a in range(8):
        name = f"Town{a}"
        context = (
            f"{name} is a town on the river Ab{a}. It was founded in {1800 + a} by settlers. "
            f"The town has {100 * (a + 1)} houses and one school. Its mayor is Ann Lee{a}."
        )
        qas = [
            (f"When was {name} founded?", str(1800 + a)),
            (f"How many houses does {name} have?", str(100 * (a + 1))),
            (f"Who is the mayor of {name}?", f"Ann Lee{a}"),
        ]
        articles.append(
            {
                "title": name,
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {"id": f"{a}-{i}", "question": q, "answers": [{"text": t}]}
                            for i, (q, t) in enumerate(qas)
                        ],
                    }
                ],
            }
        )
    path.write_text(json.dumps({"data": articles}), encoding="utf-8")
    return path


def test_train_answerer_reproduces_its_weights_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    squad = _squad(tmp_path / "squad.json")
    outs = []
    for n in (1, 2):
        out = tmp_path / f"w{n}.json"
        argv = ["train-answerer", "--model", "fake", "--xquad", str(squad), "--out", str(out)]
        assert main([*argv, "--cache", str(tmp_path / f"cache{n}")]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    held = report["held_out"]
    assert set(held) >= {"answer_holds_gold", "span_f1", "unanswerable_refused"}
    # A refused question scores 0 with refusals on and its would-be answer's score with them
    # off; an answered one scores the same both ways.
    assert held["span_f1_no_refusals"] >= held["span_f1"]
    assert held["answer_holds_gold_no_refusals"] >= held["answer_holds_gold"]
    weights = load_weights(tmp_path / "w1.json")  # validates version and feature lists
    assert weights.trained_on["questions"] == 24
    assert len(weights.trained_on["sha256"]) == 64


def test_span_folds_without_any_fold_reader_are_named(tmp_path: Path) -> None:
    (tmp_path / "fold-9").mkdir()  # not a fold of the 4
    with pytest.raises(ConfigError, match=f"span reader folds '{tmp_path}' hold no fold-0"):
        fold_span_readers(tmp_path, "onnx", "int8")


def test_answer_settings_from_the_environment() -> None:
    settings = Settings.load(environ={"QA_ANSWER_THRESHOLD": "0.4", "QA_ANSWER_SCORER": "handset"})
    assert settings.answer_threshold == 0.4
    assert settings.answer_scorer == "handset"
    assert Settings.load(environ={}).answer_threshold is None  # the calibrated one
    with pytest.raises(ConfigError, match="'clever'"):
        Settings.load(environ={"QA_ANSWER_SCORER": "clever"})


class MarginReader:
    """A stand-in span reader trained with negatives: its whole-sentence span scores
    ``margin`` against the null span or, given each question's ``gold`` answer, +5 when the
    sentence holds it and -5 when it does not."""

    reads_no_answer = True

    def __init__(
        self,
        margin: float = 0.0,
        gold: dict[str, str] | None = None,
        sha: str = "r1",
        precision: str = "fp32",
    ) -> None:
        self.margin, self.gold, self.weights_sha256 = margin, gold, sha
        self.precision = precision

    def find(self, question: str, context: str, window: object = None) -> SpanChoice:
        margin = self.margin
        if self.gold is not None:
            margin = 5.0 if self.gold[question] in context else -5.0
        return SpanChoice(0, len(context), margin, 0.0)

    def find_many(
        self, items: Sequence[tuple[str, str, tuple[int, int]]]
    ) -> list[SpanChoice | None]:
        return [self.find(q, c) for q, c, _ in items]


def _margin_only(threshold: float) -> ReadRefusal:
    """A read refusal that looks at the read margin alone: confidence = sigmoid(margin)."""
    n = len(READ_REFUSAL_FEATURES)
    model = LinearModel(
        READ_REFUSAL_FEATURES, (0.0,) * n, (1.0,) * n, (0.0,) * (n - 1) + (1.0,), 0.0
    )
    return ReadRefusal(model, threshold, span_reader_sha256="r1")


def test_the_read_refusal_follows_the_span_readers_margin() -> None:
    weights = dataclasses.replace(load_weights(), read_refusal=_margin_only(0.5))
    context = ReaderContext(np.zeros(4, dtype=np.float32), lambda _row: [0.7, 0.3])
    question = "When did the expo open?"

    def ask(margin: float) -> Answer | Abstention:
        reader = LearnedReader(
            template=DEFAULT_TEMPLATE, weights=weights, span_model=MarginReader(margin)
        )
        return reader.answer(question, [_hit()], context)

    assert isinstance(ask(8.0), Answer)
    refused = ask(-8.0)
    assert isinstance(refused, Abstention)
    assert "needed 0.50" in refused.reason
    assert refused.support < 0.01
    # Without it, the same reader falls back to the refusal without the margin.
    without = dataclasses.replace(load_weights(), read_refusal=None)
    plain = LearnedReader(
        template=DEFAULT_TEMPLATE, weights=without, span_model=MarginReader(-8.0)
    ).answer(question, [_hit()], context)
    assert (
        plain.support
        == LearnedReader(template=DEFAULT_TEMPLATE, weights=without)
        .answer(question, [_hit()], context)
        .support
    )


def test_the_shipped_read_refusal_is_fitted_for_the_shipped_span_reader() -> None:
    # Otherwise load_reader drops it and the service quietly runs on the plain refusal.
    from qa.ask.span_model import DEFAULT_SPAN_READER, WEIGHTS_NAME, file_digest, read_manifest

    read = load_weights().read_refusal
    assert read is not None
    assert read.span_reader_sha256 == file_digest(DEFAULT_SPAN_READER / WEIGHTS_NAME)
    # ... and for the precision the service runs it at by default.
    assert read.span_precision == Settings().span_precision
    # It reads "no answer", so it can re-read.
    assert read_manifest(DEFAULT_SPAN_READER)["training"]["negatives"] > 0


def test_the_read_refusal_is_used_only_with_the_span_reader_it_was_fitted_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qa.ask import answerer, pipeline

    weights = dataclasses.replace(load_weights(), read_refusal=_margin_only(0.5))
    monkeypatch.setattr(answerer, "load_weights", lambda: weights)
    finders = (
        (MarginReader(sha="r1"), True),
        (MarginReader(sha="other"), False),
        # The same weights at another precision read other margins.
        (MarginReader(sha="r1", precision="int8"), False),
    )
    for finder, kept in finders:
        monkeypatch.setattr(pipeline, "load_span_finder", lambda s, f=finder: f)
        reader = pipeline.load_reader(Settings())
        assert isinstance(reader, LearnedReader)
        assert (reader.weights.read_refusal is not None) == kept


def test_train_answerer_fits_a_read_refusal_on_cross_fitted_margins(tmp_path: Path) -> None:
    from qa.evaluation.training import train

    squad = _squad(tmp_path / "squad.json")
    gold = {
        a["question"]: a["answers"][0]["text"]
        for art in json.loads(squad.read_text())["data"]
        for p in art["paragraphs"]
        for a in p["qas"]
    }
    finders = {f: MarginReader(gold=gold, precision="int8") for f in range(4)}
    weights, report = train(
        squad,
        Settings(model="fake"),
        cache=tmp_path / "cache",
        span_finders=finders,
        span_reader_sha256="abc",
    )
    read = weights.read_refusal
    assert read is not None
    assert read.span_reader_sha256 == "abc"
    assert read.span_precision == "int8"  # the fold readers' precision, as they were run
    # Answerable questions read +5 (their sentence holds the answer), hidden ones -5: the
    # margin separates them, so the refusal leans on it.
    assert read.model.coef[READ_REFUSAL_FEATURES.index("read_margin")] > 0
    assert 0.0 <= read.threshold <= 1.0
    assert "read_margin" in weights.trained_on
    path = tmp_path / "w.json"
    path.write_text(json.dumps(weights_json(weights)), encoding="utf-8")
    loaded = load_weights(path).read_refusal
    assert loaded is not None
    assert loaded.to_json() == read.to_json()  # the file holds it, rounded as written
    assert report["held_out"]["answer_holds_gold"] > 0
