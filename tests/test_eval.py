"""``qa eval``: the metrics, the BEIR and XQuAD readers and runs, and the question-file command.

All with the deterministic fake embedder on data made here, so the figures can be checked by hand.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import pytest

from qa.cli import main
from qa.config import Settings
from qa.errors import ConfigError
from qa.evaluation import beir
from qa.evaluation.beir import evaluate_beir, evaluate_beir_whole_documents, read_beir
from qa.evaluation.metrics import exact_match, ndcg_at_k, recall_at_k, token_f1
from qa.evaluation.squad import evaluate_xquad, read_squad
from qa.index.generation import read_documents

# No QA_* variable from the caller's shell may change a figure.
pytestmark = pytest.mark.usefixtures("no_env")


def fake_settings(**changes: Any) -> Settings:
    return Settings(model="fake", **changes)


# -- metrics --------------------------------------------------------------------------------
def test_ndcg_matches_hand_computed_values() -> None:
    # DCG = 1/log2(2) + 2/log2(4) = 2; ideal = 2/log2(2) + 1/log2(3).
    assert ndcg_at_k(["a", "b", "c"], {"a": 1, "c": 2}, 10) == pytest.approx(
        2 / (2 + 1 / math.log2(3))
    )
    assert ndcg_at_k(["a", "b"], {"a": 1}, 10) == 1.0
    assert ndcg_at_k(["b", "a"], {"a": 1}, 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(["x", "y"], {"a": 1}, 10) == 0.0


def test_ndcg_cuts_at_k_and_ignores_non_relevant_grades() -> None:
    ranking = [f"d{i}" for i in range(12)]
    # The only relevant document is at rank 11: outside the top 10.
    assert ndcg_at_k(ranking, {"d10": 1}, 10) == 0.0
    # Grade 0 judgements are neither gain nor part of the ideal ranking.
    assert ndcg_at_k(["z", "a"], {"z": 0, "a": 1}, 10) == pytest.approx(1 / math.log2(3))
    # Ideal DCG only counts the best k judged documents.
    qrels = {f"d{i}": 1 for i in range(12)}
    assert ndcg_at_k(ranking, qrels, 10) == pytest.approx(1.0)
    assert ndcg_at_k([], {"a": 1}, 10) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0


def test_token_f1_is_squads() -> None:
    assert token_f1("The Denver Broncos", ["Denver Broncos"]) == 1.0
    # 2 shared tokens of 4 predicted and 2 gold: precision 0.5, recall 1.
    assert token_f1("Broncos of Denver, finally", ["Denver Broncos"]) == pytest.approx(2 / 3)
    assert token_f1("nothing", ["Denver"]) == 0.0
    assert token_f1(None, ["Denver"]) == 0.0
    assert token_f1("Panthers", ["Denver", "the Panthers"]) == 1.0


def test_exact_match_is_squads() -> None:
    assert exact_match("The Denver Broncos.", ["Denver Broncos"])
    assert not exact_match("Denver Broncos won", ["Denver Broncos"])
    assert not exact_match(None, ["Denver"])


def test_recall_counts_relevant_documents_in_the_first_k() -> None:
    assert recall_at_k(["a", "b", "c"], {"a": 1, "c": 1, "d": 2}, 100) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "b", "c"], {"c": 1}, 2) == 0.0
    assert recall_at_k(["a"], {"a": 0}, 100) == 0.0


# -- BEIR -----------------------------------------------------------------------------------
CORPUS = [
    {"_id": "d1", "title": "Volcano eruptions", "text": "Magma and basalt lava flows."},
    {"_id": "d2", "title": "Honey bees", "text": "Pollination by worker bees in spring."},
    {"_id": "d3", "title": "Glaciers", "text": "Ice sheets retreat as oceans warm."},
    {"_id": "d4", "title": "Chess openings", "text": "The Sicilian defence starts with c5."},
    {"_id": "id with spaces/and slash", "title": "Tea", "text": "Oolong leaves oxidise."},
]
QUERIES = [
    {"_id": "q1", "text": "basalt magma"},  # only d1 shares words with it
    {"_id": "q2", "text": "pollination worker"},  # d2
    {"_id": "q3", "text": "zzz unknown words"},  # no document shares a word: nothing found
    {"_id": "q4", "text": "oolong oxidise"},  # the document with an unsafe id
    {"_id": "q5", "text": "glaciers"},  # has no qrels in the test split
]
QRELS = [
    ("q1", "d1", 1),
    ("q2", "d2", 2),
    ("q2", "d4", 0),  # judged non-relevant: ignored
    ("q3", "d3", 1),
    ("q4", "id with spaces/and slash", 1),
]


def make_beir(folder: Path, *, gz: bool = True) -> Path:
    folder.mkdir(parents=True)
    lines = "".join(json.dumps(d) + "\n" for d in CORPUS)
    if gz:
        with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write(lines)
    else:
        (folder / "corpus.jsonl").write_text(lines, encoding="utf-8")
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in QUERIES), encoding="utf-8"
    )
    (folder / "qrels").mkdir()
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in QRELS]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq5\td3\t1\n", encoding="utf-8"
    )
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_read_beir(tmp_path: Path, gz: bool) -> None:
    data = read_beir(make_beir(tmp_path / "tiny", gz=gz), split="test")
    assert data.name == "tiny"
    assert [d[0] for d in data.corpus] == [d["_id"] for d in CORPUS]
    assert data.corpus[0] == ("d1", "Volcano eruptions", "Magma and basalt lava flows.")
    assert data.qrels["q2"] == {"d2": 2, "d4": 0}
    assert "q5" not in data.qrels


def test_read_beir_names_what_is_missing(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "tiny")
    with pytest.raises(ConfigError, match=r"dev\.tsv"):
        read_beir(folder, split="dev")


def test_beir_bm25_figures_are_exact(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "tiny")
    out = evaluate_beir(folder, fake_settings(retrieval_mode="bm25"), split="test", limit=None)
    # q1, q2, q4 find their one relevant document first; q3 finds nothing; q5 has no qrels.
    assert out["queries"] == 4
    assert out["documents"] == 5
    assert out["ndcg_at_10"] == 0.75
    assert out["recall_at_100"] == 0.75
    assert out["mode"] == "bm25"
    assert "published" not in out


def test_beir_dense_and_hybrid_rank_every_document(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "tiny")
    for mode in ("dense", "hybrid"):
        out = evaluate_beir(folder, fake_settings(retrieval_mode=mode), split="test", limit=None)
        # Dense scores every document, so every relevant one is within the first 100.
        assert out["recall_at_100"] == 1.0
        assert 0.0 < out["ndcg_at_10"] <= 1.0


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A made-up published-figures table: the reports must carry the entry of their dataset."""
    entry = {"dense": {"system": "made up", "ndcg_at_10": 0.1234, "recall_at_100": 0.5678}}
    monkeypatch.setattr(beir, "PUBLISHED", {"scifact": entry, "other": {"bm25": {}}})
    return entry


def test_beir_whole_documents_ranks_documents_not_passages(
    tmp_path: Path, published: dict[str, Any]
) -> None:
    folder = make_beir(tmp_path / "scifact")
    out = evaluate_beir_whole_documents(folder, fake_settings(), split="test", limit=2)
    # q1 and q2 share words with their one relevant document only: it comes first.
    assert (out["queries"], out["ndcg_at_10"], out["recall_at_100"]) == (2, 1.0, 1.0)
    assert out["mode"] == "dense-whole-documents"
    assert out["published"] == published
    out = evaluate_beir_whole_documents(folder, fake_settings(), split="test", limit=None)
    assert out["queries"] == 4
    assert out["recall_at_100"] == 1.0  # five documents, all ranked
    assert 0.75 < out["ndcg_at_10"] < 1.0  # q3 shares no word with its document


def test_beir_limit_split_and_published_figures(tmp_path: Path, published: dict[str, Any]) -> None:
    folder = make_beir(tmp_path / "scifact")
    out = evaluate_beir(folder, fake_settings(retrieval_mode="bm25"), split="test", limit=1)
    assert out["queries"] == 1
    assert out["ndcg_at_10"] == 1.0
    assert out["published"] == published
    out = evaluate_beir(folder, fake_settings(retrieval_mode="bm25"), split="train", limit=None)
    assert (out["queries"], out["ndcg_at_10"]) == (1, 1.0)


def test_beir_cache_reuses_the_index(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "tiny")
    cache = tmp_path / "cache"
    first = evaluate_beir(
        folder, fake_settings(retrieval_mode="bm25"), split="test", limit=None, cache=cache
    )
    (index,) = cache.iterdir()
    built = (index / "CURRENT").read_text(encoding="utf-8")
    second = evaluate_beir(
        folder, fake_settings(retrieval_mode="bm25"), split="test", limit=None, cache=cache
    )
    assert (index / "CURRENT").read_text(encoding="utf-8") == built  # no new generation
    assert second["ndcg_at_10"] == first["ndcg_at_10"]


def test_beir_title_is_the_article_title(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "tiny")
    cache = tmp_path / "cache"
    evaluate_beir(folder, fake_settings(retrieval_mode="bm25"), split="test", limit=1, cache=cache)
    (index,) = cache.iterdir()
    generation = (index / "CURRENT").read_text(encoding="utf-8").strip()
    titles = {src: d["title"] for src, d in read_documents(index, generation).items()}
    assert titles["d1.txt"] == "Volcano eruptions"
    assert titles["doc-0000004.txt"] == "Tea"  # unsafe id, safe file name


# -- XQuAD ----------------------------------------------------------------------------------
SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Mount_Etna",
            "paragraphs": [
                {
                    "context": "Mount Etna is a volcano in Sicily. It erupted in 1669 and "
                    "destroyed the town of Nicolosi.",
                    "qas": [
                        {
                            "id": "1",
                            "question": "In which year did the volcano erupt and destroy Nicolosi?",
                            "answers": [{"text": "1669", "answer_start": 47}],
                        }
                    ],
                },
                {
                    "context": "Oranges and lemons grow on the slopes near Catania.",
                    "qas": [
                        {
                            "id": "2",
                            "question": "What fruit grows on the slopes near Catania?",
                            "answers": [{"text": "Oranges and lemons", "answer_start": 0}],
                        }
                    ],
                },
            ],
        },
        {
            "title": "Chess",
            "paragraphs": [
                {
                    "context": "The Sicilian Defence begins with the move c5 against e4.",
                    "qas": [
                        {
                            "id": "3",
                            "question": "Which move begins the Sicilian Defence?",
                            "answers": [{"text": "c5", "answer_start": 40}],
                        }
                    ],
                }
            ],
        },
    ],
}


def make_squad(path: Path) -> Path:
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    return path


def test_read_squad(tmp_path: Path) -> None:
    documents, questions = read_squad(make_squad(tmp_path / "squad.json"))
    assert [stem for stem, _ in documents] == [
        "000_Mount_Etna_0",
        "000_Mount_Etna_1",
        "001_Chess_0",
    ]
    assert documents[0][1].startswith("Mount Etna\n\nMount Etna is a volcano")
    assert questions[1].source == "000_Mount_Etna_1.txt"
    assert questions[1].answers == ["Oranges and lemons"]


def test_read_squad_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="SQuAD"):
        read_squad(path)


def test_xquad_figures(tmp_path: Path) -> None:
    path = make_squad(tmp_path / "squad.json")
    settings = fake_settings(retrieval_mode="hybrid", answer_threshold=0.0)
    out = evaluate_xquad(path, settings, k=1, limit=None)
    assert (out["questions"], out["paragraphs"], out["k"]) == (3, 3, 1)
    assert out["paragraph_at_1"] == out["paragraph_in_top1"] == 1.0
    assert out["abstained"] == 0.0
    assert out["answer_contains_gold"] == 1.0
    assert out["answer_contains_gold_when_answered"] == 1.0
    assert out["answer_sentence_has_gold_with_threshold_0"] == 1.0
    assert 0.0 < out["answer_token_f1"] < 1.0  # whole sentences, not the bare spans


def test_xquad_abstentions_count_as_misses(tmp_path: Path) -> None:
    path = make_squad(tmp_path / "squad.json")
    out = evaluate_xquad(path, fake_settings(answer_threshold=1.01), k=5, limit=2)
    assert out["questions"] == 2
    assert out["paragraph_in_top5"] == 1.0
    assert out["abstained"] == 1.0
    assert out["answer_contains_gold"] == 0.0
    assert out["answer_contains_gold_when_answered"] == 0.0
    # Without the threshold the same passages give the right sentences.
    assert out["answer_sentence_has_gold_with_threshold_0"] == 1.0


# -- qa eval --questions, end to end ----------------------------------------------------------
def test_eval_questions_command_end_to_end(
    seeds_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeds = seeds_dir
    evidence = (
        "Midwest USA Chinese Chamber of Commerce is a non-profit business association "
        "founded in Cincinnati in 2005"
    )
    assert evidence in (seeds / "000_b12d02cff80cfccd.txt").read_text(encoding="utf-8")
    questions = tmp_path / "questions.jsonl"
    rows = [
        {
            "question": "In what year was the Midwest USA Chinese Chamber of Commerce founded "
            "in Cincinnati?",
            "answers": ["2005"],
            "source": "000_b12d02cff80cfccd.txt",
            "evidence": evidence,
        },
        {"question": "What is the airspeed of an unladen swallow?", "answers": []},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    monkeypatch.setenv("QA_MODEL", "fake")

    def run(*extra: str) -> dict[str, Any]:
        argv = ["eval", "--questions", str(questions), "--seeds", str(seeds)]
        argv += ["--index", str(tmp_path / "index"), "--json", *extra]
        assert main(argv) == 0
        result: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        return result

    out = run("--threshold", "1.0")
    assert (out["questions"], out["answerable"], out["unanswerable"]) == (2, 1, 1)
    assert out["hit_at_10"] == 1.0
    assert out["hit_at_1"] <= out["hit_at_5"] <= out["hit_at_10"]
    assert 0.0 < out["mrr"] <= 1.0
    # Threshold 1.0: everything abstains, the unanswerable question rightly so.
    assert out["unanswerable_abstained"] == 1
    assert out["abstention_recall"] == 1.0
    assert out["wrongly_abstained"] == 1
    assert out["answer_accuracy"] == 0.0

    out = run("--threshold", "0")
    assert out["hit_at_10"] == 1.0
    assert out["wrongly_abstained"] == 0
    assert out["unanswerable_abstained"] == 0
    assert out["abstention_recall"] == 0.0
    assert out["answer_accuracy"] == 1.0


def test_eval_beir_command_with_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_beir(tmp_path / "tiny")
    monkeypatch.setenv("QA_MODEL", "fake")
    cache = tmp_path / "cache"
    outs = []
    for mode in ("bm25", "hybrid"):
        argv = ["eval", "--beir", str(folder), "--mode", mode, "--cache", str(cache), "--json"]
        assert main(argv) == 0
        outs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert [o["mode"] for o in outs] == ["bm25", "hybrid"]
    assert all(0.0 < o["ndcg_at_10"] <= 1.0 for o in outs)
    (index,) = cache.iterdir()  # both modes used one cached index
    assert len(list((index / "generations").iterdir())) == 1
