"""Question files for ``qa eval --questions``: hit@k, MRR, answer accuracy and refusals.

Question files are JSON lines: ``{"question", "answers": [...], "source"?, "evidence"?}``.
A passage is relevant when its span overlaps the evidence in its source or, without evidence,
when it comes from the expected source and contains a gold answer. ``"answers": []`` marks a
question the seeds cannot answer; the service should abstain on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qa.ask.answer import is_unknown_terms_reason
from qa.ask.service import AskResult, QAService
from qa.errors import ConfigError


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    """One line of a question file."""

    question: str
    answers: list[str]
    source: str | None = None
    evidence: str | None = None
    kind: str | None = None


def read_questions(path: Path) -> list[EvalQuestion]:
    """Parse a JSON-lines question file, naming the line of any mistake."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            out.append(
                EvalQuestion(
                    question=str(data["question"]),
                    answers=[str(a) for a in data.get("answers", [])],
                    source=data.get("source"),
                    evidence=data.get("evidence"),
                    kind=data.get("kind"),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"question file '{path}' line {n} is not valid: {exc}") from exc
    return out


@dataclass
class QuestionOutcome:
    """What happened to one question."""

    question: str
    answerable: bool
    relevant_rank: int | None
    answer: str | None
    answer_correct: bool
    abstained: bool
    support: float
    top_source: str | None
    kind: str | None = None
    #: Abstained although the support passed the threshold (the question names unknown things).
    abstained_by_rule: bool = False


@dataclass
class EvalReport:
    """Figures of one ``qa eval`` run over a question file."""

    questions: int
    answerable: int
    unanswerable: int
    hit_at_1: float
    hit_at_5: float
    hit_at_10: float
    mrr: float
    answer_accuracy: float
    abstention_precision: float
    abstention_recall: float
    unanswerable_abstained: int
    wrongly_abstained: int
    wrong_abstention_rate: float
    suggested_threshold: float | None
    mode: str
    k: int
    failures: list[dict[str, Any]] = field(default_factory=list)


def _evidence_span(seeds: Path, q: EvalQuestion, cache: dict[str, str]) -> tuple[int, int] | None:
    if not q.source or not q.evidence:
        return None
    if q.source not in cache:
        cache[q.source] = (seeds / q.source).read_bytes().decode("utf-8")
    start = cache[q.source].find(q.evidence)
    if start < 0:
        raise ConfigError(f"evidence of {q.question!r} is not in '{q.source}'")
    return start, start + len(q.evidence)


def _relevant_rank(q: EvalQuestion, result: AskResult, span: tuple[int, int] | None) -> int | None:
    for h in result.passages:
        p = h.passage
        if q.source and p.source != q.source:
            continue
        if span is not None:
            if p.start < span[1] and span[0] < p.end:
                return h.rank
        elif any(a.lower() in p.text.lower() for a in q.answers):
            return h.rank
    return None


def suggest_threshold(outcomes: list[QuestionOutcome], *, max_wrong: float = 0.05) -> float | None:
    """The support threshold abstaining on most unanswerable questions while wrongly abstaining
    on at most ``max_wrong`` of the answerable ones (the midpoint between neighbouring scores)."""
    # Questions refused for another reason (unknown names) are not the threshold's business,
    # but answerable ones among them use up part of the budget of wrong abstentions.
    by_rule = [o for o in outcomes if o.abstained_by_rule]
    answerable = sorted(o.support for o in outcomes if o.answerable and o not in by_rule)
    unanswerable = [o.support for o in outcomes if not o.answerable and o not in by_rule]
    if not answerable or not unanswerable:
        return None
    total = len(answerable) + sum(1 for o in by_rule if o.answerable)
    allowed = max(0, int(max_wrong * total) - sum(1 for o in by_rule if o.answerable))
    # Abstaining below `answerable[allowed]` wrongly abstains on at most `allowed` questions.
    ceiling = answerable[allowed]
    below = [s for s in unanswerable + answerable[:allowed] if s < ceiling]
    floor = max(below) if below else ceiling - 0.01
    return round((floor + ceiling) / 2, 4)


def evaluate_questions(
    service: QAService, questions: list[EvalQuestion], *, k: int = 10
) -> EvalReport:
    """Run every question through the service exactly as ``/api/ask`` does, and score it."""
    # Long: one pass over the questions that accumulates every figure of the report, one
    # line per figure; split, the figures would be counted in several places.
    seeds = service.settings.seeds_dir
    cache: dict[str, str] = {}
    outcomes: list[QuestionOutcome] = []
    failures: list[dict[str, Any]] = []
    for q in questions:
        result = service.ask(q.question, k=k, answer=True)
        answerable = bool(q.answers)
        span = _evidence_span(seeds, q, cache) if answerable else None
        rank = _relevant_rank(q, result, span) if answerable else None
        text = result.answer.text if result.answer else None
        correct = bool(text) and any(a.lower() in (text or "").lower() for a in q.answers)
        support = result.support or 0.0
        o = QuestionOutcome(
            question=q.question,
            answerable=answerable,
            relevant_rank=rank,
            answer=text,
            answer_correct=correct,
            abstained=result.answer is None,
            support=round(support, 4),
            top_source=result.passages[0].passage.source if result.passages else None,
            kind=q.kind,
            abstained_by_rule=is_unknown_terms_reason(result.abstain_reason),
        )
        outcomes.append(o)
        failed = (answerable and (rank != 1 or not correct)) or (not answerable and not o.abstained)
        if failed:
            failures.append(
                {
                    **asdict(o),
                    "gold": q.answers,
                    "expected_source": q.source,
                    "abstain_reason": result.abstain_reason,
                    "top_passage": result.passages[0].passage.text[:200]
                    if result.passages
                    else None,
                }
            )
    ans = [o for o in outcomes if o.answerable]
    una = [o for o in outcomes if not o.answerable]
    abstained = [o for o in outcomes if o.abstained]
    n = max(len(ans), 1)

    def hit(at: int) -> float:
        return round(sum(1 for o in ans if o.relevant_rank and o.relevant_rank <= at) / n, 4)

    una_abstained = sum(1 for o in una if o.abstained)
    wrong = sum(1 for o in ans if o.abstained)
    return EvalReport(
        questions=len(outcomes),
        answerable=len(ans),
        unanswerable=len(una),
        hit_at_1=hit(1),
        hit_at_5=hit(5),
        hit_at_10=hit(10),
        mrr=round(sum(1 / o.relevant_rank for o in ans if o.relevant_rank) / n, 4),
        answer_accuracy=round(sum(1 for o in ans if o.answer_correct) / n, 4),
        abstention_precision=round(una_abstained / len(abstained), 4) if abstained else 1.0,
        abstention_recall=round(una_abstained / len(una), 4) if una else 1.0,
        unanswerable_abstained=una_abstained,
        wrongly_abstained=wrong,
        wrong_abstention_rate=round(wrong / n, 4),
        suggested_threshold=suggest_threshold(outcomes),
        mode=service.settings.retrieval_mode,
        k=k,
        failures=failures,
    )
