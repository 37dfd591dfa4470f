"""A name spelled another way (qa/ask/spellings.py)."""

from __future__ import annotations

import pytest

from qa.ask.spellings import abbreviation_match, near_spelling, one_edit_apart, spelled_out
from qa.index.lexical import tokenize


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("maastricht", "maastricht", True),
        ("maastrich", "maastricht", True),  # a letter left out
        ("arpanet", "arpnet", True),  # the other way round
        ("beroid", "beriod", True),  # two neighbours swapped
        ("kounalakis", "kounalakys", True),  # one replaced
        ("kounalakis", "kounalaksy", False),  # two replaced
        ("abcd", "badc", False),  # two swaps
        ("abc", "abcde", False),  # two letters more
        ("abcd", "acbd", True),
    ],
)
def test_one_edit_apart(a: str, b: str, expected: bool) -> None:
    assert one_edit_apart(a, b) is expected
    assert one_edit_apart(b, a) is expected


def _terms(text: str) -> frozenset[str]:
    return frozenset(tokenize(text))


def test_near_spelling_allows_one_typo_or_a_missing_accent() -> None:
    article = _terms("Thomas de Maizière signed the Maastricht Treaty for Germany.")
    assert near_spelling("Maastrich", article)
    assert near_spelling("Maiziere", article)
    assert not near_spelling("Lisbon", article)


def test_short_names_must_be_spelled_exactly() -> None:
    # One letter turns one short name into another: 'Rob' is not 'Bob'.
    assert not near_spelling("Bob", _terms("Rob Smith chairs the board."))


def test_every_word_of_a_name_must_be_near() -> None:
    article = _terms("The Maastricht Treaty was signed in 1992.")
    assert near_spelling("Maastrich-Treaty", article)
    assert not near_spelling("Maastrich-Lisbon", article)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("UMC", True),
        ("UMC's", True),
        ("UMCs", True),
        ("UN", False),  # no "U... N..." phrase in the text
        ("Graham", False),  # not an abbreviation at all
    ],
)
def test_spelled_out(word: str, expected: bool) -> None:
    text = "The General Board of the United Methodist Church met in Washington."
    assert spelled_out(word, text) is expected


def test_abbreviation_match_goes_both_ways() -> None:
    sentence = "The World Health Organization (WHO) met in Geneva."
    assert abbreviation_match("What did the WHO decide?", "The World Health Organization met.")
    assert abbreviation_match("What did the World Health Organization decide?", "The WHO met.")
    # Both sides use the abbreviation: nothing is spelled out, so no match is claimed.
    assert not abbreviation_match("What did the WHO decide?", sentence)
    assert not abbreviation_match("What did the IMF decide?", sentence)
