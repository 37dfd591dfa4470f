"""Metadata and site-chrome rules on the five seed articles, and on synthetic edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.ingest.articles import parse_article, parse_date
from qa.ingest.seeds import read_seed

from .conftest import SEEDS


def article(name: str):
    return parse_article(read_seed(SEEDS, SEEDS / name))


def indexed_text(name: str) -> str:
    a = article(name)
    return "\n".join(a.text[s:e] for s, e in a.segments)


@pytest.mark.parametrize(
    ("name", "title", "date", "publisher"),
    [
        (
            "000_b12d02cff80cfccd.txt",
            "Midwest USA Continues Striving for Win-Win Collaboration with Chongqing at SCE2023 "
            "| Insights",
            None,
            None,
        ),
        (
            "001_f9d77ace89610aea.txt",
            "Chinese industry delegation starts first visit to US in three years",
            "2023-05-25",
            "Global Times",
        ),
        (
            "002_1f562bc15a6ce5b9.txt",
            "Joint Delegation from American California and Mexican Baja California Visits "
            "Changchun Municipal Foreign Affairs Office",
            "2023-08-28",
            "CCFAO",
        ),
        (
            "003_e91a4a3bcb4d6e86.txt",
            "International delegates explore Chongqing's western development potential",
            "2024-07-09",
            "iChongqing",
        ),
        (
            "004_e482e4571cd424a3.txt",
            "Brief Introduction to Chongqing and its Cooperation with the United States",
            "2014-10-27",
            "中美省州合作专题子站",
        ),
    ],
)
def test_seed_metadata(name: str, title: str, date: str | None, publisher: str | None) -> None:
    a = article(name)
    assert a.title == title
    assert a.date == date
    assert a.publisher == publisher


@pytest.mark.parametrize(
    ("name", "chrome"),
    [
        ("003_e91a4a3bcb4d6e86.txt", "Home\xa0>\xa0News\xa0>\xa0Contents"),
        ("003_e91a4a3bcb4d6e86.txt", "fontLarger fontSmaller"),
        ("003_e91a4a3bcb4d6e86.txt", "Editor:\xa0Li Shimeng"),
        ("002_1f562bc15a6ce5b9.txt", "【Fonts: A+ A A- Print"),
        ("004_e482e4571cd424a3.txt", "Home>News Content"),
        ("004_e482e4571cd424a3.txt", "Welcome to CNUS Appbeplay"),
    ],
)
def test_site_chrome_is_not_indexed(name: str, chrome: str) -> None:
    assert chrome in article(name).text
    assert chrome not in indexed_text(name)


def test_duplicated_photo_caption_is_indexed_once() -> None:
    caption = (
        "The 2023 China-California Business Forum is held in Los Angeles on May 22, 2023. "
        "Photo: Courtesy of CCCME"
    )
    a = article("001_f9d77ace89610aea.txt")
    assert a.text.count(caption) == 2
    assert indexed_text("001_f9d77ace89610aea.txt").count(caption) == 1


def test_content_and_metadata_lines_are_kept() -> None:
    text = indexed_text("004_e482e4571cd424a3.txt")
    assert "approved 535 US-funded enterprises" in text
    assert "Add Time:2014-10-27" in text  # dates stay searchable
    assert "Little Rock" in indexed_text("002_1f562bc15a6ce5b9.txt")


def test_segments_point_into_the_exact_file_text() -> None:
    for path in sorted(SEEDS.glob("*.txt")):
        a = article(path.name)
        raw = path.read_bytes().decode("utf-8")
        assert a.text == raw
        for s, e in a.segments:
            assert 0 <= s < e <= len(raw)
            assert raw[s:e] == raw[s:e].strip()


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("May 25, 2023 01:11 AM", "2023-05-25"),
        ("2023-08-28", "2023-08-28"),
        ("July 9, 2024", "2024-07-09"),
        ("2014-10-27 00:00:00", "2014-10-27"),
        ("Sept. 5, 2023", None),  # "Sept" is not a strptime month name: refused, not guessed
        ("Sep. 5, 2023", "2023-09-05"),
        ("not a date", None),
    ],
)
def test_parse_date(value: str, iso: str | None) -> None:
    assert parse_date(value) == iso


def test_markdown_and_html_articles(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Sister cities\n\nDate: 2020-01-02\n\nBody text here.\n")
    md = parse_article(read_seed(tmp_path, tmp_path / "a.md"))
    assert md.title == "Sister cities"
    assert md.date == "2020-01-02"

    html = (
        "<html><head><title>Page title</title><style>p{}</style></head><body>"
        "<nav>Home &gt; News</nav><p>First &amp; second sentence.</p>"
        "<script>var x=1;</script><p>Third one.</p></body></html>"
    )
    (tmp_path / "b.html").write_text(html)
    h = parse_article(read_seed(tmp_path, tmp_path / "b.html"))
    assert h.title == "Page title"
    runs = [html[s:e] for s, e in h.segments]
    assert runs == ["First &amp; second sentence.", "Third one."]


def test_bom_is_not_indexed(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffTitle line\n\nBody.".encode())
    a = parse_article(read_seed(tmp_path, tmp_path / "bom.txt"))
    assert a.title == "Title line"
    assert a.segments[0][0] == 1  # offsets count the BOM character, as decode("utf-8") does
