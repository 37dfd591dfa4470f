"""A user's own QA model and cross-encoder through the service, the CLI and the reader seam.

The models are tiny and built here: the QA model is steered to answer from 'approved' to
'enterprises' (a sentence of one seed article), or to refuse; the cross-encoder is random.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.ask.answer import Abstention
from qa.ask.answerer import LearnedReader
from qa.ask.hf_reader import ExtractiveReader
from qa.ask.model_reader import SpanReader
from qa.ask.reader import HandSetReader, ReaderContext
from qa.ask.service import QAService
from qa.cli import main
from qa.config import Settings
from qa.errors import ReaderError
from qa.index.builder import build_index
from tests.tiny_hf import build_cross_encoder, build_qa_model

QUESTION = "How many US-funded enterprises had Chongqing approved?"


@pytest.fixture
def bm25(settings: Settings) -> Settings:
    """BM25 puts the passage holding the answer first for QUESTION (the fake embedder does not)."""
    return settings.replace(retrieval_mode="bm25")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "answer": build_qa_model(root / "answer", start_word="approved", end_word="enterprises"),
        "refuse": build_qa_model(root / "refuse", refuse=True),
        "cross": build_cross_encoder(root / "cross"),
    }


def _started(settings: Settings) -> QAService:
    service = QAService(settings)
    service.start(update=True, poll=False)
    return service


def _expected_span(settings: Settings, source: str) -> tuple[int, int]:
    raw = (settings.seeds_dir / source).read_text(encoding="utf-8")
    start = raw.index("approved")
    return start, raw.index("enterprises", start) + len("enterprises")


def test_reader_setting_answers_with_the_models_span(
    bm25: Settings, models: dict[str, Path]
) -> None:
    service = _started(bm25.replace(reader=models["answer"]))
    try:
        assert isinstance(service.reader, SpanReader)
        result = service.ask(QUESTION, k=5)
    finally:
        service.close()
    answer = result.answer
    assert answer is not None, result.abstain_reason
    raw = (bm25.seeds_dir / answer.source).read_text(encoding="utf-8")
    assert (answer.start, answer.end) == _expected_span(bm25, answer.source)
    assert raw[answer.start : answer.end] == answer.text == "approved 535 US-funded enterprises"
    cited = next(h for h in result.passages if h.rank == answer.passage_rank)
    assert cited.passage.start <= answer.start < answer.end <= cited.passage.end
    assert answer.support > 0
    assert "answer_ms" in result.timings


def test_reader_refusal_keeps_the_withheld_span(bm25: Settings, models: dict[str, Path]) -> None:
    service = _started(bm25.replace(reader=models["refuse"]))
    try:
        result = service.ask(QUESTION, k=5)
    finally:
        service.close()
    assert result.answer is None
    assert result.abstain_reason is not None
    assert "no-answer score" in result.abstain_reason
    assert result.support is not None
    assert result.support < 0
    withheld = result.unrefused
    assert withheld is not None
    raw = (bm25.seeds_dir / withheld.source).read_text(encoding="utf-8")
    assert raw[withheld.start : withheld.end] == withheld.text


def test_without_the_setting_the_default_reader_answers(settings: Settings) -> None:
    service = QAService(settings)
    handset = QAService(settings.replace(answer_scorer="handset"))
    try:
        assert isinstance(service.reader, LearnedReader)
        assert isinstance(handset.reader, HandSetReader)
        assert service.rerank is None
    finally:
        service.close()
        handset.close()


def test_reranker_setting_reorders_the_hits_by_its_scores(
    settings: Settings, models: dict[str, Path]
) -> None:
    build_index(settings)
    plain = QAService(settings)
    reranked = QAService(settings.replace(reranker=models["cross"]))
    try:
        before = plain.ask(QUESTION, k=8, answer=False).passages
        after = reranked.ask(QUESTION, k=8, answer=False)
    finally:
        plain.close()
        reranked.close()
    assert sorted(h.row for h in after.passages) == sorted(h.row for h in before)
    assert [h.rank for h in after.passages] == list(range(1, len(before) + 1))
    scores = [h.score for h in after.passages]
    assert scores == sorted(scores, reverse=True)
    assert [h.row for h in after.passages] != [h.row for h in before]  # it did reorder
    # The scores are the cross-encoder's own, pair by pair.
    from qa.ask.reranker import CrossEncoderReranker

    direct = CrossEncoderReranker(path=models["cross"])
    texts = [h.passage.text for h in after.passages]
    assert direct.score(QUESTION, texts) == pytest.approx(scores)
    assert "rerank_ms" in after.timings


def test_bad_reader_folder_fails_the_start(settings: Settings, tmp_path: Path) -> None:
    service = QAService(settings.replace(reader=tmp_path / "missing-model"))
    try:
        with pytest.raises(ReaderError, match="missing-model' does not exist"):
            service.start(update=True, poll=False)
    finally:
        service.close()


def test_http_answers_with_the_readers_span(bm25: Settings, models: dict[str, Path]) -> None:
    from fastapi.testclient import TestClient

    from web.app import create_app

    with TestClient(create_app(bm25.replace(reader=models["answer"]))) as client:
        r = client.post("/api/ask", json={"question": QUESTION, "k": 5})
    assert r.status_code == 200
    answer = r.json()["answer"]
    assert answer["text"] == "approved 535 US-funded enterprises"
    raw = (bm25.seeds_dir / answer["source"]).read_text(encoding="utf-8")
    assert raw[answer["start"] : answer["end"]] == answer["text"]


def test_http_with_a_bad_reader_folder_says_which(settings: Settings, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from web.app import create_app

    (tmp_path / "not-a-model").mkdir()
    with TestClient(create_app(settings.replace(reader=tmp_path / "not-a-model"))) as client:
        health = client.get("/healthz").json()
        assert "not-a-model' has no config.json" in health["detail"]
        r = client.post("/api/ask", json={"question": QUESTION})
        assert r.status_code == 503
        assert "not-a-model' has no config.json" in r.json()["detail"]
        passages_only = client.post("/api/ask", json={"question": QUESTION, "answer": False})
        assert passages_only.status_code == 200


def test_cli_reader_flag_takes_effect(
    settings: Settings,
    models: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    no_env: None,
) -> None:
    build_index(settings)
    where = ["--seeds", str(settings.seeds_dir), "--index", str(settings.index_dir)]
    reader = ["--reader", str(models["answer"])]
    code = main(["ask", "--model", "fake", *where, "--mode", "bm25", "--json", *reader, QUESTION])
    assert code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["answer"]["text"] == "approved 535 US-funded enterprises"


def test_span_reader_cites_the_hit_it_quotes(settings: Settings, models: dict[str, Path]) -> None:
    build_index(settings)
    service = QAService(settings)
    try:
        hits = service.ask(QUESTION, k=5, answer=False).passages
    finally:
        service.close()
    holder = next(h for h in hits if "approved" in h.passage.text)
    others = [h for h in hits if h is not holder][:2]
    reader = SpanReader(
        extractive=ExtractiveReader(path=models["answer"]), template=settings.answer_template
    )
    outcome = reader.answer(QUESTION, [*others, holder], ReaderContext(None))
    assert not isinstance(outcome, Abstention)
    assert outcome.citations == [holder.rank]
    assert outcome.passage_rank == holder.rank
    assert outcome.source == holder.passage.source
    assert reader.answer(QUESTION, [], ReaderContext(None)).reason == (
        "no passage was found for the question"
    )


def test_cli_bad_reranker_folder_exits_2_naming_it(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path, no_env: None
) -> None:
    build_index(settings)
    where = ["--seeds", str(settings.seeds_dir), "--index", str(settings.index_dir)]
    bad = ["--reranker", str(tmp_path / "no-such-cross-encoder")]
    assert main(["ask", "--model", "fake", *where, *bad, QUESTION]) == 2
    assert "no-such-cross-encoder' does not exist" in capsys.readouterr().err
