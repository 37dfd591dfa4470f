"""Reading a span off start and end logits (``qa.ask.span_decode``)."""

from __future__ import annotations

import numpy as np
import pytest

from qa.ask.span_decode import decode_span


def test_decoded_span_stays_inside_the_window_and_under_the_length_limit() -> None:
    offsets = [(0, 0), (0, 3), (4, 7), (8, 11), (12, 15), (16, 19)]
    in_context = [False, True, True, True, True, True]
    start = np.asarray([9, 8, 1, 2, 0, 0], dtype=np.float32)  # token 1 is the best start
    end = np.asarray([9, 0, 0, 1, 2, 8], dtype=np.float32)  # token 5 is the best end
    whole = decode_span(start, end, offsets, in_context, (0, 19), max_tokens=10)
    assert whole is not None
    assert (whole.start, whole.end) == (offsets[1][0], offsets[5][1])
    assert whole.null_score == start[0] + end[0]
    inner = decode_span(start, end, offsets, in_context, (4, 15), max_tokens=10)
    assert inner is not None
    assert 4 <= inner.start < inner.end <= 15
    short = decode_span(start, end, offsets, in_context, (0, 19), max_tokens=2)
    assert short is not None
    covered = [t for t, (s, e) in enumerate(offsets) if short.start <= s and e <= short.end]
    assert 1 <= len([t for t in covered if in_context[t]]) <= 2
    assert decode_span(start, end, offsets, in_context, (20, 30)) is None


def test_the_length_penalty_takes_the_shorter_of_two_close_spans() -> None:
    offsets = [(0, 0), (0, 3), (4, 7), (8, 11), (12, 15), (16, 19)]
    in_context = [False, True, True, True, True, True]
    start = np.asarray([0, 5, 0, 0, 0, 0], dtype=np.float32)
    end = np.asarray([0, 0, 4.9, 0, 0, 5], dtype=np.float32)  # ends at token 2 or (a bit) 5
    plain = decode_span(start, end, offsets, in_context, (0, 19), length_penalty=0.0)
    penalised = decode_span(start, end, offsets, in_context, (0, 19), length_penalty=0.1)
    assert plain is not None
    assert penalised is not None
    assert (plain.start, plain.end) == (0, 19)
    assert (penalised.start, penalised.end) == (0, 7)  # 5 + 4.9 - 0.1 beats 5 + 5 - 0.4
    assert penalised.score == pytest.approx(9.8)
    assert penalised.null_score == plain.null_score == 0.0


def test_the_span_shown_is_the_one_the_likely_spans_agree_on() -> None:
    # Spans: token 1 alone scores 10; tokens 3-4 and 3-5 score 9.6 and 9.5 and overlap each
    # other. Probabilities about 0.44 / 0.29 / 0.27: token 1 is the best span, but 3-4 shares
    # most with what the model believes (expected F1 0.29 + 0.27 * 0.8 > 0.44).
    offsets = [(0, 0), (0, 3), (4, 7), (8, 11), (12, 15), (16, 19)]
    in_context = [False, True, True, True, True, True]
    start = np.asarray([0, 5, -20, 5, -20, -20], dtype=np.float32)
    end = np.asarray([0, 5, -20, -20, 4.6, 4.5], dtype=np.float32)
    best = decode_span(start, end, offsets, in_context, (0, 19), 3, 0.0, candidates=1)
    shown = decode_span(start, end, offsets, in_context, (0, 19), 3, 0.0)
    assert best is not None
    assert shown is not None
    assert (best.start, best.end) == (0, 3)
    assert (shown.start, shown.end) == (8, 15)
    assert shown.score == best.score == pytest.approx(10.0)  # the refusal reads the best span


def test_one_clear_span_is_shown_as_it_is() -> None:
    offsets = [(0, 0), (0, 3), (4, 7), (8, 11)]
    in_context = [False, True, True, True]
    start = np.asarray([0, 1, 9, 1], dtype=np.float32)
    end = np.asarray([0, 1, 1, 9], dtype=np.float32)
    shown = decode_span(start, end, offsets, in_context, (0, 11))
    assert shown is not None
    assert (shown.start, shown.end) == (4, 11)
