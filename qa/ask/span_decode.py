"""Reading a span off a QA model's start and end logits.

A span is a start/end pair of at most :data:`MAX_ANSWER_TOKENS` tokens inside the allowed
window, scored by start plus end logit less :data:`SPAN_LENGTH_PENALTY` per token. The span
shown is the minimum-Bayes-risk choice among the :data:`MBR_CANDIDATES` best: the one with the
highest expected token overlap (F1) with the others, weighed by the model's own probabilities
(a softmax over the span scores). The reader's mass is often spread over nested spans of one
phrase, and the argmax alone is then an outlier ("Liu" against "Liu Chun" and "Liu Chun,
vice president"); answers are scored by overlap, so the consensus span is the better bet. The
score reported is the best span's, which the refusal compares with the [CLS] ("no answer")
pair. Character offsets come from the tokenizer's offset mapping, so ``context[start:end]`` is
exactly the span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Longest span, in tokens.
MAX_ANSWER_TOKENS = 30
#: Score taken off a span per token after its first: SQuAD answers are short, and the reader's
#: start and end logits alone run long. Chosen from -0.1, 0, 0.05, 0.1, 0.2, 0.3, 0.5 on XQuAD
#: gold sentences with the fold readers (each question read by the reader that never saw its
#: article); every fold, choosing on the other three, chose 0.1: span F1 0.604 -> 0.614.
SPAN_LENGTH_PENALTY = 0.1
#: Spans weighed by the minimum-Bayes-risk choice; 1: the best span alone. On XQuAD gold
#: sentences read by the fold readers (each question by the reader that never saw its
#: article), 20 candidates at the model's own temperature took span F1 from 0.614 to 0.622
#: (three folds up, one level; 40 gave the same, 10 less). Nothing fitted: the temperature is
#: the softmax's.
MBR_CANDIDATES = 20


@dataclass(frozen=True, slots=True)
class SpanChoice:
    """A span of the context: ``context[start:end]``. ``score`` is the best span's start plus
    end logit less the length penalty (the shown span is that one or one overlapping it)."""

    start: int
    end: int
    score: float
    #: The [CLS] ("no answer") span's score, comparable with ``score``.
    null_score: float


def decode_span(
    start_logits: npt.NDArray[np.float32],
    end_logits: npt.NDArray[np.float32],
    offsets: Sequence[tuple[int, int]],
    in_context: Sequence[bool],
    window: tuple[int, int],
    max_tokens: int = MAX_ANSWER_TOKENS,
    length_penalty: float = SPAN_LENGTH_PENALTY,
    candidates: int = MBR_CANDIDATES,
) -> SpanChoice | None:
    """The span of one input whose tokens all lie in ``window`` (characters of the context):
    of the ``candidates`` best by start plus end logit less ``length_penalty`` per token after
    the first, the one with the highest expected overlap with the others (``candidates=1``:
    the best).

    ``in_context[t]`` says whether token ``t`` is a context token; ``offsets[t]`` are its
    characters in the context. ``None`` when no context token lies in the window.
    """
    lo, hi = window
    allowed = np.asarray(
        [
            inside and lo <= s and e <= hi and e > s
            for inside, (s, e) in zip(in_context, offsets, strict=True)
        ],
        dtype=bool,
    )
    tokens = np.flatnonzero(allowed)
    if not len(tokens):
        return None
    starts = start_logits[tokens].astype(np.float64)
    ends = end_logits[tokens].astype(np.float64)
    # pair[i, j]: span from allowed token i to allowed token j; only i <= j, short enough.
    gap = tokens[None, :] - tokens[:, None]
    pair = starts[:, None] + ends[None, :] - length_penalty * gap
    pair[(gap < 0) | (gap >= max_tokens)] = -np.inf
    order = np.argsort(pair, axis=None, kind="stable")[::-1][: max(candidates, 1)]
    first, last = np.unravel_index(order, pair.shape)
    scores = pair[first, last]
    keep = np.isfinite(scores)
    first, last, scores = first[keep], last[keep], scores[keep]
    pick = _consensus(tokens[first], tokens[last], scores)
    return SpanChoice(
        start=int(offsets[tokens[first[pick]]][0]),
        end=int(offsets[tokens[last[pick]]][1]),
        score=float(scores[0]),
        null_score=float(start_logits[0]) + float(end_logits[0]),
    )


def _consensus(
    first: npt.NDArray[np.int64], last: npt.NDArray[np.int64], scores: npt.NDArray[np.float64]
) -> int:
    """Index of the span (tokens ``first[i]..last[i]``, best score first) with the highest
    expected token F1 against the others under a softmax over ``scores``; ties to the better."""
    if len(scores) == 1:
        return 0
    weights = np.exp(scores - scores[0])
    weights /= weights.sum()
    length = (last - first + 1).astype(np.float64)
    shared = np.minimum(last[:, None], last[None, :]) - np.maximum(first[:, None], first[None, :])
    overlap = np.clip(shared + 1, 0, None)
    f1 = 2 * overlap / (length[:, None] + length[None, :])
    return int(np.argmax(f1 @ weights))
