"""The short answer inside a quoted sentence: the span a learned model ranks first.

Candidates are runs of one to :data:`MAX_SPAN_WORDS` consecutive words of the sentence that do
not cross punctuation (except the comma of 'March 3, 1996') and do not only repeat the question.
Each is described by general features (length, answer type against the question type, distance
to the words the question shares with the sentence, the words around it) and scored by a
logistic model fitted on XQuAD English (:mod:`qa.training`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qa.ask.answer import _DATE, question_type
from qa.ask.logistic import LinearModel
from qa.index.lexical import _stopwords, tokenize

MAX_SPAN_WORDS = 8

#: Question words, in the order they are looked for; "other" when none is found.
_WH = ("who", "when", "where", "how_many", "why", "which", "how", "what", "other")
_WH_PATTERNS = (
    ("how_many", re.compile(r"\bhow (many|much|large|big|long|old|far)\b", re.I)),
    ("when", re.compile(r"\bwhen\b|\b(what|which) (year|date|month|day|century)\b", re.I)),
    ("who", re.compile(r"\bwho(m|se)?\b", re.I)),
    ("where", re.compile(r"\bwhere\b", re.I)),
    ("why", re.compile(r"\bwhy\b", re.I)),
    ("which", re.compile(r"\bwhich\b", re.I)),
    ("how", re.compile(r"\bhow\b", re.I)),
    ("what", re.compile(r"\bwhat\b", re.I)),
)


def wh_word(question: str) -> str:
    """The question word that decides the answer's kind (``"other"`` when none is found)."""
    for name, pattern in _WH_PATTERNS:
        if pattern.search(question):
            return name
    return "other"


SPAN_FEATURES: tuple[str, ...] = (
    "length",
    "single_word",
    "in_question",
    "capitalised",
    "has_digit",
    "is_date",
    "number_for_number",
    "date_for_date",
    "name_for_name",
    "length_for_other",
    "distance",
    "adjacent",
    "after_preposition",
    "clause_end",
    "clause_start",
    "position",
    "starts_with_stop_word",
    "ends_with_stop_word",
    "quoted",
    "next_is_boundary",
    "prev_is_boundary",
    "only_number",
    "only_date",
    "all_capitalised",
    "local_density",
    "anchor_just_before",
    "anchor_just_after",
    "crosses_comma",
    *(f"{wh}_{what}" for wh in _WH for what in ("caps", "digit", "length", "boundary")),
)

_WORD = re.compile(r"[$£€]?\w+(?:[-'’.,/:]\w+)*%?")
_QUANTITY = frozenset(
    ["hundred", "thousand", "million", "billion", "trillion", "percent", "per", "cent", "%"]
)
_PREPOSITIONS = frozenset(
    [
        "in",
        "on",
        "at",
        "by",
        "of",
        "from",
        "to",
        "as",
        "for",
        "with",
        "than",
        "into",
        "during",
        "since",
        "after",
        "before",
        "until",
        "about",
    ]
)


@dataclass(frozen=True, slots=True)
class SpanCandidate:
    """Words ``i..j-1`` of the sentence, at characters ``start:end``."""

    i: int
    j: int
    start: int
    end: int


def _joinable(gap: str, next_word: str) -> bool:
    return gap.isspace() or (gap.strip() == "," and next_word[:1].isdigit() and gap.endswith(" "))


def span_candidates(sentence: str, question: str) -> tuple[list[SpanCandidate], list[str]]:
    """The candidate spans of ``sentence`` and its words."""
    matches = list(_WORD.finditer(sentence))
    words = [m.group(0) for m in matches]
    q_terms = set(tokenize(question))
    out: list[SpanCandidate] = []
    for i in range(len(matches)):
        for j in range(i + 1, min(i + MAX_SPAN_WORDS, len(matches)) + 1):
            if j - 1 > i and not _joinable(
                sentence[matches[j - 2].end() : matches[j - 1].start()], words[j - 1]
            ):
                break
            terms = set(tokenize(" ".join(words[i:j])))
            if not terms or terms <= q_terms:
                continue
            out.append(SpanCandidate(i, j, matches[i].start(), matches[j - 1].end()))
    return out, words


def span_features(
    sentence: str, question: str, cands: list[SpanCandidate], words: list[str]
) -> npt.NDArray[np.float64]:
    """One row of :data:`SPAN_FEATURES` per candidate."""
    # Long: one feature per line, in SPAN_FEATURES order, so the order can be checked by eye
    # against the names the weights file records.
    if not cands:
        return np.zeros((0, len(SPAN_FEATURES)))
    stop = _stopwords()
    kind = question_type(question)
    q_terms = set(tokenize(question))
    stems = [tokenize(w) for w in words]
    anchors = [k for k, s in enumerate(stems) if s and set(s) <= q_terms]
    wh = wh_word(question)
    rows = []
    for c in cands:
        span_words = words[c.i : c.j]
        terms = [t for s in stems[c.i : c.j] for t in s]
        n = c.j - c.i
        text = sentence[c.start : c.end]
        caps = sum(1 for w in span_words if w[:1].isupper()) / n
        digit = any(ch.isdigit() for ch in text)
        date = _DATE.search(text) is not None
        dist = min(min(abs(a - c.i), abs(a - (c.j - 1))) for a in anchors) if anchors else 10
        before = sentence[: c.start].rstrip()
        after = sentence[c.end :].lstrip()
        prev = words[c.i - 1].lower() if c.i > 0 else ""
        nxt = words[c.j].lower() if c.j < len(words) else ""
        next_boundary = not nxt or nxt in stop or after[:1] in (",", ".", ";", ":", ")")
        prev_boundary = not prev or prev in stop or before[-1:] in (",", ";", ":", "(")
        only_number = all(
            any(ch.isdigit() for ch in w) or w.lower() in _QUANTITY for w in span_words
        )
        only_date = (m := _DATE.search(text)) is not None and len(m.group(0)) >= len(text) - 4
        all_caps = all(w[:1].isupper() or w.lower() in stop for w in span_words)
        density = sum(1 for a in anchors if c.i - 4 <= a < c.j + 4) / 8
        interactions = [
            v
            for name in _WH
            for v in (
                (caps, float(digit), math.log(n), float(next_boundary and prev_boundary))
                if name == wh
                else (0.0, 0.0, 0.0, 0.0)
            )
        ]
        rows.append(
            [
                float(n),
                float(n == 1),
                sum(1 for t in terms if t in q_terms) / max(len(terms), 1),
                caps,
                float(digit),
                float(date),
                float(kind == "number" and digit),
                float(kind == "date" and (date or digit)),
                float(kind == "name") * caps,
                float(kind is None) * n,
                math.log1p(dist),
                float(dist == 1),
                float(prev in _PREPOSITIONS),
                float(after[:1] in (",", ".", ";", ")", "") or after[:1] == ":"),
                float(before[-1:] in (",", "(", ":", ";") or not before),
                c.i / max(len(words) - 1, 1),
                float(span_words[0].lower() in stop),
                float(span_words[-1].lower() in stop),
                float(before[-1:] in ('"', "“", "'") and after[:1] in ('"', "”", "'")),
                float(next_boundary),
                float(prev_boundary),
                float(only_number),
                float(only_date),
                float(all_caps),
                density,
                float(any(c.i - 3 <= a < c.i for a in anchors)),
                float(any(c.j <= a < c.j + 3 for a in anchors)),
                float("," in text),
                *interactions,
            ]
        )
    return np.asarray(rows, dtype=np.float64)


def best_span(sentence: str, question: str, model: LinearModel) -> tuple[int, int] | None:
    """Character offsets (within ``sentence``) of the span ``model`` ranks first, or ``None``."""
    cands, words = span_candidates(sentence, question)
    if not cands:
        return None
    scores = model.logits(span_features(sentence, question, cands, words))
    best = cands[int(np.argmax(scores))]
    return best.start, best.end
