"""Safe HTML fragments for the templates: highlighted passages and document links.

Everything here escapes text first and only then adds markup, so nothing from a question or a
seed file can become HTML.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from markupsafe import Markup, escape

_WORD = re.compile(r"\w+")
# Words that would light up every passage; kept short and English like the seeds.
_STOPWORD_TEXT = """
a an and are as at be been but by can could did do does for from had has have how i if in into is
it its me my no not of on or our so than that the their them then there these they this those to
was we were what when where which who whom whose why will with would you your about after before
tell give list name
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def question_terms(question: str) -> list[str]:
    """The question's words worth highlighting, longest first (so longer matches win)."""
    words = {w.lower() for w in _WORD.findall(question)}
    kept = {w for w in words if w not in _STOPWORDS and (len(w) > 2 or not w.isascii())}
    return sorted(kept, key=lambda w: (-len(w), w))


def _pattern(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    parts = []
    for term in terms:
        if term.isascii():
            # Whole words and their inflections: "visit" marks "visited" but not "revisit".
            parts.append(rf"\b{re.escape(term)}\w*")
        else:
            # Scripts without spaces between words (Chinese, Japanese) match anywhere.
            parts.append(re.escape(term))
    return re.compile("|".join(parts), re.IGNORECASE)


def highlight(text: str, question: str) -> Markup:
    """``text`` as HTML with the question's words wrapped in ``<mark>``."""
    pattern = _pattern(question_terms(question))
    if pattern is None:
        return escape(text)
    out: list[str] = []
    pos = 0
    for match in pattern.finditer(text):
        out.append(escape(text[pos : match.start()]))
        out.append(Markup("<mark>%s</mark>") % match.group())
        pos = match.end()
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def document_url(source: str, start: int | None = None, end: int | None = None, q: str = "") -> str:
    """The page of ``source`` with the passage ``[start:end]`` highlighted and scrolled to."""
    url = "/documents/" + quote(source, safe="/")
    params: dict[str, str | int] = {}
    if start is not None and end is not None:
        params.update(start=start, end=end)
    if q:
        params["q"] = q
    if params:
        url += "?" + urlencode(params)
    return url + ("#hl" if start is not None else "")


def search_url(q: str, k: int | None = None) -> str:
    """The results page for question ``q``."""
    params: dict[str, str | int] = {"q": q}
    if k is not None:
        params["k"] = k
    return "/?" + urlencode(params)
