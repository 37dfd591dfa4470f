"""When a name in a question is the text's name spelled another way.

People type names as they remember them: with a letter missing or swapped ('Maastrich',
'ARPNET'), without the accent ('Maiziere'), or as the abbreviation of what the text spells out
('UMC' for 'United Methodist Church', and the reverse). These helpers tell the answer scorer
(:mod:`qa.ask.answer_features`) and the unknown-names rule (:func:`qa.ask.answer.unsupported_terms`)
that such a name is the one the text uses.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

from qa.index.lexical import tokenize

_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9&]{1,7}s?\b")
_CAPWORDS = re.compile(r"[A-Z][\w'’-]*(?:\s+(?:of|for|and|the|de|&)?\s*[A-Z][\w'’-]*)+")
_ARTICLES = frozenset({"The", "A", "An"})
#: Stems shorter than this must be spelled exactly: 'Bob' is not 'Rob'.
MIN_NEAR_STEM = 5


def acronym_of(words: Sequence[str]) -> str:
    """The initials of the capitalised words of a phrase: 'World Health Organization' -> WHO."""
    return "".join(w[0] for w in words if w[:1].isupper())


def _expansions(text: str) -> set[str]:
    """The initials of every capitalised phrase of ``text``, also without a leading 'The'."""
    out = set()
    for m in _CAPWORDS.finditer(text):
        words = m.group(0).split()
        out.add(acronym_of(words))
        if words[0] in _ARTICLES:
            out.add(acronym_of(words[1:]))
    return out


def _acronyms(text: str) -> set[str]:
    return {m.group(0).rstrip("s") for m in _ACRONYM.finditer(text)}


def abbreviation_match(question: str, sentence: str) -> bool:
    """Whether one side spells out an abbreviation the other uses (either direction)."""
    q_acr, s_acr = _acronyms(question), _acronyms(sentence)
    return bool(q_acr & _expansions(sentence) - s_acr) or bool(
        s_acr & _expansions(question) - q_acr
    )


def spelled_out(word: str, text: str) -> bool:
    """Whether ``word`` is an abbreviation ('UMC', 'UMC's') of a capitalised phrase of ``text``."""
    acronym = re.sub(r"['’]s$", "", word)
    return bool(_ACRONYM.fullmatch(acronym)) and acronym.rstrip("s") in _expansions(text)


def _fold(term: str) -> str:
    """``term`` without accents: 'maizièr' -> 'maizier'."""
    return "".join(c for c in unicodedata.normalize("NFKD", term) if not unicodedata.combining(c))


def one_edit_apart(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by at most one inserted, deleted, replaced or swapped
    pair of adjacent letters (Damerau-Levenshtein distance <= 1)."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    swapped = i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    return swapped or a[i + 1 :] == b[i + 1 :]


def near_spelling(word: str, terms: Iterable[str]) -> bool:
    """Whether every stem of ``word`` is one edit (or one accent) from a term of ``terms``
    (stems as :func:`qa.index.lexical.tokenize` makes them); short stems never are."""
    stems = [_fold(s) for s in tokenize(word)]
    if not stems or any(len(s) < MIN_NEAR_STEM for s in stems):
        return False
    folded = _folded(terms if isinstance(terms, frozenset) else frozenset(terms))
    return all(any(one_edit_apart(s, t) for t in folded) for s in stems)


@lru_cache(maxsize=8)
def _folded(terms: frozenset[str]) -> frozenset[str]:
    """``terms`` without accents, once per set (a question's unknown names share its article's
    terms, and the generation hands out the same frozenset for an article)."""
    return frozenset(_fold(t) for t in terms)
