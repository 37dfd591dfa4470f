"""The answering seam: any Reader plugs into the one pipeline the service and evaluations use."""

from __future__ import annotations

from collections.abc import Sequence

from qa.ask.answer import Abstention, Answer
from qa.ask.reader import Reader, ReaderContext
from qa.ask.retrieval import Hit
from qa.ask.service import QAService
from qa.config import Settings
from qa.index.builder import build_index


class FirstWordReader:
    """Quotes the first word of the top hit; refuses when there are no hits."""

    def __init__(self) -> None:
        self.contexts: list[ReaderContext] = []

    def answer(
        self, question: str, hits: Sequence[Hit], context: ReaderContext
    ) -> Answer | Abstention:
        self.contexts.append(context)
        if not hits:
            return Abstention("nothing found", 0.0)
        p = hits[0].passage
        end = p.text.find(" ")
        return Answer(
            text=p.text[:end],
            citations=[1],
            rendered=p.text[:end],
            source=p.source,
            start=p.start,
            end=p.start + end,
            score=1.0,
            passage_rank=1,
            support=0.5,
        )


def test_the_service_answers_through_the_reader_it_is_given(settings: Settings) -> None:
    build_index(settings)
    reader = FirstWordReader()
    assert isinstance(reader, Reader)
    service = QAService(settings)
    service._reader = reader
    try:
        result = service.ask("How many US-funded enterprises had Chongqing approved?", k=3)
    finally:
        service.close()
    assert result.answer is not None
    top = result.passages[0].passage
    assert result.answer.text == top.text.split(" ")[0]
    raw = (settings.seeds_dir / top.source).read_text(encoding="utf-8")
    assert raw[result.answer.start : result.answer.end] == result.answer.text
    (context,) = reader.contexts
    assert context.vector is not None
    assert context.sentence_scores is not None
    assert len(context.sentence_scores(result.passages[0].row)) == len(top.sentences)
    assert context.knows is not None
    assert context.knows("Chongqing")
    assert not context.knows("Zanzibar")


def test_passages_only_never_calls_the_reader(settings: Settings) -> None:
    build_index(settings)
    reader = FirstWordReader()
    service = QAService(settings)
    service._reader = reader
    try:
        result = service.ask("Chongqing", answer=False)
    finally:
        service.close()
    assert result.answer is None
    assert result.passages
    assert reader.contexts == []
