#!/usr/bin/env python3
"""Validate eval/seeds_questions.jsonl against the seed articles.

Usage:
    python3 eval/check_questions.py [SEEDS_DIR] [QUESTIONS_FILE]

SEEDS_DIR defaults to "seeds"; QUESTIONS_FILE defaults to
seeds_questions.jsonl next to this script.

Checks, for every line:
  * it parses as a JSON object;
  * "question" is a non-empty string, "answers" is a list of strings,
    "kind" is one of the allowed kinds;
  * unanswerable lines (answers == []) have kind "unanswerable" and
    no source/evidence;
  * answerable lines have a "source" file that exists in SEEDS_DIR,
    an "evidence" string that is an exact substring of that file
    (decoded as UTF-8), and every answer occurs case-insensitively
    inside the evidence.
Then prints counts per kind, per source and the number of unanswerable
questions, and checks the minimum totals the question set must meet.

Exits 0 when everything passes, 1 otherwise (all problems are listed).
Standard library only.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KINDS = {
    "name",
    "number",
    "date",
    "place",
    "paraphrase",
    "title",
    "date_meta",
    "two_sentence",
    "unanswerable",
}
ALLOWED_FIELDS = {"question", "answers", "source", "evidence", "kind"}

# Minimum requirements for the whole set.
MIN_TOTAL = 66
MIN_UNANSWERABLE = 12
MIN_PER_SOURCE = 8
MIN_PARAPHRASE = 10
MIN_TITLE_OR_DATE_META = 4
MIN_TWO_SENTENCE = 4


def check(seeds_dir: Path, qfile: Path) -> int:
    errors: list[str] = []

    if not seeds_dir.is_dir():
        print(f"ERROR: seeds folder not found: {seeds_dir}", file=sys.stderr)
        return 1
    if not qfile.is_file():
        print(f"ERROR: questions file not found: {qfile}", file=sys.stderr)
        return 1

    seed_files = sorted(p.name for p in seeds_dir.glob("*.txt"))
    texts: dict[str, str] = {}

    def load(name: str) -> str | None:
        if name in texts:
            return texts[name]
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            return None
        path = seeds_dir / name
        if not path.is_file():
            return None
        try:
            texts[name] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(f"{name}: not valid UTF-8 ({exc})")
            texts[name] = ""
        return texts[name]

    kinds: Counter[str] = Counter()
    per_source: Counter[str] = Counter()
    unanswerable = 0
    total = 0
    seen_questions: dict[str, int] = {}

    with qfile.open("rb") as fh:
        raw_lines = fh.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()

    for lineno, raw in enumerate(raw_lines, start=1):
        where = f"line {lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(f"{where}: not valid UTF-8 ({exc})")
            continue
        if not line.strip():
            errors.append(f"{where}: blank line")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: invalid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            errors.append(f"{where}: not a JSON object")
            continue
        total += 1

        extra = set(obj) - ALLOWED_FIELDS
        if extra:
            errors.append(f"{where}: unexpected fields {sorted(extra)}")

        q = obj.get("question")
        if not isinstance(q, str) or not q.strip():
            errors.append(f"{where}: 'question' must be a non-empty string")
        else:
            key = " ".join(q.lower().split())
            if key in seen_questions:
                errors.append(
                    f"{where}: duplicate question (same as line {seen_questions[key]})"
                )
            else:
                seen_questions[key] = lineno

        answers = obj.get("answers")
        if not isinstance(answers, list) or not all(
            isinstance(a, str) and a.strip() for a in answers
        ):
            errors.append(f"{where}: 'answers' must be a list of non-empty strings")
            answers = None

        kind = obj.get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            errors.append(f"{where}: 'kind' must be one of {sorted(KINDS)}, got {kind!r}")
        else:
            kinds[kind] += 1

        if answers is None:
            continue

        if not answers:
            # Unanswerable question.
            unanswerable += 1
            if kind != "unanswerable":
                errors.append(f"{where}: empty 'answers' but kind is {kind!r}, expected 'unanswerable'")
            for field in ("source", "evidence"):
                if field in obj:
                    errors.append(f"{where}: unanswerable question must not have '{field}'")
            continue

        if kind == "unanswerable":
            errors.append(f"{where}: kind 'unanswerable' but 'answers' is not empty")

        source = obj.get("source")
        evidence = obj.get("evidence")
        if not isinstance(source, str) or not source:
            errors.append(f"{where}: answerable question needs a 'source' string")
            continue
        if not isinstance(evidence, str) or not evidence.strip():
            errors.append(f"{where}: answerable question needs a non-empty 'evidence' string")
            continue

        text = load(source)
        if text is None:
            errors.append(f"{where}: source file {source!r} not found in {seeds_dir}")
            continue
        per_source[source] += 1

        if evidence not in text:
            # Help locate the mismatch: longest matching prefix.
            lo, hi = 0, len(evidence)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if evidence[:mid] in text:
                    lo = mid
                else:
                    hi = mid - 1
            errors.append(
                f"{where}: evidence is not an exact substring of {source} "
                f"(matches up to char {lo}: ...{evidence[max(0, lo - 30):lo]!r} "
                f"then {evidence[lo:lo + 30]!r})"
            )
            continue

        ev_lower = evidence.casefold()
        for ans in answers:
            if ans.casefold() not in ev_lower:
                errors.append(f"{where}: answer {ans!r} does not occur in the evidence")

    # Whole-set requirements.
    if total < MIN_TOTAL:
        errors.append(f"set: only {total} questions, need at least {MIN_TOTAL}")
    if unanswerable < MIN_UNANSWERABLE:
        errors.append(f"set: only {unanswerable} unanswerable, need at least {MIN_UNANSWERABLE}")
    for name in seed_files:
        if per_source[name] < MIN_PER_SOURCE:
            errors.append(
                f"set: {name} has {per_source[name]} answerable questions, need at least {MIN_PER_SOURCE}"
            )
    if kinds["paraphrase"] < MIN_PARAPHRASE:
        errors.append(f"set: only {kinds['paraphrase']} paraphrase questions, need {MIN_PARAPHRASE}")
    if kinds["title"] + kinds["date_meta"] < MIN_TITLE_OR_DATE_META:
        errors.append(
            f"set: only {kinds['title'] + kinds['date_meta']} title/date_meta questions, "
            f"need {MIN_TITLE_OR_DATE_META}"
        )
    if kinds["two_sentence"] < MIN_TWO_SENTENCE:
        errors.append(f"set: only {kinds['two_sentence']} two_sentence questions, need {MIN_TWO_SENTENCE}")

    # Report.
    print(f"questions file: {qfile}")
    print(f"seeds folder:   {seeds_dir} ({len(seed_files)} .txt files)")
    print(f"total questions: {total}")
    print(f"answerable: {total - unanswerable}   unanswerable: {unanswerable}")
    print("per kind:")
    for k in sorted(KINDS):
        print(f"  {k:<13} {kinds[k]}")
    print("answerable per source:")
    for name in sorted(set(seed_files) | set(per_source)):
        print(f"  {name}  {per_source[name]}")

    if errors:
        print(f"\nFAILED: {len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print("\nOK: all checks passed")
    return 0


def main(argv: list[str]) -> int:
    seeds_dir = Path(argv[1]) if len(argv) > 1 else Path("seeds")
    qfile = (
        Path(argv[2])
        if len(argv) > 2
        else Path(__file__).resolve().parent / "seeds_questions.jsonl"
    )
    return check(seeds_dir, qfile)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
