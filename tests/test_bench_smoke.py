"""Each benchmark script runs with ``--quick`` and writes its JSON with the expected keys.

No timing is asserted, ever: these only keep the scripts from rotting. Scripts run in a
subprocess (as ``make bench`` runs them) and write into ``tmp_path``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def run_quick(script: str, out: Path, *args: str, timeout: float = 900) -> dict[str, Any]:
    """Run ``bench/<script> --quick --out <out>``; the JSON it wrote."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    name = args[args.index("--name") + 1] if "--name" in args else Path(script).stem
    result: dict[str, Any] = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    assert result["benchmark"] == name
    assert result["quick"] is True
    assert {"machine", "loadavg_end", "command"} <= result.keys()
    assert result["machine"]["cores"] >= 1
    return result


def test_search_quick(tmp_path: Path) -> None:
    result = run_quick("search.py", tmp_path)
    (size,) = result["sizes"]
    assert {"n", "flat", "hnsw", "ivf", "size_rule_chooses"} <= size.keys()
    assert {"near", "random"} == size["flat"].keys()
    point = size["hnsw"][0]["sweep"][0]
    assert {"ef_search", "near", "random", "default"} <= point.keys()
    assert 0.0 <= point["near"]["recall_at_10"] <= 1.0
    assert {"p50_ms", "p99_ms"} <= point["near"].keys()
    assert {"rule", "met_with_defaults", "best_meeting_recall"} <= result["target"].keys()


def test_search_quick_lowdim(tmp_path: Path) -> None:
    result = run_quick("search.py", tmp_path, "--data", "lowdim", "--name", "search_lowdim")
    assert result["data"] == "lowdim"
    assert result["sizes"][0]["data"] == "lowdim"


def test_run_all_quick_writes_a_summary(tmp_path: Path) -> None:
    result = run_quick("run_all.py", tmp_path, "--only", "search", "--name", "summary")
    assert result["scripts"]["search"]["targets"]["rule"]


@pytest.mark.slow
@pytest.mark.model
def test_query_latency_quick(tmp_path: Path) -> None:
    result = run_quick("query_latency.py", tmp_path)
    for table in ("uncached", "cached"):
        assert {
            "bare_encode",
            "service_embedder_encode",
            "inprocess_no_answer",
            "inprocess_answer",
            "http_no_answer",
            "http_answer",
        } == result[table].keys()
        for row in result[table].values():
            assert {"p50_ms", "p99_ms", "p50_ratio_to_bare"} <= row.keys()
    assert {"http_no_answer", "http_answer"} == result["targets"].keys()


@pytest.mark.slow
@pytest.mark.model
def test_throughput_quick(tmp_path: Path) -> None:
    result = run_quick("throughput.py", tmp_path, "--clients", "1", "2")
    for key in ("no_answer", "answer"):
        rows = result["levels"][key]
        assert [r["clients"] for r in rows] == [1, 2]
        assert all(r["requests"] > 0 and r["errors"] == 0 for r in rows)
        assert {"speedup_vs_1", "met"} <= result["targets"][key].keys()
    assert {"batch_1_qps", "batch_16_qps"} == result["bare_model"].keys()


@pytest.mark.slow
@pytest.mark.model
def test_build_quick(tmp_path: Path) -> None:
    result = run_quick("build.py", tmp_path)
    assert result["documents"] == 20
    assert result["passages"] > 0
    assert {"build_vs_encode_ratio", "incremental_fraction_of_full"} <= result.keys()
    assert {"build_vs_encode", "incremental"} == result["targets"].keys()
    assert all(n >= 1 for n in result["incremental_embedded"])


@pytest.mark.slow
@pytest.mark.model
def test_startup_quick(tmp_path: Path) -> None:
    result = run_quick("startup.py", tmp_path)
    assert {"seeds_5_docs", "scifact"} == result["corpora"].keys()
    for row in result["corpora"].values():
        assert {"first_answer_s_median", "vmhwm_mb_median", "runs"} <= row.keys()
    assert result["bare_model_script"]["vmhwm_mb_median"] > 0


@pytest.mark.slow
@pytest.mark.model
def test_inference_quick(tmp_path: Path) -> None:
    result = run_quick("inference.py", tmp_path, "--cache-dir", str(tmp_path / "onnx"))
    variants = result["variants"]
    assert "onnx_fp32_threads_2" in variants
    for row in variants.values():
        assert {"single_question", "batch32_passages_per_s", "min_cosine_questions", "ok"} <= (
            row.keys()
        )


@pytest.mark.model
def test_span_reader_quick(tmp_path: Path) -> None:
    result = run_quick("span_reader.py", tmp_path)
    assert result["questions"] == 3
    assert set(result["reads"]) == {f"{p}_{n}" for p in ("fp32", "int8") for n in (1, 2, 3)}
    assert result["reads"]["int8_3"]["n"] == 3
    assert 0.0 <= result["int8_same_span_share"] <= 1.0


@pytest.mark.slow
@pytest.mark.model
def test_batch_size_quick(tmp_path: Path) -> None:
    result = run_quick("batch_size.py", tmp_path, "--sizes", "4,32")
    assert result["passages"] > 0
    assert set(result["backends"]) == {"onnx", "torch"}
    for rows in result["backends"].values():
        assert set(rows) == {"4", "32"}
        assert rows["32"]["speed_over_batch_32"] == 1.0
        assert all(row["passages_per_s"] > 0 for row in rows.values())
    assert set(result["fastest_batch_size"].values()) <= {"4", "32"}


@pytest.mark.slow
@pytest.mark.model
def test_txtai_peer_quick(tmp_path: Path) -> None:
    if importlib.util.find_spec("txtai") is None:
        pytest.skip("txtai is not installed (optional bench extra: pip install -e '.[bench]')")
    result = run_quick("txtai_peer.py", tmp_path)
    assert {"seedqa_median", "txtai_median", "txtai_over_seedqa"} <= result["index_s"].keys()
    assert {"txtai_search", "seedqa_dense", "seedqa_hybrid"} <= result["query"].keys()
    assert {"query_speedup", "index_faster"} == result["targets"].keys()


def test_segments_quick(tmp_path: Path) -> None:
    result = run_quick("segments.py", tmp_path)
    (size,) = result["pipeline"]
    assert {"publish", "cold_start", "query", "query_during_merge", "passages"} <= size.keys()
    assert {"edit_ms", "add_ms", "delete_ms", "scan_ms"} <= size["publish"].keys()
    assert {"offsets_read", "sqlite_read"} <= result["passage_store"][0].keys()
    (point,) = result["ann"]
    assert point["sweep"]
    assert {"recall_at_10", "p50_ms"} <= point["sweep"][0].keys()


@pytest.mark.slow
def test_reader_cost_quick(tmp_path: Path) -> None:
    result = run_quick("reader_cost.py", tmp_path)
    configs = result["configs"]
    assert {"hand_set", "reader_tiny", "reranker_tiny"} == configs.keys()
    assert configs["reader_tiny"]["answer_ms"]["n"] == result["questions"]
    assert configs["reranker_tiny"]["rerank_ms"]["n"] == result["questions"]
    assert "rerank_ms" not in configs["hand_set"]


def test_put_searchable_quick(tmp_path: Path) -> None:
    result = run_quick("put_searchable.py", tmp_path)
    assert set(result["corpora"]) == {"seeds", "scifact"}
    for corpus in result["corpora"].values():
        assert corpus["put_to_searchable"]["n"] == result["rounds"]
        assert corpus["delete_to_gone"]["n"] == result["rounds"]
    assert result["corpora"]["scifact"]["model"] == "fake"
