"""Checks that a folder holds a Hugging Face model of the expected kind, before loading it.

Reading ``config.json`` costs nothing, so a wrong path or a model of the wrong kind is named in
the error before torch is even imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qa.errors import ReaderError

#: Files of which a model folder holds at least one when it carries its tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def check_model_folder(path: Path, *, role: str, suffix: str, kind: str) -> Any:
    """The transformers config of ``path``, or :class:`ReaderError` naming what is wrong.

    ``role`` names the setting in messages ("reader", "reranker"); ``suffix`` is the end of the
    architecture name the folder must declare (``ForQuestionAnswering``); ``kind`` describes it
    with its article ("an extractive question-answering").
    """
    if not path.exists():
        raise ReaderError(f"{role} folder '{path}' does not exist")
    if not path.is_dir():
        raise ReaderError(f"{role} '{path}' is a file; give the model's folder")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ReaderError(
            f"{role} folder '{path}' has no config.json: it is not a Hugging Face model folder"
        )
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReaderError(f"{role} folder '{path}' has an unreadable config.json: {exc}") from exc
    if not isinstance(raw, dict):
        raise ReaderError(f"{role} folder '{path}' has a config.json that is not a JSON object")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ReaderError(
            f"{role} folder '{path}' has no tokenizer (none of {', '.join(TOKENIZER_FILES)})"
        )
    architectures = raw.get("architectures") or []
    if architectures and not any(str(a).endswith(suffix) for a in architectures):
        raise ReaderError(
            f"{role} folder '{path}' holds a {', '.join(map(str, architectures))} model; "
            f"the {role} needs {kind} model (an architecture ending in {suffix})"
        )
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ReaderError(
            f"{role} folder '{path}' has a config transformers cannot read: {exc}"
        ) from exc
