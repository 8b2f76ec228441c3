"""Exact matches first, and marked: a default `mmsearch query WORD` over a toy world (pictures, their
captions as documents, a few notes) where exactly N files hold a rare word lists those N files first,
each marked "words" or "both"; the table says how many files hold the word and shows the rest apart;
what is found by meaning alone and is not close enough (the model's relevance floor) is not shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import toyworld

MMSEARCH = os.path.join(os.path.dirname(sys.executable), "mmsearch")
ZEBRA = {
    "safari.txt": "On the second day of the safari we saw a zebra drinking at the river with its foal.",
    "notes/stripes.md": "# Stripes\n\nWhy does the Zebra have stripes? Flies land less on striped hides.",
    "crossing.txt": ("The council painted a new zebra crossing outside the school. " * 40).strip(),
}
OTHERS = {
    "horses.txt": "Horses and donkeys graze in the field; a foal follows its mother to the river.",
    "shapes.txt": "a small red circle above a large blue square",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, toyclip):
    root = tmp_path_factory.mktemp("hybrid")
    files = root / "files"
    toyworld.generate(files, 40, 3, caption_docs=True, max_size=400)
    for name, text in {**ZEBRA, **OTHERS}.items():
        (files / name).parent.mkdir(parents=True, exist_ok=True)
        (files / name).write_text(text)
    index = root / "index"
    done = subprocess.run([MMSEARCH, "index", str(files), "--index", str(index), "--model", str(toyclip),
                           "--device", "cpu", "--no-ocr", "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return files, index


def query(index: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MMSEARCH, "query", *args, "--index", str(index)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("word", ["zebra", "Zebra", "ZEBRA"])
def test_the_files_holding_a_rare_word_come_first_and_marked(world, word):
    files, index = world
    done = query(index, word, "--json")
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    holding = {str(files / name) for name in ZEBRA}
    first = hits[: len(ZEBRA)]
    assert {h["path"] for h in first} == holding
    assert all(h["match"] in ("words", "both") and h["score"] >= 0.75 for h in first)
    assert all(h["match"] == "meaning" and h["score"] < 0.5 for h in hits[len(ZEBRA) :])
    assert all("zebra" in h["snippet"].lower() for h in first)  # the snippet shows why


def test_the_table_says_how_many_files_hold_the_word_and_shows_the_rest_apart(world):
    files, index = world
    done = query(index, "zebra", "-k", "8", "--min-similarity", "-1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == '3 documents contain "zebra":'
    assert lines[1].split() == ["#", "score", "match", "kind", "path", "snippet"]
    assert [line.split()[2] for line in lines[2:5]] in [[m1, m2, m3] for m1 in ("words", "both")
                                                         for m2 in ("words", "both") for m3 in ("words", "both")]
    assert lines[5] == "Related:"
    assert {line.split()[2] for line in lines[6:]} == {"meaning"} and len(lines[6:]) == 5
    # Without --min-similarity the model's floor hides what is found by meaning alone and far.
    default = query(index, "zebra", "-k", "8").stdout.splitlines()
    assert default[0] == '3 documents contain "zebra":' and len(default) < len(lines)


def test_a_snippet_opens_and_closes_on_whole_words_around_the_match(world):
    files, index = world
    hits = json.loads(query(index, "zebra crossing outside", "--json").stdout)
    crossing = next(h for h in hits if h["path"] == str(files / "crossing.txt"))
    snippet = crossing["snippet"]
    assert "zebra crossing outside" in snippet
    inner = snippet.strip("…")
    text = ZEBRA["crossing.txt"]
    assert inner in text  # whole words: the snippet neither opens nor closes inside one
    at = text.index(inner)
    assert (at == 0 or text[at - 1] == " ") and (at + len(inner) == len(text) or text[at + len(inner)] == " ")
