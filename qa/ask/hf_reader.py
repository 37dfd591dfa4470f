"""Bring-your-own extractive reader: a Hugging Face question-answering model folder, offline.

``ExtractiveReader`` runs any ``*ForQuestionAnswering`` model (a SQuAD 2.0 model a user already
has) on the CPU over a question and a few passages, and returns span candidates with exact
offsets in the source document: each passage comes with its start offset, and the fast
tokenizer's offset mapping turns token positions into character positions of the passage.

Passages longer than the model's window are cut into overlapping windows (``stride`` tokens
shared between neighbours), so a span near a window's edge is seen whole in the next one. A span
never leaves its window, so it never crosses from one passage into another, and never covers
the question.

Each candidate carries its passage's no-answer score: the start plus end logits of the
classification token, the SQuAD 2.0 "null" span. Like the Hugging Face pipeline it is the lowest
over the passage's windows. The caller refuses when that beats the best span (:func:`best_span`).

torch and transformers are imported only when a reader is built, never when ``qa`` is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.ask.hf_folder import check_model_folder
from qa.errors import ReaderError

log = logging.getLogger(__name__)

#: Tokens of passage shared by neighbouring windows of a long passage.
DEFAULT_STRIDE = 128
#: Longest window, in tokens, whatever the model allows (the SQuAD fine-tuning length).
DEFAULT_MAX_LENGTH = 384
#: Longest question, in tokens (the Hugging Face pipeline's default); the rest is cut.
DEFAULT_MAX_QUESTION_TOKENS = 64
#: Windows per forward pass.
WINDOW_BATCH = 8


@dataclass(frozen=True, slots=True)
class SpanCandidate:
    """A span of one passage the reader proposes; ``document[start:end] == text``."""

    passage_index: int
    start: int  # offsets in the source document, not the passage
    end: int
    text: str
    #: Start logit plus end logit of the span: comparable with ``no_answer_score``.
    score: float
    #: Start plus end logit of the null span (the [CLS] token), lowest over the passage's windows.
    no_answer_score: float


def best_span(candidates: Sequence[SpanCandidate], *, margin: float = 0.0) -> SpanCandidate | None:
    """The highest-scoring candidate, or ``None`` when its no-answer score wins by ``margin``.

    ``margin`` is the SQuAD 2.0 null-score threshold: positive values refuse less often.
    """
    if not candidates:
        return None
    best = max(candidates, key=lambda c: c.score)
    if best.no_answer_score > best.score + margin:
        return None
    return best


class ExtractiveReader:
    """A local extractive question-answering model that proposes answer spans in passages."""

    def __init__(
        self,
        *,
        path: Path,
        device: str = "cpu",
        max_answer_tokens: int = 30,
        stride: int = DEFAULT_STRIDE,
        max_length: int = DEFAULT_MAX_LENGTH,
        top_k: int = 3,
    ) -> None:
        if max_answer_tokens < 1:
            raise ReaderError(f"max_answer_tokens must be positive, got {max_answer_tokens}")
        if top_k < 1:
            raise ReaderError(f"top_k must be positive, got {top_k}")
        self.path = Path(path)
        self.device = device
        self.max_answer_tokens = max_answer_tokens
        self.top_k = top_k
        config = check_model_folder(
            self.path,
            role="reader",
            suffix="ForQuestionAnswering",
            kind="an extractive question-answering",
        )
        labels = int(getattr(config, "num_labels", 2))
        if labels != 2:
            raise ReaderError(
                f"reader folder '{self.path}' has a head with {labels} outputs; an extractive "
                "QA head gives two per token (start and end)"
            )
        self._tokenizer, self._model = _load(self.path, config, device)
        limit = min(max_length, _model_limit(self._tokenizer, config))
        self.max_length = limit
        self.stride = stride
        # A window holds the question, the special tokens and the passage: a long question is
        # cut so that the passage keeps at least half of the window.
        self.max_question_tokens = max(1, min(DEFAULT_MAX_QUESTION_TOKENS, limit // 2))
        self._pad_on_right = self._tokenizer.padding_side == "right"
        # A fast tokenizer's truncation settings are state on one shared Rust object, changed on
        # every call; concurrent calls with other settings can fail with "Already borrowed"
        # (huggingface/tokenizers#537). The service answers from several threads.
        self._tokenizer_lock = threading.Lock()

    def read(self, question: str, passages: Sequence[tuple[str, int]]) -> list[SpanCandidate]:
        """Up to ``top_k`` spans per passage, best first; ``passages`` are (text, start offset).

        A passage with no valid span (empty, or only punctuation the tokenizer drops) yields none.
        """
        with self._tokenizer_lock:
            windows = self._windows(question, passages)
        if windows is None:
            return []
        encoding, owner = windows
        start_logits, end_logits = self._logits(encoding)
        out: list[SpanCandidate] = []
        for index, (text, offset) in enumerate(passages):
            rows = [i for i, p in enumerate(owner) if p == index]
            if rows:
                out += self._passage_spans(
                    index, text, offset, rows, encoding, start_logits, end_logits
                )
        out.sort(key=lambda c: c.score, reverse=True)
        return out

    def _windows(
        self, question: str, passages: Sequence[tuple[str, int]]
    ) -> tuple[Any, list[int]] | None:
        """Tokenised (question, passage) windows and, for each window, its passage's index."""
        texts = [text for text, _ in passages]
        if not texts:
            return None
        question = self._clip_question(question)
        room = self.max_length - self._tokenizer.num_special_tokens_to_add(pair=True)
        room -= len(self._tokenizer(question, add_special_tokens=False)["input_ids"])
        # Neighbouring windows share at most half of the passage part, so each one moves on.
        stride = max(0, min(self.stride, room // 2))
        first, second = ([question] * len(texts), texts)
        if not self._pad_on_right:
            first, second = second, first
        encoding = self._tokenizer(
            first,
            second,
            truncation="only_second" if self._pad_on_right else "only_first",
            max_length=self.max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="longest",
        )
        owner = [int(i) for i in encoding["overflow_to_sample_mapping"]]
        return encoding, owner

    def _clip_question(self, question: str) -> str:
        """The question cut after ``max_question_tokens`` tokens, so a window has passage room."""
        encoded = self._tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= self.max_question_tokens:
            return question
        return question[: offsets[self.max_question_tokens - 1][1]]

    def _logits(self, encoding: Any) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Start and end logits for every window, run in batches on the model's device."""
        import torch

        names = [n for n in self._tokenizer.model_input_names if n in encoding]
        starts: list[npt.NDArray[np.float32]] = []
        ends: list[npt.NDArray[np.float32]] = []
        total = len(encoding["input_ids"])
        with torch.inference_mode():
            for lo in range(0, total, WINDOW_BATCH):
                batch = {
                    n: torch.tensor(encoding[n][lo : lo + WINDOW_BATCH], device=self.device)
                    for n in names
                }
                output = self._model(**batch)
                starts.append(output.start_logits.float().cpu().numpy())
                ends.append(output.end_logits.float().cpu().numpy())
        return np.concatenate(starts), np.concatenate(ends)

    def _passage_spans(
        self,
        index: int,
        text: str,
        offset: int,
        rows: list[int],
        encoding: Any,
        start_logits: npt.NDArray[np.float32],
        end_logits: npt.NDArray[np.float32],
    ) -> list[SpanCandidate]:
        """The best spans of one passage over its windows, with its lowest null score."""
        context_id = 1 if self._pad_on_right else 0
        cls_id = self._tokenizer.cls_token_id
        null = min(
            float(start_logits[r, c] + end_logits[r, c])
            for r, c in ((r, _cls_position(encoding["input_ids"][r], cls_id)) for r in rows)
        )
        found: dict[tuple[int, int], float] = {}
        for r in rows:
            sequence_ids = encoding.sequence_ids(r)
            context = np.array([s == context_id for s in sequence_ids], dtype=bool)
            for s_tok, e_tok, score in _top_spans(
                start_logits[r], end_logits[r], context, self.max_answer_tokens, self.top_k
            ):
                char_start = int(encoding["offset_mapping"][r][s_tok][0])
                char_end = int(encoding["offset_mapping"][r][e_tok][1])
                if char_end <= char_start:
                    continue
                key = (char_start, char_end)
                found[key] = max(score, found.get(key, -np.inf))
        best = sorted(found.items(), key=lambda kv: kv[1], reverse=True)[: self.top_k]
        return [
            SpanCandidate(
                passage_index=index,
                start=offset + s,
                end=offset + e,
                text=text[s:e],
                score=score,
                no_answer_score=null,
            )
            for (s, e), score in best
        ]


def _top_spans(
    start: npt.NDArray[np.float32],
    end: npt.NDArray[np.float32],
    context: npt.NDArray[np.bool_],
    max_tokens: int,
    n: int,
) -> list[tuple[int, int, float]]:
    """The ``n`` best (start token, end token, score) with both ends in the context, in order,
    at most ``max_tokens`` long."""
    if not context.any():
        return []
    # A start x end score table; masked cells cannot be chosen.
    table = start[:, None].astype(np.float64) + end[None, :].astype(np.float64)
    length = np.arange(len(start))[None, :] - np.arange(len(start))[:, None]
    allowed = (length >= 0) & (length < max_tokens) & context[:, None] & context[None, :]
    table = np.where(allowed, table, -np.inf).ravel()
    n = min(n, table.size)
    # Only the n best cells are sorted: a full sort of a 384 x 384 table costs milliseconds.
    top = np.argpartition(-table, n - 1)[:n]
    spans = []
    for cell in top[np.argsort(-table[top], kind="stable")]:
        if np.isfinite(table[cell]):
            s, e = divmod(int(cell), len(start))
            spans.append((s, e, float(table[cell])))
    return spans


def _cls_position(input_ids: Sequence[int], cls_token_id: int | None) -> int:
    """Where the classification token sits (first for BERT, last for XLNet); 0 if absent."""
    ids = list(input_ids)
    if cls_token_id is not None and cls_token_id in ids:
        return ids.index(cls_token_id)
    return 0


def _model_limit(tokenizer: Any, config: Any) -> int:
    """The longest input the model takes: the tokenizer's limit, else its position table."""
    limits = [int(getattr(config, "max_position_embeddings", 512) or 512)]
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:
        limits.append(tok_limit)
    return min(limits)


def _load(path: Path, config: Any, device: str) -> tuple[Any, Any]:
    """The fast tokenizer and the QA model of ``path``, or :class:`ReaderError` saying why not."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ReaderError(f"reader folder '{path}' has no usable tokenizer: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ReaderError(
            f"reader folder '{path}' has only a slow tokenizer; exact offsets need a fast one "
            "(a tokenizer.json file)"
        )
    try:
        model, info = AutoModelForQuestionAnswering.from_pretrained(
            path, config=config, local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise ReaderError(f"reader folder '{path}' cannot be loaded as a QA model: {exc}") from exc
    missing = [k for k in info.get("missing_keys", []) if "qa_outputs" in k]
    if missing:
        raise ReaderError(
            f"reader folder '{path}' has no trained question-answering head "
            f"(missing {', '.join(sorted(missing))}); it is not an extractive QA model"
        )
    model.to(device)
    model.eval()
    log.info("loaded reader %s on %s", path, device)
    return tokenizer, model
