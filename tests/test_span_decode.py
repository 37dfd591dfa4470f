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
