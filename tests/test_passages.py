"""Keyword passages (passages.py): cut for people searching, whatever the text tower's context.

A phrase of up to OVERLAP_WORDS + 1 words lies whole in one passage, on its page; the passages the
catalog keeps as a document's chunks come in batch after batch are those of one cut of the whole
page; the page text they come from is the page's (whitespace aside).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from mmsearch import passages
from mmsearch.catalog import Catalog
from mmsearch.chunking import iter_chunks
from mmsearch.textfiles import Page

TOYCLIP = Path(__file__).parent / "fixtures" / "toyclip"
WORDS = ("harbour boat quay gull tide net rope anchor mast sail keel deck crew storm calm north south east west "
         "lighthouse 4.19.0 Keep-Alive résumé x=5").split()


def text_of(n: int, seed: int, cjk: bool = False) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if cjk and rng.random() < 0.3:
            out.append("".join(rng.choice("机器学习是人工智能的一个分支") for _ in range(rng.randint(2, 30))))
        else:
            out.append(rng.choice(WORDS))
        out.append(rng.choice([" ", " ", " ", "\n", "\n\n", "  "]))
    return "".join(out)


def chunks_of(text: str, page: int | None = 1, offset: int = 0, max_tokens: int = 30):
    from mmsearch.bundle import load_bundle
    from mmsearch.encoder import chunk_tokenizer

    tokenizer = chunk_tokenizer(load_bundle(TOYCLIP))
    return [(c.page, c.start, c.end, c.text) for c in iter_chunks([Page(page, text, offset)], tokenizer,
                                                                  max_tokens=max_tokens, overlap_tokens=max_tokens // 5)]


@pytest.mark.parametrize("cjk", [False, True])
def test_the_page_text_comes_back_from_its_chunks(cjk):
    text = text_of(3000, seed=1, cjk=cjk)
    [(page, offset, rebuilt)] = list(passages.rebuild_pages(chunks_of(text)))
    start = len(text) - len(text.lstrip())
    assert page == 1 and offset == start
    assert rebuilt.split() == text.split()
    assert len(rebuilt) == len(text.rstrip()) - start  # same offsets: the gaps put back as spaces


@pytest.mark.parametrize("cjk", [False, True])
def test_every_phrase_up_to_the_overlap_lies_in_one_passage(cjk):
    text = text_of(4000, seed=2, cjk=cjk)
    cut = passages.from_chunks(chunks_of(text))
    words = [(m.start(), m.end()) for m in passages._word().finditer(text)]
    rng = random.Random(3)
    for _ in range(400):
        n = rng.randint(1, passages.OVERLAP_WORDS + 1)
        i = rng.randrange(len(words) - n + 1)
        a, b = words[i][0], words[i + n - 1][1]
        assert any(p.start <= a and b <= p.end for p in cut), (n, text[a:b])
    assert all(len(list(passages._word().finditer(p.text))) <= passages.PASSAGE_WORDS for p in cut)
    assert all(text[p.start : p.end].split() == p.text.split() for p in cut)


def test_passages_kept_in_step_batch_by_batch_are_those_of_one_cut(tmp_path):
    """A document's chunks reach the catalog 64 at a time, pages after pages; scanned pages later; a
    text file in segments. Whatever the batches, the passages are those of the whole page cut once."""
    pdf = [(n, chunks_of(text_of(rng_n, seed=n, cjk=n % 2 == 0), page=n)) for n, rng_n in ((1, 900), (2, 40), (3, 1500))]
    segments = [text_of(1200, seed=9), text_of(800, seed=10, cjk=True)]
    txt = chunks_of(segments[0], page=None) + chunks_of(segments[1], page=None, offset=len(segments[0]))
    catalog = Catalog(tmp_path)
    root = catalog.add_root("/d")
    expected = {}
    rng = random.Random(4)
    for name, chunks in (("a.pdf", [c for _, cs in pdf[:2] for c in cs]), ("b.txt", txt)):
        with catalog.write() as conn:
            fid, _ = catalog.put_file(conn, path=f"/d/{name}", root_id=root, size=1, mtime_ns=1, content_hash=name,
                                      kind="document")
            at = 0
            while at < len(chunks):
                n = rng.choice([1, 7, 64, 200])
                catalog.add_items(conn, fid, "document", np.zeros((len(chunks[at : at + n]), 4), np.float32),
                                  chunks[at : at + n])
                at += n
            if name == "a.pdf":  # a scanned page read later, in a transaction of its own
                catalog.add_items(conn, fid, "document", np.zeros((len(pdf[2][1]), 4), np.float32), pdf[2][1])
                chunks = chunks + pdf[2][1]
        expected[fid] = [(p.page, p.start, p.end, p.text) for p in passages.from_chunks(sorted(chunks, key=lambda c: (c[0] or 0, c[1])))]
    for fid, want in expected.items():
        got = catalog.conn.execute('SELECT page, start, "end", text FROM passages WHERE file_id = ? ORDER BY page, start',
                                   (fid,)).fetchall()
        assert got == want
    # A phrase across the two segments of the text file is found as a phrase.
    joined = " ".join(segments[0].split()[-5:] + segments[1].split()[:3])
    hits = catalog.keyword_search(joined, 3)
    assert hits and int(hits[0][1]) >= 2
    # And the keyword index holds exactly the passages (nothing left of the ones cut again).
    count = catalog.conn.execute("SELECT count(*) FROM passages").fetchone()[0]
    assert catalog.conn.execute("SELECT count(*) FROM passages_fts WHERE passages_fts MATCH 'harbour OR 机'"
                                ).fetchone()[0] <= count
    with catalog.write() as conn:
        catalog.delete_files(conn, list(expected))
    assert catalog.conn.execute("SELECT count(*) FROM passages").fetchone()[0] == 0
    assert catalog.keyword_search("harbour", 5) == []
