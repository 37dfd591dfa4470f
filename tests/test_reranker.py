"""The bring-your-own cross-encoder reranker, on a tiny model built here (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.ask.reranker import CrossEncoderReranker
from qa.errors import ReaderError
from tests.tiny_hf import build_cross_encoder, build_qa_model

QUESTION = "Which café opened beside the lighthouse?"
TEXTS = [
    "The tide came in over the stones.",
    "The Zürich café opened beside the lighthouse in 1999.",
    "Trams run through the old town.",
    "A lighthouse stands at the end of the pier.",
    "Coffee is served until midnight.",
]


@pytest.fixture(scope="module")
def cross(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cross_encoder(tmp_path_factory.mktemp("hf") / "cross")


@pytest.fixture(scope="module")
def reranker(cross: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(path=cross)


def _direct_logits(folder: Path, question: str, texts: list[str]) -> list[float]:
    """The model's own logits for each (question, text) pair, without sentence-transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        batch = tokenizer([question] * len(texts), texts, padding=True, return_tensors="pt")
        return [float(x) for x in model(**batch).logits[:, 0]]


def test_scores_follow_the_models_logits_pair_by_pair(
    reranker: CrossEncoderReranker, cross: Path
) -> None:
    scores = reranker.score(QUESTION, TEXTS)
    logits = _direct_logits(cross, QUESTION, TEXTS)
    assert len(scores) == len(TEXTS)
    assert len(set(scores)) == len(TEXTS)  # a random model still tells the texts apart
    # The score may be the logit or a monotone activation of it: the ranking is the same.
    assert sorted(range(len(TEXTS)), key=lambda i: scores[i]) == sorted(
        range(len(TEXTS)), key=lambda i: logits[i]
    )


def test_order_is_by_descending_score(reranker: CrossEncoderReranker) -> None:
    scores = reranker.score(QUESTION, TEXTS)
    order = reranker.order(QUESTION, TEXTS)
    assert sorted(order) == list(range(len(TEXTS)))
    assert [scores[i] for i in order] == sorted(scores, reverse=True)
    assert order != list(range(len(TEXTS)))  # the reranker did reorder something


def test_no_texts_no_scores(reranker: CrossEncoderReranker) -> None:
    assert reranker.score(QUESTION, []) == []


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match=r"reranker folder '.*absent' does not exist"):
        CrossEncoderReranker(path=tmp_path / "absent")


def test_qa_model_is_the_wrong_kind_of_reranker(tmp_path: Path) -> None:
    folder = build_qa_model(tmp_path / "qa", steer=False)
    with pytest.raises(
        ReaderError, match="BertForQuestionAnswering model; the reranker needs a cross-encoder"
    ):
        CrossEncoderReranker(path=folder)


def test_classifier_with_several_labels_is_refused(tmp_path: Path) -> None:
    folder = build_cross_encoder(tmp_path / "three", num_labels=3)
    with pytest.raises(ReaderError, match="three' is a classifier with 3 labels"):
        CrossEncoderReranker(path=folder)
