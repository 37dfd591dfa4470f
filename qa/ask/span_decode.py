"""Reading a span off a QA model's start and end logits.

The span is the best start/end pair of at most :data:`MAX_ANSWER_TOKENS` tokens inside the
allowed window, scored by start plus end logit less :data:`SPAN_LENGTH_PENALTY` per token;
its character offsets come from the tokenizer's offset mapping, so ``context[start:end]`` is
exactly the span. The [CLS] pair is the "no answer" score it is compared with.
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


@dataclass(frozen=True, slots=True)
class SpanChoice:
    """A span of the context: ``context[start:end]``; its score is start plus end logit less
    the length penalty."""

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
) -> SpanChoice | None:
    """The best span of one input whose tokens all lie in ``window`` (characters of the context),
    by start plus end logit less ``length_penalty`` per token after the first.

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
    i, j = np.unravel_index(int(np.argmax(pair)), pair.shape)
    return SpanChoice(
        start=int(offsets[tokens[i]][0]),
        end=int(offsets[tokens[j]][1]),
        score=float(pair[i, j]),
        null_score=float(start_logits[0]) + float(end_logits[0]),
    )
