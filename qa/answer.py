"""The extractive answer: the sentence (or two) of the top passages that best answers the question.

Sentences are scored against the question itself, not just their passage: the share of the
question's informative words (IDF-weighted, stemmed) the sentence contains, plus a bonus when
its content fits the question's type (a number for "how many", a date for "when"), plus the
semantic similarity of its passage to the question. The answer is a verbatim span of a cited
passage with its own offsets. When the best passage is not similar enough to the question, the
answer is withheld: the threshold comes from calibration on the evaluation question set.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from qa.errors import ConfigError
from qa.lexical import tokenize
from qa.retrieval import Hit
from qa.sentences import split_sentences

#: How many of the top passages are searched for an answer sentence.
ANSWER_PASSAGES = 3

_NUMBER = re.compile(r"\d")
_YEAR_OR_DATE = re.compile(
    r"\b(1[89]\d\d|20\d\d)\b|\b(January|February|March|April|May|June|July|August|September|"
    r"October|November|December)\b",
)
_PROPER = re.compile(r"\b[A-Z][a-z]+")


@dataclass(frozen=True, slots=True)
class Answer:
    """An extractive answer: ``text`` is exactly ``source text[start:end]``."""

    text: str
    citations: list[int]
    rendered: str
    source: str
    start: int
    end: int
    score: float
    passage_rank: int


@dataclass(frozen=True, slots=True)
class Abstention:
    """No answer, and why."""

    reason: str
    score: float


@dataclass(frozen=True, slots=True)
class _Candidate:
    hit: Hit
    start: int  # offsets in the source file
    end: int
    score: float


def _question_type(question: str) -> str | None:
    q = question.lower()
    if re.search(r"\bhow (many|much|large|big|long|old)\b|\bwhat (percentage|number|amount)", q):
        return "number"
    if re.search(r"\bwhen\b|\bwhat (year|date|month|day)\b|\bwhich (year|date|month)\b", q):
        return "date"
    if re.search(r"\bwho\b|\bwhose\b|\bwhom\b", q):
        return "person"
    return None


def _type_bonus(kind: str | None, sentence: str) -> float:
    if kind == "number":
        return 0.15 if _NUMBER.search(sentence) else 0.0
    if kind == "date":
        return 0.15 if _YEAR_OR_DATE.search(sentence) else 0.0
    if kind == "person":
        return 0.1 if len(_PROPER.findall(sentence)) >= 2 else 0.0
    return 0.0


def _idf(term: str, df: dict[str, int], n: int) -> float:
    return math.log(1 + (n - df.get(term, 0) + 0.5) / (df.get(term, 0) + 0.5))


def extract_answer(
    question: str,
    hits: list[Hit],
    *,
    threshold: float,
    template: Path,
    passages: int = ANSWER_PASSAGES,
) -> Answer | Abstention:
    """The best-supported answer span among the top ``passages`` hits, or why there is none."""
    if not hits:
        return Abstention("no passage matches the question", 0.0)
    top = hits[:passages]
    best_support = max(h.dense_score if h.dense_score is not None else 0.0 for h in top)
    q_terms = set(tokenize(question))
    if best_support < threshold:
        return Abstention(
            f"the passages found are not close enough to the question "
            f"(best similarity {best_support:.2f}, needed {threshold:.2f})",
            best_support,
        )
    # Document frequencies over the candidate sentences: words in every sentence say little.
    sentences: list[tuple[Hit, int, int, set[str]]] = []
    for hit in top:
        p = hit.passage
        for s, e in split_sentences(p.text):
            sentences.append((hit, p.start + s, p.start + e, set(tokenize(p.text[s:e]))))
    df: dict[str, int] = {}
    for *_, terms in sentences:
        for t in terms:
            df[t] = df.get(t, 0) + 1
    weights = {t: _idf(t, df, len(sentences)) for t in q_terms}
    total = sum(weights.values()) or 1.0
    kind = _question_type(question)
    candidates: list[_Candidate] = []
    for hit, start, end, terms in sentences:
        overlap = sum(w for t, w in weights.items() if t in terms) / total
        text = hit.passage.text[start - hit.passage.start : end - hit.passage.start]
        support = hit.dense_score if hit.dense_score is not None else 0.0
        score = overlap + _type_bonus(kind, text) + 0.5 * support
        candidates.append(_Candidate(hit, start, end, score))
    best = max(candidates, key=lambda c: c.score)
    start, end = best.start, best.end
    # A sentence that starts with a pronoun leans on the one before it: include that one too.
    text = _slice(best.hit, start, end)
    if re.match(r"(He|She|It|They|This|These|That|Those|The two)\b", text):
        prev = [c for c in candidates if c.hit is best.hit and c.end <= start]
        if prev:
            start = prev[-1].start
    text = _slice(best.hit, start, end)
    citations = [
        h.rank
        for h in hits
        if h.passage.source == best.hit.passage.source
        and h.passage.start <= start
        and end <= h.passage.end
    ]
    rendered = render_answer(template, question=question, answer=text, hits=hits, cited=citations)
    return Answer(
        text=text,
        citations=citations,
        rendered=rendered,
        source=best.hit.passage.source,
        start=start,
        end=end,
        score=round(best.score, 4),
        passage_rank=best.hit.rank,
    )


def _slice(hit: Hit, start: int, end: int) -> str:
    p = hit.passage
    return p.text[start - p.start : end - p.start]


@lru_cache(maxsize=8)
def _environment(folder: str) -> SandboxedEnvironment:
    # Sandboxed: users may point the settings at their own template.
    return SandboxedEnvironment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(enabled_extensions=("html", "htm")),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )


def render_answer(
    template: Path, *, question: str, answer: str, hits: list[Hit], cited: list[int]
) -> str:
    """Render the answer template with the answer text and its numbered citations."""
    if not template.is_file():
        raise ConfigError(f"answer template '{template}' does not exist")
    env = _environment(str(template.parent.resolve()))
    by_rank = {h.rank: h for h in hits}
    citations = [
        {
            "number": n,
            "source": by_rank[n].passage.source,
            "title": by_rank[n].passage.title,
            "date": by_rank[n].passage.date,
            "start": by_rank[n].passage.start,
            "end": by_rank[n].passage.end,
        }
        for n in cited
    ]
    try:
        out = env.get_template(template.name).render(
            question=question, answer=answer, citations=citations
        )
    except Exception as exc:
        raise ConfigError(f"answer template '{template}' failed to render: {exc}") from exc
    return out.strip()
