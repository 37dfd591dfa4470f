"""A few end-to-end checks with the real bundled model and the default, calibrated settings."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from qa.ask.service import QAService
from qa.config import Settings
from qa.index.builder import build_index

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QAService]:
    import shutil

    from .conftest import SEEDS

    root = tmp_path_factory.mktemp("real")
    shutil.copytree(SEEDS, root / "seeds")
    settings = Settings(seeds_dir=root / "seeds", index_dir=root / "embeddings")
    build_index(settings)
    svc = QAService(settings)
    svc.start(update=False, poll=False)
    yield svc
    svc.close()


@pytest.mark.parametrize(
    ("question", "needle"),
    [
        ("535", "535 US-funded enterprises"),
        ("Little Rock", "Little Rock"),
        ("Which US city is a friendly city of Changchun?", "Little Rock"),
        ("When did California open a trade office in Chongqing?", "In May 2013, California"),
    ],
)
def test_hybrid_finds_names_numbers_and_dates(
    service: QAService, question: str, needle: str
) -> None:
    hits = service.ask(question, k=3, answer=False).passages
    assert needle in hits[0].passage.text


def test_supported_question_gets_a_cited_verbatim_answer(service: QAService) -> None:
    result = service.ask(
        "How many US-funded enterprises had Chongqing approved by the end of 2013?"
    )
    a = result.answer
    assert a is not None
    assert "535" in a.text
    raw = (service.settings.seeds_dir / a.source).read_bytes().decode("utf-8")
    assert raw[a.start : a.end] == a.text
    assert a.rendered.endswith("[1]")


@pytest.mark.parametrize(
    "question",
    [
        "Who won the 2022 World Cup?",
        "What is the population of Texas?",
        "What was Chongqing's GDP in 2023?",
    ],
)
def test_questions_the_seeds_never_answer_are_refused(service: QAService, question: str) -> None:
    result = service.ask(question)
    assert result.answer is None
    assert result.abstain_reason
    assert result.passages  # the closest passages are still shown


def test_sentence_vectors_pool_the_passage_forward_pass(service: QAService) -> None:
    gen = service.generation
    # The pooled passage vector equals what sentence-transformers gives for the same text.
    p = gen.passages[3]
    reference = service.embedder.encode_batch([p.embed_text()])[0]
    assert float(np.dot(gen.vectors[3], reference)) > 0.999
    scores = gen.sentence_scores(3, reference)
    assert len(scores) == len(p.sentences)
    assert all(-1.0 <= s <= 1.0 for s in scores)
