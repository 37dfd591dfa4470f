"""The extractive answer: the sentence (or two) of the top passages that best answers the question.

Sentences are scored against the question itself, not just their passage: the cosine of the
sentence's vector (pooled at build time from its passage's contextual token embeddings, so it
costs no inference at query time) with the question's vector, the share of the question's
informative words (IDF-weighted, stemmed) the sentence contains, and a bonus when it holds a new
entity of the asked type (a number for "how many", a date for "when", a name for "who").
A question about the article itself ("according to its headline", "when was it updated")
prefers the article's title line or its labelled date line.
The answer is a verbatim span of a cited passage with its own offsets. When no sentence is
similar enough to the question, the answer is withheld; the threshold is calibrated on the
evaluation question set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from qa.ask.retrieval import Hit
from qa.ask.spellings import near_spelling, spelled_out
from qa.errors import ConfigError
from qa.index.lexical import tokenize
from qa.ingest.articles import is_date_line
from qa.ingest.sentences import split_sentences

#: How many of the top passages are searched for an answer sentence.
ANSWER_PASSAGES = 3

#: Weights of the sentence score, chosen on the seeds question set (see docs/quality.md).
W_SEMANTIC = 1.0  # cosine of the sentence's (contextual) vector with the question
W_LEXICAL = 0.75  # IDF-weighted share of the question's words found in the sentence
W_TYPE = 0.3  # the sentence holds a new entity of the asked type (a number for "how many")
W_NOVEL = 0.5  # share of the sentence's words the question does not already say
W_RANK = 0.1  # per rank below the first passage
W_META = 0.5  # the question asks for the headline or the date line, and this is it

# Questions about the article itself rather than its story: its headline, or when it appeared.
_ASKS_TITLE = re.compile(
    r"\bheadlines?\b|\bits title\b|\b(article|story|report|page)'s title\b"
    r"|\btitle of (the|this|that) (\S+ ){0,3}?(article|story|report|page|piece|post)\b",
    re.I,
)
_ASKS_DATE_LINE = re.compile(r"\b(published|updated|added|posted|released|dated)\b", re.I)
_NUMBER = re.compile(r"\d[\d,.]*")
_DATE = re.compile(
    r"\b(1[89]\d\d|20\d\d)\b|\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d",
)
_NAME = re.compile(r"(?<=[\s(“\"])[A-Z][\w’'-]+(?:\s+[A-Z][\w’'-]+)*")  # not sentence-initial
_NUMBER_WORDS = r"(area|population|size|value|amount|number|percentage|total|share|volume|count)"
_NAME_WORDS = (
    r"(city|cities|district|province|state|country|company|organi[sz]ation|venue|event|session|"
    r"agency|bank|body|office|official|university|firm|chamber|mission|person|group|forum)"
)


@dataclass(frozen=True, slots=True)
class AnswerSpan:
    """The short answer inside the quoted sentence: ``text`` is ``source text[start:end]``."""

    text: str
    start: int
    end: int


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
    #: Best sentence similarity to the question: what the abstention threshold is compared to.
    support: float
    #: The shortest exact span of the quote that answers (a name, number, date), if found.
    span: AnswerSpan | None = None


@dataclass(frozen=True, slots=True)
class Abstention:
    """No answer, and why."""

    reason: str
    support: float
    #: The answer that would have been given without the refusal (for measuring refusals).
    best: Answer | None = None


@dataclass(frozen=True, slots=True)
class _Sentence:
    hit: Hit
    start: int  # offsets in the source file
    end: int
    text: str
    terms: frozenset[str]
    semantic: float


def question_type(question: str) -> str | None:
    """The kind of answer a question asks for: number, date, name, or ``None`` (anything)."""
    q = question.lower()
    if re.search(
        rf"\bhow (many|much|large|big|long|old|far)\b|\bwhat (is the )?{_NUMBER_WORDS}", q
    ):
        return "number"
    if re.search(r"\bwhen\b|\b(what|which) (year|date|month|day)\b|\bsince (when|which)\b", q):
        return "date"
    if re.search(
        rf"\bwho\b|\bwhose\b|\bwhom\b|\bwhere\b|\bname of\b|\b(which|what) {_NAME_WORDS}\b", q
    ):
        return "name"
    return None


def _has_new_entity(kind: str | None, sentence: str, question: str) -> bool:
    """Whether the sentence holds something of the asked type that the question does not."""
    if kind is None:
        return False
    pattern = {"number": _NUMBER, "date": _DATE, "name": _NAME}[kind]
    q = question.lower()
    q_terms = set(tokenize(question))
    for m in pattern.finditer(sentence):
        found = m.group(0)
        if found.lower() in q:
            continue
        if kind == "name" and set(tokenize(found)) <= q_terms:
            continue  # a name the question already gives is not an answer to it
        return True
    return False


_KEY_NAME = re.compile(r"(?<=[\s(“\"])[A-Z][\w’'-]+")  # capitalised, not the first word
_KEY_NUMBER = re.compile(r"\b\d{2,}(?:[,.]\d+)*\b")


def unsupported_terms(
    question: str,
    *,
    known: Callable[[str], bool],
    article_terms: frozenset[str],
    hits: Sequence[Hit] = (),
) -> list[str]:
    """Names the index never mentions and numbers the answer's article never mentions.

    A question about 'Texas' over articles that never say 'Texas', or about a 2023 figure in an
    article that never says 2023, cannot be answered from them, however similar the text is.
    A name spelled another way is not missing: one typo or accent from a word of the answer's
    article ('Maastrich'), or the abbreviation of a capitalised phrase of ``hits``, the
    passages found ('UMC' for 'United Methodist Church'); see :mod:`qa.ask.spellings`.
    """
    unknown = [m.group(0) for m in _KEY_NAME.finditer(question) if not known(m.group(0))]
    if unknown:  # the passages' text only when a name needs it
        text = "\n".join(f"{h.passage.title or ''}\n{h.passage.text}" for h in hits)
        unknown = [
            w for w in unknown if not spelled_out(w, text) and not near_spelling(w, article_terms)
        ]
    return unknown + [
        m.group(0)
        for m in _KEY_NUMBER.finditer(question)
        if not set(tokenize(m.group(0))) <= article_terms
    ]


def _idf(term: str, df: dict[str, int], n: int) -> float:
    return math.log(1 + (n - df.get(term, 0) + 0.5) / (df.get(term, 0) + 0.5))


def extract_answer(
    question: str,
    hits: list[Hit],
    *,
    threshold: float,
    template: Path,
    sentence_scores: dict[int, list[float]] | None = None,
    known: Callable[[str], bool] | None = None,
    article_terms: Callable[[str], frozenset[str]] | None = None,
    passages: int = ANSWER_PASSAGES,
) -> Answer | Abstention:
    """The best-supported answer span among the top ``passages`` hits, or why there is none.

    ``sentence_scores`` maps a hit's row to the cosine of each of its sentences with the
    question (from the index's sentence vectors); without it, sentences are scored lexically.
    """
    # Long: the hand-set reader, kept whole as it was measured (docs/quality.md) as the
    # baseline the learned reader replaced; splitting it would change nothing it does.
    if not hits:
        return Abstention("no passage matches the question", 0.0)
    top = hits[:passages]
    sentences: list[_Sentence] = []
    for hit in top:
        p = hit.passage
        spans = p.sentences or tuple(split_sentences(p.text))
        scores = (sentence_scores or {}).get(hit.row) or [hit.dense_score or 0.0] * len(spans)
        for (s, e), sem in zip(spans, scores, strict=True):
            text = p.text[s:e]
            sentences.append(
                _Sentence(hit, p.start + s, p.start + e, text, frozenset(tokenize(text)), sem)
            )
    if not sentences:
        return Abstention("the passages found have no sentences", 0.0)
    # Document frequencies over the candidate sentences: words in every sentence say little.
    df: dict[str, int] = {}
    for sent in sentences:
        for t in sent.terms:
            df[t] = df.get(t, 0) + 1
    weights = {t: _idf(t, df, len(sentences)) for t in set(tokenize(question))}
    total = sum(weights.values()) or 1.0
    kind = question_type(question)

    q_terms = set(weights)
    asks_title = _ASKS_TITLE.search(question) is not None
    asks_date_line = kind == "date" and _ASKS_DATE_LINE.search(question) is not None

    def metadata(sent: _Sentence) -> bool:
        """Whether the sentence is the headline or date line the question asks for."""
        if asks_title and sent.text.strip() == (sent.hit.passage.title or "").strip():
            return True
        return asks_date_line and is_date_line(sent.text)

    def score(sent: _Sentence) -> float:
        lexical = sum(w for t, w in weights.items() if t in sent.terms) / total
        typed = _has_new_entity(kind, sent.text, question)
        # A sentence that only restates the question (a headline, say) cannot answer it.
        novel = len(sent.terms - q_terms) / len(sent.terms) if sent.terms else 0.0
        return (
            W_SEMANTIC * sent.semantic
            + W_LEXICAL * lexical
            + W_TYPE * typed
            + W_NOVEL * novel
            + W_META * metadata(sent)
            - W_RANK * (sent.hit.rank - 1)
        )

    scored = [(score(s), s) for s in sentences]
    best_score, best = max(scored, key=lambda x: x[0])
    support = max(s.semantic for s in sentences)
    answer = _answer_from(question, best, best_score, support, scored, hits, template)
    if support < threshold:
        return Abstention(
            f"the passages found do not support an answer "
            f"(best sentence similarity {support:.2f}, needed {threshold:.2f})",
            support,
            answer,
        )
    if known is not None and article_terms is not None:
        missing = unsupported_terms(
            question,
            known=known,
            article_terms=article_terms(best.hit.passage.source),
            hits=top,
        )
        if missing:
            return Abstention(unknown_terms_reason(missing), support, answer)
    return answer


_UNKNOWN_TERMS = "which the passages found never mention"


def unknown_terms_reason(missing: list[str]) -> str:
    """The refusal message for names or numbers the passages found never mention."""
    names = ", ".join(f"'{m}'" for m in missing)
    return f"the question mentions {names}, {_UNKNOWN_TERMS}"


def is_unknown_terms_reason(reason: str | None) -> bool:
    """Whether a refusal came from the unknown-names rule rather than low confidence."""
    return reason is not None and reason.endswith(_UNKNOWN_TERMS)


def _answer_from(
    question: str,
    best: _Sentence,
    best_score: float,
    support: float,
    scored: list[tuple[float, _Sentence]],
    hits: list[Hit],
    template: Path,
) -> Answer:
    start, end = best.start, best.end
    # A sentence that starts with a pronoun leans on the one before it: include that one too.
    if re.match(r"(He|She|It|They|This|These|That|Those|The two|Ever since)\b", best.text):
        before = [s for _, s in scored if s.hit is best.hit and s.end <= start]
        if before:
            start = before[-1].start
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
        score=round(best_score, 4),
        passage_rank=best.hit.rank,
        support=round(support, 4),
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
    template: Path,
    *,
    question: str,
    answer: str,
    hits: list[Hit],
    cited: list[int],
    span: str | None = None,
) -> str:
    """Render the answer template with the answer text, its short span and its citations."""
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
            question=question, answer=answer, citations=citations, span=span
        )
    except Exception as exc:
        raise ConfigError(f"answer template '{template}' failed to render: {exc}") from exc
    return out.strip()
