"""The span reader re-reading the best sentences (``qa.ask.reread``)."""

from __future__ import annotations

from collections.abc import Sequence

from qa.ask.answer_features import candidates
from qa.ask.reread import read_context, reread
from qa.ask.retrieval import Hit
from qa.ask.span_decode import SpanChoice
from tests.hits import passage_hit

TEXT = "Chongqing lies on the Yangtze. It is 82,400 km2 large with 33.43 million people."


def _hit(text: str = TEXT) -> Hit:
    return passage_hit(text, start=40)


def test_a_sentence_opening_with_a_pronoun_is_read_after_the_one_before() -> None:
    first, second = candidates([_hit()], None, passages=1)
    assert read_context(first) == (first.text, (0, len(first.text)))
    context, (lo, hi) = read_context(second)
    assert context == TEXT
    assert context[lo:hi] == second.text == "It is 82,400 km2 large with 33.43 million people."


def test_a_pronoun_inside_a_word_or_first_in_the_passage_is_not_a_lead() -> None:
    (alone,) = candidates([_hit("Itineraries were printed.")], None, passages=1)
    assert read_context(alone) == (alone.text, (0, len(alone.text)))
    (opening,) = candidates([_hit("It rained.")], None, passages=1)
    assert read_context(opening) == (opening.text, (0, len(opening.text)))


class _Finder:
    """Reads the last word of the window, with a margin of 2 for the pronoun sentence."""

    reads_no_answer = True
    weights_sha256 = None
    precision = "fp32"

    def __init__(self) -> None:
        self.read: list[tuple[str, tuple[int, int]]] = []

    def find(
        self, question: str, context: str, window: tuple[int, int] | None = None
    ) -> SpanChoice | None:
        return self.find_many([(question, context, window or (0, len(context)))])[0]

    def find_many(
        self, items: Sequence[tuple[str, str, tuple[int, int]]]
    ) -> list[SpanChoice | None]:
        out: list[SpanChoice | None] = []
        for _, context, (lo, hi) in items:
            self.read.append((context, (lo, hi)))
            end = hi - 1  # before the full stop
            start = context.rindex(" ", lo, end) + 1
            out.append(SpanChoice(start, end, 2.0 if lo else 1.0, 0.0))
        return out


def test_spans_read_with_a_lead_come_back_in_the_sentences_own_offsets() -> None:
    cands = candidates([_hit()], None, passages=1)
    finder = _Finder()
    read = reread(finder, "How many people live in Chongqing?", cands, [0.0, 0.1], weight=1.0)
    assert read is not None
    assert [window for _, window in finder.read] == [(31, len(TEXT)), (0, 30)]
    assert read.chosen == 1
    assert read.read is not None
    assert cands[1].text[read.read.start : read.read.end] == "people"
    assert read.margin == 2.0
