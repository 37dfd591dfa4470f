"""Extractive answers: verbatim spans with offsets, citations, abstention, templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa.ask.answer import Answer, extract_answer
from qa.ask.pipeline import load_reader
from qa.ask.reader import ReaderContext
from qa.ask.retrieval import Hit
from qa.ask.service import QAService
from qa.config import DEFAULT_TEMPLATE, Settings
from qa.errors import ConfigError
from qa.index.builder import build_index
from qa.ingest.passages import Passage


@pytest.fixture
def lexical(settings: Settings) -> Settings:
    """BM25 retrieval: with the hashing fake embedder, dense rankings carry little meaning."""
    return settings.replace(retrieval_mode="bm25")


@pytest.fixture
def service(lexical: Settings):
    build_index(lexical)
    svc = QAService(lexical)
    yield svc
    svc.close()


def test_answer_is_a_verbatim_cited_span(service: QAService, settings: Settings) -> None:
    result = service.ask("How many US-funded enterprises had Chongqing approved?", k=5)
    a = result.answer
    assert a is not None
    raw = (settings.seeds_dir / a.source).read_bytes().decode("utf-8")
    assert raw[a.start : a.end] == a.text
    assert "535" in a.text
    assert a.citations
    for n in a.citations:
        p = result.passages[n - 1].passage
        assert p.source == a.source
        assert p.start <= a.start
        assert a.end <= p.end
    assert a.rendered == a.text + "".join(f" [{n}]" for n in a.citations)


PRONOUN_SENTENCES = [
    "Hanchang is a port city in the south of China.",
    "It signed a sister-city agreement with Little Rock in 1990.",
    "The weather in the region is mild in winter.",
]


@pytest.mark.parametrize("scorer", ["learned", "handset"])
def test_pronoun_sentence_brings_its_antecedent(scorer: str) -> None:
    hit = _one_passage_hit("Sister cities", PRONOUN_SENTENCES)
    reader = load_reader(Settings(answer_scorer=scorer, answer_threshold=0.0))
    for question, cosines, quoted in [
        # The answer sentence says "It": the sentence naming the city comes with it.
        (
            "Which city signed a sister-city agreement with Little Rock in 1990?",
            [0.2, 0.9, 0.1],
            PRONOUN_SENTENCES[:2],
        ),
        # A sentence that does not lean back is quoted alone.
        ("What is the weather like in winter?", [0.1, 0.2, 0.9], PRONOUN_SENTENCES[2:]),
    ]:
        context = ReaderContext(np.zeros(4, dtype=np.float32), lambda _row, c=cosines: c)
        answer = reader.answer(question, [hit], context)
        assert isinstance(answer, Answer)
        assert answer.text == " ".join(quoted)
        assert hit.passage.text[answer.start : answer.end] == answer.text


def test_abstains_below_the_threshold(settings: Settings) -> None:
    build_index(settings)
    svc = QAService(settings.replace(answer_threshold=0.99))
    result = svc.ask("Who won the 2022 World Cup?")
    assert result.answer is None
    assert result.abstain_reason is not None
    assert "0.99" in result.abstain_reason
    assert result.passages  # passages are still shown
    svc.close()


def test_custom_template(lexical: Settings, tmp_path: Path) -> None:
    settings = lexical
    template = tmp_path / "mine.txt.j2"
    template.write_text(
        "{{ answer|upper }} (sources: {{ citations|map(attribute='source')|join(', ') }})"
    )
    build_index(settings)
    svc = QAService(settings.replace(answer_template=template))
    a = svc.ask("How many US-funded enterprises had Chongqing approved?").answer
    assert a is not None
    assert a.rendered.startswith(a.text.upper())
    assert "(sources: 004_e482e4571cd424a3.txt" in a.rendered
    svc.close()


def test_template_cannot_reach_python_internals(settings: Settings, tmp_path: Path) -> None:
    template = tmp_path / "evil.txt.j2"
    template.write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    build_index(settings)
    svc = QAService(settings.replace(answer_template=template))
    with pytest.raises(ConfigError, match="failed to render"):
        svc.ask("How many US-funded enterprises had Chongqing approved?")
    svc.close()


def test_missing_template_is_named(settings: Settings, tmp_path: Path) -> None:
    build_index(settings)
    svc = QAService(settings.replace(answer_template=tmp_path / "nope.j2"))
    with pytest.raises(ConfigError, match=r"nope\.j2' does not exist"):
        svc.ask("Chongqing?")
    svc.close()


def test_a_question_about_the_update_date_gets_the_date_line(
    service: QAService, settings: Settings
) -> None:
    result = service.ask(
        "When was the article on the California and Baja California delegation to Changchun "
        "updated?"
    )
    a = result.answer
    assert a is not None
    assert a.source == "002_1f562bc15a6ce5b9.txt"
    assert "2023-08-28" in a.text
    raw = (settings.seeds_dir / a.source).read_text(encoding="utf-8")
    assert raw[a.start : a.end] == a.text


def test_a_question_about_the_headline_gets_the_title_line(service: QAService) -> None:
    result = service.ask(
        "According to its headline, what is the Midwest USA striving for with Chongqing?"
    )
    a = result.answer
    assert a is not None
    assert a.text == result.passages[a.passage_rank - 1].passage.title
    assert "Win-Win Collaboration" in a.text


def _one_passage_hit(title: str, sentences: list[str]) -> Hit:
    text = " ".join(sentences)
    spans, pos = [], 0
    for sentence in sentences:
        spans.append((pos, pos + len(sentence)))
        pos += len(sentence) + 1
    passage = Passage(
        chunk_id="c0",
        source="a.txt",
        title=title,
        date=None,
        start=0,
        end=len(text),
        text=text,
        embed_hash="h0",
        tokens=len(text.split()),
        sentences=tuple(spans),
    )
    return Hit(rank=1, row=0, passage=passage, score=1.0, dense_score=0.6, lexical_score=None)


def test_the_title_of_something_else_is_not_the_headline() -> None:
    # The headline and the seminar's sentence are equally similar to the question; only a
    # headline bonus given to "the title of the seminar" would make the headline win.
    title = "Delegates visit Yongchuan"
    hit = _one_passage_hit(
        title,
        [title, 'A seminar titled "Dialogue on Inland Opening" was held in Yongchuan.'],
    )
    common = {"threshold": 0.0, "template": DEFAULT_TEMPLATE, "sentence_scores": {0: [0.6, 0.6]}}
    seminar = extract_answer("What was the title of the seminar in Yongchuan?", [hit], **common)
    assert isinstance(seminar, Answer)
    assert "Dialogue on Inland Opening" in seminar.text
    headline = extract_answer("What was the headline of the Yongchuan article?", [hit], **common)
    assert isinstance(headline, Answer)
    assert headline.text == title
