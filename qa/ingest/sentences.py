"""Sentence boundaries with character offsets, tuned for English news text.

A small rule-based splitter: line breaks always end a sentence; ``. ! ?`` (and their CJK forms)
end one when followed by space and something that can start a sentence, unless the word before
is a known abbreviation or an initial.
"""

from __future__ import annotations

import re

Span = tuple[int, int]

_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "co",
        "corp",
        "inc",
        "ltd",
        "plc",
        "llc",
        "no",
        "nos",
        "vs",
        "etc",
        "eg",
        "ie",
        "al",
        "fig",
        "gov",
        "gen",
        "sen",
        "rep",
        "lt",
        "col",
        "capt",
        "sgt",
        "mt",
        "ft",
        "dept",
        "univ",
        "approx",
        "est",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
        "u.n",
        "e.u",
        "p.m",
        "a.m",
        "d.c",
    ]
)
_TERMINATOR = re.compile(r"[.!?。！？]+[\"'”’)\]]*")
_CJK_END = frozenset("。！？")


def _ends_sentence(text: str, term_start: int, term_end: int) -> bool:
    """Whether the terminator ``text[term_start:term_end]`` really ends a sentence."""
    if text[term_start] in _CJK_END:
        return True
    nxt = term_end
    if nxt < len(text) and not text[nxt].isspace():
        return False
    while nxt < len(text) and text[nxt] in " \t\u00a0":
        nxt += 1
    if nxt < len(text) and text[nxt].islower():
        return False
    if text[term_start] == ".":
        word_start = term_start
        while word_start > 0 and (text[word_start - 1].isalpha() or text[word_start - 1] == "."):
            word_start -= 1
        word = text[word_start:term_start].lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and text[word_start].isupper()):
            return False
    return True


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Spans ``(s, e)`` of the sentences in ``text[start:end]``, trimmed of surrounding space.

    Every non-space character of the range lies in exactly one span.
    """
    stop = len(text) if end is None else end
    spans: list[Span] = []
    line_start = start
    while line_start < stop:
        nl = text.find("\n", line_start, stop)
        line_end = stop if nl < 0 else nl
        sent_start = line_start
        for m in _TERMINATOR.finditer(text, line_start, line_end):
            if _ends_sentence(text, m.start(), m.end()):
                _append(text, spans, sent_start, m.end())
                sent_start = m.end()
        _append(text, spans, sent_start, line_end)
        line_start = line_end + 1
    return spans


def _append(text: str, spans: list[Span], s: int, e: int) -> None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    if s < e:
        spans.append((s, e))
