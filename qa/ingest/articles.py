"""From a seed file's text to an :class:`Article`: metadata and the spans worth indexing.

Nothing here rewrites text. Site chrome (navigation crumbs, font controls, repeated photo
captions, editor lines) is left out by choosing which spans of the original text are
indexable, so every offset still points into the file exactly as it is on disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime

from qa.ingest.htmltext import html_segments
from qa.ingest.seeds import SeedFile

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Article:
    """An article ready for chunking: its text, metadata and indexable ``text[start:end]`` spans."""

    source: str
    text: str
    content_hash: str
    title: str | None = None
    date: str | None = None
    publisher: str | None = None
    segments: tuple[Span, ...] = field(default_factory=tuple)
    #: Spans left out as site chrome: not indexed, but the article does say them.
    chrome: tuple[Span, ...] = field(default_factory=tuple)


# Lines that are site furniture, never content.
_CHROME = [
    re.compile(r"^\s*Home\s*>", re.I),  # breadcrumbs: "Home > News > Contents"
    re.compile(r"^\s*【?\s*Fonts?\s*[:：]", re.I),  # "【Fonts: A+ A A- Print"
    re.compile(r"\bfontLarger\b|\bfontSmaller\b"),
    re.compile(r"^\s*(A\+\s*A\s*A-|Print|Share|Close)\s*$", re.I),
    re.compile(r"^\s*Welcome to\b.*\|"),  # site header with a language switch
    re.compile(
        r"^\s*(Editor|Editors|Edited by|Chief editor|Proofread by|Translated by)\s*[:：]", re.I
    ),
]

_DATE_LINE = re.compile(
    r"(?P<label>Published|Updated|Add Time|Release Time|Posted|Date)\s*[:：]\s*"
    r"(?P<value>[A-Za-z]{3,9}\.? \d{1,2},? \d{4}(?: \d{1,2}:\d{2}(?::\d{2})?\s*[AP]M)?"
    r"|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?)",
    re.I,
)
# "Soruce" is a misspelling found in real pages; accept it rather than lose the publisher.
_SOURCE_LINE = re.compile(
    r"(?<![A-Za-z])(?:Source|Soruce)\s*[:：]\s*(?P<value>.+?)"
    r"\s*(?=(?:Author|Add Time|Updated|Published|Editor)\s*[:：]|$)",
    re.I,
)
_DATE_FORMATS = (
    "%B %d, %Y %I:%M %p",
    "%B %d, %Y",
    "%b %d, %Y %I:%M %p",
    "%b %d, %Y",
    "%B %d %Y",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
)


def parse_date(value: str) -> str | None:
    """Normalise a date as written in the seeds to ISO 8601 (``YYYY-MM-DD``), or ``None``."""
    cleaned = re.sub(r"\s+", " ", value).strip()
    # "Sept. 5, 2023": drop the abbreviation's dot; ISO-like "2023.08.28" is tried as written.
    for candidate in (cleaned, cleaned.replace(".", "")):
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(candidate, fmt).date().isoformat()
            except ValueError:
                continue
    return None


def is_date_line(text: str) -> bool:
    """Whether ``text`` holds a labelled date, such as "Updated: 2023-08-28"."""
    return _DATE_LINE.search(text) is not None


def _is_chrome(line: str) -> bool:
    return any(p.search(line) for p in _CHROME)


def _is_byline(line: str) -> bool:
    """A short closing line without sentence punctuation: a byline such as 'Global Times'."""
    words = line.split()
    return 0 < len(words) <= 4 and not re.search(r"[.!?:;,\"“”()]", line)


def _lines(text: str) -> list[Span]:
    """Spans of each line (without its newline) of ``text``."""
    spans: list[Span] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        spans.append((pos, pos + len(body)))
        pos += len(line)
    return spans


def _strip_span(text: str, start: int, end: int) -> Span:
    while start < end and (text[start].isspace() or text[start] == "\ufeff"):
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def parse_article(seed: SeedFile) -> Article:
    """Find the title, date, publisher and indexable spans of one seed file.

    A title or date in the file's metadata (PDF, Word) wins over what the text suggests.
    """
    suffix = seed.path.suffix.lower()
    if suffix in (".html", ".htm"):
        html_title, candidates = html_segments(seed.text)
    else:
        html_title, candidates = None, _lines(seed.text)
    kept, dropped, first_line = _drop_chrome(seed.text, candidates)
    title = seed.meta_title or html_title or first_line
    if title is not None and suffix in (".md", ".markdown"):
        title = title.lstrip("#").strip() or None
    article = _with_metadata(seed, title, kept, [seed.text[s:e] for s, e in kept])
    return replace(article, chrome=tuple(dropped), date=seed.meta_date or article.date)


def _drop_chrome(text: str, candidates: list[Span]) -> tuple[list[Span], list[Span], str | None]:
    """Split candidate spans into content and chrome; also find the first line fit for a title."""
    kept: list[Span] = []
    dropped: list[Span] = []
    seen: set[str] = set()
    title: str | None = None
    for raw_start, raw_end in candidates:
        start, end = _strip_span(text, raw_start, raw_end)
        line = text[start:end]
        if not line:
            continue
        key = " ".join(line.split()).lower()
        if _is_chrome(line) or key in seen:
            # Repeated lines are duplicated photo captions and the like: index them once.
            dropped.append((start, end))
            continue
        seen.add(key)
        if title is None and not _DATE_LINE.search(line) and not _SOURCE_LINE.search(line):
            title = line
        kept.append((start, end))
    return kept, dropped, title


def _with_metadata(
    seed: SeedFile, title: str | None, kept: list[Span], lines: list[str]
) -> Article:
    date = publisher = None
    for line in lines[:12]:
        if date is None and (m := _DATE_LINE.search(line)):
            date = parse_date(m.group("value"))
        if publisher is None and (m := _SOURCE_LINE.search(line)):
            publisher = m.group("value").strip() or None
    if publisher is None and len(lines) > 1 and _is_byline(lines[-1]) and lines[-1] != title:
        publisher = lines[-1]
    return Article(
        source=seed.source,
        text=seed.text,
        content_hash=seed.content_hash,
        title=title,
        date=date,
        publisher=publisher,
        segments=_merge_lines(seed.text, kept),
    )


def _merge_lines(text: str, kept: list[Span]) -> tuple[Span, ...]:
    """Join consecutive kept lines into segments; a dropped line between two kept ones splits them.

    A passage never crosses a segment boundary, so chrome never appears inside a passage.
    """
    segments: list[Span] = []
    for start, end in kept:
        if segments:
            prev_start, prev_end = segments[-1]
            if not text[prev_end:start].strip():
                segments[-1] = (prev_start, end)
                continue
        segments.append((start, end))
    return tuple(segments)
