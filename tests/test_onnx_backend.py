"""The ONNX backend gives the torch backend's vectors, tokens and offsets for the same model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.ask.span_model import DEFAULT_SPAN_READER, load_span_model
from qa.config import BUNDLED_MODEL, Settings
from qa.embed.models import NVIDIA_DRIVER, resolve_model
from qa.embed.onnx_backend import OnnxEmbedder
from qa.embed.registry import load_embedder
from qa.embed.torch_backend import SentenceTransformerEmbedder
from qa.errors import ModelLoadError

from .conftest import ROOT, SEEDS

pytestmark = pytest.mark.model

QUESTIONS = [
    "How many US-funded enterprises had Chongqing approved by the end of 2013?",
    "Which US city is a friendly city of Changchun?",
    "535",
    "Who won the 2022 World Cup?",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx(cache: Path) -> OnnxEmbedder:
    return OnnxEmbedder(model=BUNDLED_MODEL, cache_dir=cache)


@pytest.fixture(scope="module")
def torch_model() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(model=BUNDLED_MODEL, device="cpu")


def _passages() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))]
    # Paragraphs of every seed, long and short, so batches pad to different lengths.
    return [para for t in texts for para in t.split("\n\n") if len(para.split()) > 3][:40]


def test_question_vectors_match_torch(
    onnx: OnnxEmbedder, torch_model: SentenceTransformerEmbedder
) -> None:
    a, b = onnx.embed(QUESTIONS), torch_model.embed(QUESTIONS)
    assert a.shape == b.shape == (len(QUESTIONS), 384)
    cosines = (a * b).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_passage_and_sentence_vectors_match_torch(
    onnx: OnnxEmbedder, torch_model: SentenceTransformerEmbedder
) -> None:
    texts = _passages()
    spans = [[(0, len(t) // 2), (len(t) // 2, len(t))] for t in texts]
    pa, sa = onnx.embed_passages(texts, spans, batch_size=8)
    pb, sb = torch_model.embed_passages(texts, spans, batch_size=8)
    assert (pa * pb).sum(axis=1).min() >= 0.999
    for x, y in zip(sa, sb, strict=True):
        assert x.shape == y.shape == (2, 384)
        assert (x * y).sum(axis=1).min() >= 0.999


def test_tokens_and_offsets_match_torch(
    onnx: OnnxEmbedder, torch_model: SentenceTransformerEmbedder
) -> None:
    texts = [*_passages()[:10], "Chongqing—Little Rock ½ 重庆 café"]
    assert onnx.count_tokens(texts) == torch_model.count_tokens(texts)
    for t in texts:
        assert onnx.token_offsets(t) == torch_model.token_offsets(t)
    assert onnx.max_seq_length == torch_model.max_seq_length == 256
    assert onnx.model_id == torch_model.model_id


def test_export_is_cached_by_weights(onnx: OnnxEmbedder, cache: Path) -> None:
    stamp = onnx.path.stat().st_mtime_ns
    again = OnnxEmbedder(model=BUNDLED_MODEL, cache_dir=cache)
    assert again.path == onnx.path
    assert again.path.stat().st_mtime_ns == stamp  # loaded, not exported again
    assert not [p for p in onnx.path.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_load_embedder_picks_the_backend(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setenv("SEEDQA_CACHE", str(cache.parent / "seedqa-cache"))
    embedder = load_embedder(Settings(backend="onnx", device="cpu"))
    assert isinstance(embedder, OnnxEmbedder)
    torch_embedder = load_embedder(Settings(backend="torch", device="cpu"))
    assert isinstance(torch_embedder, SentenceTransformerEmbedder)


def test_unsupported_pooling_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "cls-model"
    shutil.copytree(resolve_model(BUNDLED_MODEL)[0], folder)
    config = folder / "1_Pooling" / "config.json"
    pooling = json.loads(config.read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    config.write_text(json.dumps(pooling))
    with pytest.raises(ModelLoadError, match="mean-pooling models only"):
        OnnxEmbedder(model=str(folder), cache_dir=tmp_path / "cache")


def test_a_model_name_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no-such-model"):
        OnnxEmbedder(model="no-such-model", cache_dir=tmp_path)


_SERVE_WITHOUT_TORCH = """
import sys
from pathlib import Path
from qa.config import Settings
from qa.ask.service import QAService

seeds, index = Path(sys.argv[1]), Path(sys.argv[2])
service = QAService(Settings(seeds_dir=seeds, index_dir=index, backend="onnx"))
service.start(update=True, poll=False)
result = service.ask("Which US city is a friendly city of Changchun?", answer=True)
print(len(result.passages), "torch" in sys.modules)
"""


@pytest.mark.skipif(NVIDIA_DRIVER.exists(), reason="with a GPU driver, torch is asked about CUDA")
def test_serving_on_onnx_never_imports_torch(
    onnx: OnnxEmbedder, cache: Path, seeds_dir: Path, tmp_path: Path
) -> None:
    # The exports are made (with torch) by the fixture and, for the span reader, here; a server
    # that finds them needs no torch: building the seeds' index, loading it and answering
    # (the span included) all run on ONNX Runtime alone.
    (tmp_path / "seedqa").mkdir()
    (tmp_path / "seedqa" / "onnx").symlink_to(cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEEDQA_CACHE", str(tmp_path / "seedqa"))
        load_span_model(DEFAULT_SPAN_READER, backend="onnx")
    env = {**os.environ, "SEEDQA_CACHE": str(tmp_path / "seedqa"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _SERVE_WITHOUT_TORCH, str(seeds_dir), str(tmp_path / "index")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    passages, torch_imported = out.stdout.split()
    assert int(passages) > 0
    assert torch_imported == "False", out.stderr
