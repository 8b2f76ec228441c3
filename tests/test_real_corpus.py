"""The document path on real text nobody here wrote (benchmarks/real_corpus.py): Debian's libtasn1
manual (36 pages) and the shared-mime-info spec (17 pages), Python's language reference, package
READMEs, Python's Chinese/Japanese/Korean codec test texts in their legacy encodings, a Latin-1 file.

A missing source fails with what to install (.ci/run installs the Debian packages where absent).
The larger measure is `python -m benchmarks.documents recall` (1,000 phrases, CLIP's own BPE).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.documents import (chunk_catalog, corpus_pages, keyword_search_of, measure_recall,  # noqa: E402
                                  sample_cjk_runs, sample_phrases)
from benchmarks.real_corpus import cjk_pairs, latin1_source, pdf, prose_bpe, write_corpus  # noqa: E402

TOYCLIP = Path(__file__).parent / "fixtures" / "toyclip"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("real") / "corpus", with_cjk=False)


@pytest.fixture(scope="module")
def corpus_with_cjk(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("real-cjk") / "corpus")


@pytest.mark.parametrize("chunking", ["toyclip", "clip-size"])
def test_phrases_of_any_length_from_anywhere_are_found_on_their_page(corpus_with_cjk, tmp_path, chunking):
    """Random phrases of 4, 8, 16 and 32 words from anywhere in the PDFs' pages and the text files,
    and runs of 2 to 12 Chinese characters, 100 of each: every set >= 99% in the top 3 on a page that
    holds it, whatever the text tower's context cut the chunks to (the toy CLIP's 30 tokens, or
    CLIP's 75 by a CLIP-style BPE): the keyword index holds passages, not the model's chunks. The
    first result's snippet shows the phrase. (`python -m benchmarks.documents recall` does the same
    through the models, hybrid, with more phrases.)"""
    if chunking == "toyclip":
        from mmsearch.bundle import load_bundle
        from mmsearch.encoder import chunk_tokenizer, content_tokens

        bundle = load_bundle(TOYCLIP)
        tokenizer, size = chunk_tokenizer(bundle), content_tokens(bundle)
    else:
        tokenizer, size = prose_bpe(), 75
    pages = corpus_pages(corpus_with_cjk)
    chinese = corpus_pages(corpus_with_cjk, cjk=True)
    assert len(pages) == 36 + 17 + 8 + 2  # the PDFs' pages, the reference's 8 parts, 2 READMEs
    catalog, chunks = chunk_catalog(tmp_path / "index", sorted(corpus_with_cjk.folder.iterdir()), tokenizer, size,
                                    size // 5)
    search = keyword_search_of(catalog)
    sets = {n: sample_phrases(pages, 100, seed=n, words=n) for n in (4, 8, 16, 32)}
    sets["chinese"] = sample_cjk_runs(chinese, 100, seed=1)
    for name, phrases in sets.items():
        result = measure_recall(search, {**pages, **chinese}, phrases)
        assert result["recall"] >= 0.99, (name, result)
        assert result["hit_at_1"] >= 0.95, (name, result)
        assert result["snippet_shows_it"] >= 0.95, (name, result)
    catalog.close()


def test_every_character_of_every_pdf_page_reaches_a_chunk(tmp_path):
    """The defect: each page kept only its first context's worth of tokens (libtasn1's 70,739
    characters were stored as 1,722). Indexed for real, with the committed toy CLIP."""
    from mmsearch import Index

    docs = tmp_path / "docs"
    docs.mkdir()
    source = pdf("libtasn1.pdf")
    (docs / "libtasn1.pdf").write_bytes(source.read_bytes())
    from mmsearch.textfiles import extract_pages

    pages = {p.number: p.text for p in extract_pages(source)}
    assert len(pages) == 36 and sum(map(len, pages.values())) > 70_000
    with Index(tmp_path / "index", model=TOYCLIP, device="cpu") as idx:
        report = idx.index([docs])
        assert report.added == 1 and not report.errors and not report.partial
        covered = {n: bytearray(len(t)) for n, t in pages.items()}
        for page, start, end, text in idx.catalog.conn.execute('SELECT page, start, "end", text FROM items'):
            assert pages[page][start:end] == text
            covered[page][start:end] = b"\x01" * (end - start)
        for n, text in pages.items():
            missing = [ch for i, ch in enumerate(text) if not covered[n][i] and not ch.isspace()]
            assert not missing, (n, "".join(missing)[:80])
        # Words from the end of the last page (its index of functions) are found there.
        words = [w for w in pages[36].split() if any(c.isalpha() for c in w)]
        last = " ".join(words[-3:])
        hits = idx.search(last, mode="keyword", k=3)
        assert hits[0].page == 36 and any(w in hits[0].snippet for w in words[-3:])


def test_legacy_encoded_cjk_and_latin1_files_are_found_by_their_words(tmp_path):
    from mmsearch import Index

    docs = tmp_path / "docs"
    docs.mkdir()
    pairs = cjk_pairs()
    for name in ("gb2312", "big5", "shift_jis", "euc_jp", "euc_kr"):
        (docs / f"{name}.txt").write_bytes(pairs[name][0])
    data, _ = latin1_source()
    (docs / "latin1.txt").write_bytes(data)
    with Index(tmp_path / "index", model=TOYCLIP, device="cpu") as idx:
        report = idx.index([docs])
        assert report.added == 6 and not report.errors

        def files(query):
            return {Path(h.path).name for h in idx.search(query, mode="keyword", k=10)}

        assert files("程序设计语言") == {"gb2312.txt"}
        assert files("機器學習") == set()  # not in any of them
        assert files("資訊科技") == {"big5.txt"}
        assert files("プログラミング言語") == {"shift_jis.txt", "euc_jp.txt"}
        assert files("파이썬") == {"euc_kr.txt"}
        assert files("語") == {"shift_jis.txt", "euc_jp.txt"}  # one character is a word too
        assert files("vérité") == files("verite") == {"latin1.txt"}
        [hit] = idx.search("verite", mode="keyword", k=3)
        assert "vérité" in hit.snippet
