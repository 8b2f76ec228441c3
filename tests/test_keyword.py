"""Keyword search (Catalog.keyword_search) and snippets: what a user typing words relies on.

The catalog is filled directly (no model): each chunk text is an item with a dummy vector, one page
each; the keyword index holds the passages cut from them (passages.py).
"""

from __future__ import annotations

from pathlib import Path

import sys

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from mmsearch.catalog import Catalog, ItemRow
from mmsearch import keyword
from mmsearch.keyword import SNIPPET_CHARS, fts_queries
from mmsearch.search import _Found, _shown_text
from real_corpus import cjk_pairs  # noqa: E402


class Where:
    """Passage id -> (file name, page), read from the catalog."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def __getitem__(self, passage_id: int) -> tuple[str, int | None]:
        row = self.catalog.passages([passage_id])[passage_id]
        return Path(row.path).name, row.page


def fill(folder: Path, texts: dict[str, list[str]]) -> tuple[Catalog, Where]:
    """One document file per key, one chunk per text (page = its position)."""
    catalog = Catalog(folder)
    root = catalog.add_root("/docs")
    with catalog.write() as conn:
        for name, chunks in texts.items():
            fid, _ = catalog.put_file(conn, path=f"/docs/{name}", root_id=root, size=1, mtime_ns=1,
                                      content_hash=name, kind="document", media_type="text/plain")
            spans = [(page, 0, len(text), text) for page, text in enumerate(chunks, 1)]
            catalog.add_items(conn, fid, "document", np.zeros((len(chunks), 4), np.float32), spans)
    return catalog, Where(catalog)


def found(catalog: Catalog, where: Where, query: str, limit: int = 10) -> list[tuple[str, int | None]]:
    return [where[i] for i, _ in catalog.keyword_search(query, limit)]


def test_a_phrase_of_common_words_ranks_its_chunk_first(tmp_path: Path):
    # Many chunks hold some of the words, several hold all of them apart; one holds the phrase.
    filler = [f"the value {i} is set in the table for the state" for i in range(30)]
    apart = [f"set the state {i}; the value of the table is read" for i in range(10)]
    catalog, where = fill(tmp_path, {"a.txt": filler + apart, "b.txt": ["here the value of the state is kept"]})
    hits = catalog.keyword_search("the value of the state", 20)
    assert where[hits[0][0]] == ("b.txt", 1)
    assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:]))  # best first
    # Then the chunks holding all the words, then those holding any.
    names = [where[i][1] for i, _ in hits[1:11]]
    assert all(page > 30 for page in names), names


def test_all_the_words_rank_above_any_of_them(tmp_path: Path):
    catalog, where = fill(tmp_path, {"x.txt": ["red boats in the harbour"] * 5 + ["a red car and blue boats"]})
    assert found(catalog, where, "blue boats red", 1) == [("x.txt", 6)]


def test_hyphenated_and_punctuated_words_are_found(tmp_path: Path):
    catalog, where = fill(tmp_path, {"http.md": ["The server keeps the connection open (Keep-Alive: timeout=5)."],
                                     "other.md": ["Keep your notes; alive and well."]})
    assert found(catalog, where, "Keep-Alive") == [("http.md", 1)]
    assert found(catalog, where, "timeout=5")[0] == ("http.md", 1)
    assert found(catalog, where, 'Keep-Alive" OR "x') == [("http.md", 1)]  # quotes are words, not syntax
    assert catalog.keyword_search('" - * ^', 10) == []
    assert catalog.keyword_search("", 10) == []


def test_accents_are_folded_both_ways(tmp_path: Path):
    catalog, where = fill(tmp_path, {"cv.txt": ["Curriculum: Résumé of Jürgen Müller, née à Genève"]})
    for query in ("Résumé", "resume", "RESUME", "Jurgen Muller", "Genève", "geneve"):
        assert found(catalog, where, query) == [("cv.txt", 1)], query


def test_chinese_japanese_korean_words_are_found_inside_their_runs(tmp_path: Path):
    """Real text (Python's own CJK codec test data): words of 1 to 6 characters inside runs with no
    spaces, and a word broken across a line end."""
    pairs = cjk_pairs()
    texts = {name: [utf8] for name, (_, utf8) in pairs.items() if name in ("gb2312", "big5", "euc_jp", "euc_kr")}
    catalog, where = fill(tmp_path, texts)
    queries = {
        "gb2312": ["计算机", "语言", "派", "程序设计语言", "清晰的语法", "成熟且稳定"],
        "big5": ["資訊科技", "軟體", "開發及測試"],
        "euc_jp": ["プログラミング言語", "開発", "実用"],
        "euc_kr": ["파이썬", "프로그래밍", "문법"],
    }
    for name, words in queries.items():
        for word in words:
            assert word in "".join(texts[name][0].split()), word  # the query really is in the text
            assert (name, 1) in found(catalog, where, word), (name, word)
    assert found(catalog, where, "清晰的语法")[0] == ("gb2312", 1)
    assert found(catalog, where, "量子") == []  # in none of them


def test_queries_are_quoted_words():
    assert fts_queries("Keep-Alive") == ['"Keep-Alive"']
    assert fts_queries('say "hi" now') == ['"say ""hi"" now"', '"say" AND """hi""" AND "now"',
                                           '"say" OR """hi""" OR "now"']
    assert fts_queries("机器学习") == ['"机 器 学 习"']
    assert fts_queries("  ") == [] and fts_queries("- ,") == []


def test_snippet_shows_the_matching_passage_of_a_long_chunk():
    words = " ".join(f"word{i}" for i in range(400))
    text = words + " the Keep-Alive header keeps it open " + words
    snippet = keyword.snippet(text, "keep-alive header")
    assert "Keep-Alive header" in snippet and len(snippet) <= SNIPPET_CHARS + 2
    assert snippet.startswith("…") and snippet.endswith("…")
    # Accents folded, as the search does; the phrase is preferred to a lone word seen earlier.
    text = "résumé " + words + " Jürgen's Résumé and cover letter " + words
    assert "Résumé and cover" in keyword.snippet(text, "resume and cover")
    # A one-character Chinese word is a word.
    text = "中" * 300 + "派" + "中" * 300
    assert "派" in keyword.snippet(text, "派")
    short = "A short chunk."
    assert keyword.snippet(short, "nothing") == short


def test_a_snippet_opens_and_closes_on_whole_words():
    """The issue's "t:alert(6)) zebra": a window cut inside a long word. The match is kept whole."""
    filler = " ".join(f"lorem{i}" for i in range(60))
    text = filler + " javascript:alert(6)) zebra stripes " + filler
    snippet = keyword.snippet(text, "zebra")
    assert "zebra" in snippet and snippet.startswith("…") and snippet.endswith("…")
    body = snippet.strip("…")
    assert body.split(" ")[0] in text.split(" ") and body.split(" ")[-1] in text.split(" ")  # whole words
    assert "t:alert" not in snippet or "javascript:alert(6))" in snippet


def test_a_document_found_by_meaning_shows_its_opening():
    """A document whose chunk holds none of the query's words shows how it opens, not a passage that
    only looks like a match; one that holds them shows the passage around them."""
    later = " ".join(f"later{i}" for i in range(80))
    r = ItemRow(1, 7, "/docs/a.txt", "document", 3, 900, 1500, later, "text/plain", None, None, None, 0)

    class Openings:
        def opening(self, file_id: int) -> str | None:
            return {7: "Annual report of the harbour master. " + later}.get(file_id)

    found = _Found(r.path, 0, r, cosine=0.3, item_id=1)
    snippet = keyword.snippet(_shown_text(found, Openings(), "okapi"), "okapi")
    assert snippet.startswith("Annual report of the harbour master.") and snippet.endswith("…")
    held = keyword.snippet(_shown_text(found, Openings(), "later50"), "later50")
    assert held.startswith("…") and "later50" in held


@pytest.mark.parametrize("query", ["the value", "value"])
def test_scores_stay_best_first_across_tiers(tmp_path: Path, query: str):
    catalog, _ = fill(tmp_path, {"a.txt": ["the value"] * 3 + ["value the"] * 3 + ["the"] * 3 + ["value"] * 3})
    hits = catalog.keyword_search(query, 50)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert len({i for i, _ in hits}) == len(hits)


def test_the_query_as_typed_ranks_above_the_same_words_punctuated_otherwise(tmp_path: Path):
    catalog, where = fill(tmp_path, {"news.txt": ["Released 4.19.0 (18 August 2022)."] * 3,
                                     "readme.txt": ["This is libtasn1 version 4.19.0, 18 August 2022, a long line of text."],
                                     "code.md": ["x = value[0]; len = 1", "-> value[0]=0x01 , len=1."]})
    assert found(catalog, where, "4.19.0, 18 August 2022")[0] == ("readme.txt", 1)
    assert found(catalog, where, "4.19.0 (18 August")[0] == ("news.txt", 1)
    assert found(catalog, where, "value[0]=0x01 , len=1")[0] == ("code.md", 2)
    # Case, accents and spacing aside.
    catalog2, where2 = fill(tmp_path / "2", {"a.txt": ["Résumé — Curriculum"] * 4, "b.txt": ["resume:   curriculum"]})
    assert found(catalog2, where2, "RESUME: curriculum")[0] == ("b.txt", 1)
