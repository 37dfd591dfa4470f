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


class _Reader:
    """A stand-in span reader trained with negatives; subclasses say what it reads."""

    reads_no_answer = True
    weights_sha256 = None
    precision = "fp32"

    def find(
        self, question: str, context: str, window: tuple[int, int] | None = None
    ) -> SpanChoice | None:
        return self.find_many([(question, context, window or (0, len(context)))])[0]

    def find_many(
        self, items: Sequence[tuple[str, str, tuple[int, int]]]
    ) -> list[SpanChoice | None]:
        raise NotImplementedError


class _Finder(_Reader):
    """Reads the last word of the window, with a margin of 2 for the pronoun sentence."""

    def __init__(self) -> None:
        self.read: list[tuple[str, tuple[int, int]]] = []

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


FOUR = "Ann sings. Bob reads. Cid swims. Dan rows."


class _Judge(_Reader):
    """Reads each sentence's last word with the margin ``margins`` gives its first word."""

    def __init__(self, margins: dict[str, float]) -> None:
        self.margins = margins
        self.calls: list[list[str]] = []

    def find_many(
        self, items: Sequence[tuple[str, str, tuple[int, int]]]
    ) -> list[SpanChoice | None]:
        self.calls.append([context[lo:hi] for _, context, (lo, hi) in items])
        out: list[SpanChoice | None] = []
        for _, context, (lo, hi) in items:
            start = context.rindex(" ", lo, hi) + 1
            margin = self.margins[context[lo:hi].split()[0]]
            out.append(SpanChoice(start, hi - 1, margin, 0.0))
        return out


LOGITS = [3.0, 2.0, 1.0, 0.0]  # the sentence model's order: Ann, Bob, Cid, Dan


def test_when_no_sentence_read_answers_the_next_ones_get_a_second_look() -> None:
    cands = candidates([_hit(FOUR)], None, passages=1)
    judge = _Judge({"Ann": -3.0, "Bob": -2.0, "Cid": 4.0, "Dan": -1.0})
    read = reread(judge, "Who swims?", cands, LOGITS, count=2, weight=1.0, second_look=2)
    assert read is not None
    assert judge.calls == [["Ann sings.", "Bob reads."], ["Cid swims.", "Dan rows."]]
    # Cid: 1 + 4 beats Ann: 3 - 3; the margin is the best of the four read.
    assert cands[read.chosen].text == "Cid swims."
    assert read.read is not None
    assert cands[read.chosen].text[read.read.start : read.read.end] == "swims"
    assert read.margin == 4.0


def test_a_sentence_read_as_answering_ends_the_reading() -> None:
    cands = candidates([_hit(FOUR)], None, passages=1)
    judge = _Judge({"Ann": -3.0, "Bob": 0.5, "Cid": 9.0, "Dan": 9.0})
    read = reread(judge, "Who reads?", cands, LOGITS, count=2, weight=1.0, second_look=2)
    assert read is not None
    assert judge.calls == [["Ann sings.", "Bob reads."]]
    assert cands[read.chosen].text == "Bob reads."
    assert read.margin == 0.5


def test_no_second_look_when_switched_off() -> None:
    cands = candidates([_hit(FOUR)], None, passages=1)
    judge = _Judge({"Ann": -3.0, "Bob": -1.5, "Cid": 4.0, "Dan": -1.0})
    read = reread(judge, "Who swims?", cands, LOGITS, count=2, weight=1.0, second_look=0)
    assert read is not None
    assert len(judge.calls) == 1
    assert cands[read.chosen].text == "Bob reads."  # 2 - 1.5 beats 3 - 3
    assert read.margin == -1.5
