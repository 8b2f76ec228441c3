"""A plain keyword query from the command line is answered by cli_keyword.py, without the library: it
must print exactly what the library's answer prints (cli_query.run_query), table and JSON, on real
text nobody here wrote, and leave every other line to the library."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.documents import corpus_pages, sample_cjk_runs, sample_phrases  # noqa: E402
from benchmarks.format_corpus import write_format_corpus  # noqa: E402
from benchmarks.real_corpus import library_paragraphs, write_corpus  # noqa: E402

from mmsearch.cli_keyword import answer  # noqa: E402
from mmsearch.cli_query import parse_query_args, run_query  # noqa: E402


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, toyclip):
    """The real corpus, one file of each office format, an accented note and a photo, indexed."""
    from engine_helpers import picture

    from mmsearch import Index

    root = tmp_path_factory.mktemp("kw")
    corpus = write_corpus(root / "corpus")
    formats = write_format_corpus(root / "corpus" / "formats", library_paragraphs(), per_file=12)
    (root / "corpus" / "Résumé notes.txt").write_text("Le café crème du matin, puis la crème brûlée.\n" * 3)
    # A name that is not UTF-8 (printed escaped, its bytes in JSON) and one with a control character.
    odd = os.fsencode(root / "corpus") + b"/caf\xe9 okapi.txt"
    with open(odd, "w") as f:
        f.write("The okapi grazes near the river bend at dawn.\n")
    (root / "corpus" / "tab\there okapi.txt").write_text("An okapi drinks from the river at dusk.\n")
    picture(3).save(root / "corpus" / "photo.png")
    with Index(root / "index", model=toyclip, device="cpu") as idx:
        idx.index([root / "corpus"])
    return root / "index", corpus, formats


def queries(corpus, formats) -> list[str]:
    pages = corpus_pages(corpus)
    out = [p for p, _ in sample_phrases(pages, 40, seed=7, words=4)]
    out += [p for p, _ in sample_phrases(pages, 10, seed=8, words=1)]
    out += [p for p, _ in sample_cjk_runs(corpus_pages(corpus, cjk=True), 10, seed=9)]
    for paras in formats.paragraphs.values():
        out.append(" ".join(paras[3].split()[5:9]))
    out += [
        out[0] + " zzqxv",  # all but one word: the "some of the words" level
        "zzqxv wwkjq",  # nothing
        "the",  # a word nearly every passage holds: k files from far more passages
        "CRÈME brulee", "resume", "okapi river",  # case and accents aside
        '" - * ^', "Keep-Alive", "4.19.0, 18 August", "(function)",  # FTS5 syntax and punctuation stay words
    ]
    return out


def both(capsys, args: list[str]) -> tuple[str, str]:
    """What the console script's keyword path prints, and what the library's run_query prints."""
    parsed = parse_query_args(args)
    assert parsed is not None and answer(parsed), args
    fast = capsys.readouterr()
    run_query(**parsed)
    slow = capsys.readouterr()
    assert fast.err == slow.err == ""
    return fast.out, slow.out


def test_a_keyword_query_prints_what_the_library_prints(indexed, capsys):
    index, corpus, formats = indexed
    found = 0
    for i, query in enumerate(queries(corpus, formats)):
        k = (10, 3, 1, 25)[i % 4]
        fast, slow = both(capsys, ["--index", str(index), "--mode", "keyword", "-k", str(k), "--", query])
        assert fast == slow, query
        fast, slow = both(capsys, ["--index", str(index), "--mode", "keyword", "-k", str(k), "--json", "--", query])
        assert fast == slow, query
        found += bool(json.loads(fast))
        if query == "okapi river":  # the odd names went through both paths alike
            assert {h["path_encoding"] for h in json.loads(fast)} == {"bytes", "utf-8"}
    assert found >= 60  # the phrases are found (what is compared is not a list of empty answers)


def test_documents_still_waiting_for_vectors_are_said(indexed, tmp_path, capsys):
    """A query in between the words and the vectors says how many documents are searchable by words
    only, as the library does."""
    index = tmp_path / "index"
    shutil.copytree(indexed[0], index)
    with sqlite3.connect(index / "catalog.db") as conn:
        conn.execute("INSERT INTO vectors_pending(item_id) SELECT id FROM items WHERE file_id IN"
                     " (SELECT id FROM files WHERE kind = 'document' LIMIT 3)")
    fast, slow = both(capsys, ["--index", str(index), "--mode", "keyword", "function"])
    assert fast == slow and "(3 documents are searchable by words only" in fast


@pytest.mark.parametrize("extra", [
    ["--mode", "hybrid"], ["--type", "document"], ["--under", "/"], ["--after", "2020-01-01"],
    ["--before", "2030-01-01"], ["--model", "toyclip"], ["--device", "cpu"], ["--variant", "fp32"],
    ["--min-similarity", "0.2"], ["-k", "0"], ["--index", "/elsewhere"],
])
def test_other_lines_go_to_the_library(indexed, capsys, extra):
    parsed = parse_query_args(["--index", str(indexed[0]), "--mode", "keyword", "function", *extra])
    assert parsed is not None and not answer(parsed)
    assert capsys.readouterr().out == ""


def test_an_index_it_cannot_read_as_it_is_goes_to_the_library(indexed, tmp_path, capsys):
    """No index there, an older schema (the library migrates it), a catalog that is not one: the
    library answers, or says what is wrong."""
    from mmsearch import catalog

    assert not answer(parse_query_args(["--index", str(tmp_path / "none"), "--mode", "keyword", "x"]))
    older = tmp_path / "older"
    shutil.copytree(indexed[0], older)
    with sqlite3.connect(older / "catalog.db") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(catalog.SCHEMA_VERSION - 1),))
    assert not answer(parse_query_args(["--index", str(older), "--mode", "keyword", "function"]))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "catalog.db").write_bytes(b"not a database at all" * 100)
    assert not answer(parse_query_args(["--index", str(broken), "--mode", "keyword", "function"]))
    assert capsys.readouterr().out == ""


def test_it_reads_the_schema_the_catalog_writes():
    """A new catalog schema must be checked against cli_keyword's SQL before it answers from it."""
    from mmsearch import catalog, cli_keyword

    assert cli_keyword.SCHEMA_VERSION == catalog.SCHEMA_VERSION


def test_the_console_script_answers_without_loading_the_library(indexed):
    """`mmsearch query --mode keyword` loads none of the library's modules beyond keyword.py and the
    printing, nor typing, dataclasses, pathlib or logging (each a tenth of a cold query)."""
    root = str(Path(__file__).resolve().parents[1])
    # -S: without site-packages, whose editable-install finder (a development checkout) loads pathlib
    # at start-up; a wheel's install has none, and the keyword path needs nothing from there.
    code = f"""
import json, sys
sys.path.insert(0, {root!r})
sys.argv = ["mmsearch", "query", "--index", {str(indexed[0])!r}, "--mode", "keyword", "--json", "function"]
from mmsearch.__main__ import main
main()
print(json.dumps(sorted(m for m in sys.modules if m.startswith("mmsearch") or m in
      ("typing", "dataclasses", "pathlib", "logging", "numpy", "typer"))), file=sys.stderr)
"""
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)
    assert json.loads(proc.stderr.splitlines()[-1]) == [
        "mmsearch", "mmsearch.__main__", "mmsearch.cli_keyword", "mmsearch.cli_output", "mmsearch.cli_query",
        "mmsearch.filenames", "mmsearch.keyword"]


@pytest.mark.parametrize("home", ["", "~/elsewhere", "/srv/mmsearch/", "relative/home"])
def test_the_default_index_is_the_librarys(home, monkeypatch):
    from mmsearch import cli_keyword, paths

    monkeypatch.setenv("MMSEARCH_HOME", home)
    assert cli_keyword._default_index() == str(paths.default_index_dir())
