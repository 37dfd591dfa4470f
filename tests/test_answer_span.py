"""The short answer span: exact offsets inside the quote, in the JSON API, the page and the
answer template."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa.ask.answerer import load_weights
from qa.ask.spans import best_span, span_candidates
from qa.config import Settings

QUESTION = "How many US-funded enterprises had Chongqing approved?"


def test_candidates_are_exact_and_never_only_repeat_the_question() -> None:
    sentence = "By March 3, 1996, Chongqing had approved 535 US-funded enterprises."
    question = "How many US-funded enterprises had Chongqing approved?"
    spans, words = span_candidates(sentence, question)
    texts = {sentence[c.start : c.end] for c in spans}
    assert "535" in texts
    assert "March 3, 1996" in texts  # the comma before a year joins a date
    assert "Chongqing" not in texts  # the question already says it
    for c in spans:
        text = sentence[c.start : c.end]
        assert text.startswith(words[c.i])
        assert text.endswith(words[c.j - 1])


@pytest.mark.parametrize(
    ("question", "sentence", "expected"),
    [
        (
            "How many enterprises had Chongqing approved?",
            "Chongqing had approved 535 enterprises.",
            "535",
        ),
        (
            "In which year did the festival begin?",
            "The festival was first held in 1987 in Leeds.",
            "1987",
        ),
    ],
)
def test_the_shipped_span_model_finds_the_typed_answer(
    question: str, sentence: str, expected: str
) -> None:
    span = best_span(sentence, question, load_weights().span)
    assert span is not None
    assert sentence[span[0] : span[1]] == expected


def test_no_span_when_the_sentence_only_repeats_the_question() -> None:
    assert (
        best_span("Chongqing approved.", "What did Chongqing approve?", load_weights().span) is None
    )


def test_the_api_gives_the_span_with_exact_offsets_inside_the_answer(
    client: TestClient, seeds_dir: Path
) -> None:
    body = client.post("/api/ask", json={"question": QUESTION}).json()
    answer = body["answer"]
    assert answer is not None
    span = answer["span"]
    assert span is not None
    raw = (seeds_dir / answer["source"]).read_text(encoding="utf-8")
    assert raw[span["start"] : span["end"]] == span["text"]
    assert answer["start"] <= span["start"] < span["end"] <= answer["end"]
    assert len(span["text"]) < len(answer["text"])


def test_the_page_shows_the_span_in_bold_inside_the_sentence(client: TestClient) -> None:
    body = client.post("/api/ask", json={"question": QUESTION}).json()
    span = body["answer"]["span"]
    page = client.get("/", params={"q": QUESTION}).text
    assert f'<strong class="answer-span">{span["text"]}</strong>' in page


def test_the_answer_template_gets_the_span(client: TestClient, settings: Settings) -> None:
    template = settings.index_dir.parent / "span.txt.j2"
    template.write_text("{{ span }} -- {{ answer }}")
    from qa.ask.service import QAService
    from qa.index.builder import build_index

    build_index(settings)
    service = QAService(settings.replace(answer_template=template))
    try:
        a = service.ask(QUESTION).answer
    finally:
        service.close()
    assert a is not None
    assert a.span is not None
    assert a.rendered == f"{a.span.text} -- {a.text}"
