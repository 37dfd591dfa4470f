"""The evaluation's vocabulary (``qa.evaluation.asked``): the service's unknown-names test,
with one article taken out of the index."""

from __future__ import annotations

from pathlib import Path

from qa.config import Settings
from qa.evaluation.asked import Vocabulary
from qa.index.builder import build_index
from qa.index.generation import load_index


def test_the_vocabulary_knows_what_the_index_knows_less_the_hidden_article(
    tmp_path: Path,
) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "0_00.txt").write_text("Trade with Chile grew in Valparaiso.\n", encoding="utf-8")
    (seeds / "0_01.txt").write_text("The port of Valparaiso is busy.\n", encoding="utf-8")
    (seeds / "1_00.txt").write_text("Seattle and Chile signed a deal.\n", encoding="utf-8")
    settings = Settings(model="fake", seeds_dir=seeds, index_dir=tmp_path / "emb")
    build_index(settings)
    gen = load_index(settings)
    vocab = Vocabulary(gen)
    everything = vocab.known_without(None)
    words = ["Chilean", "Valparaiso", "Seattle", "The", "Zanzibar", "Chx"]
    assert [everything(w) for w in words] == [gen.knows(w) for w in words]
    assert [everything(w) for w in words] == [True, True, True, True, False, False]
    without_0 = vocab.known_without(0)  # both files of article 0 are hidden
    assert not without_0("Valparaiso")
    assert without_0("Chilean")  # article 1 says "Chile" too
    assert without_0("Seattle")
