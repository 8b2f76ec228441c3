from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import pytest
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from mmsearch.chunking import Chunk, chunk_pages, iter_chunks
from mmsearch.textfiles import DocumentError, Page, extract_pages, iter_pages

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from real_corpus import cjk_pairs, latin1_source  # noqa: E402

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A photograph of a red car parked by the sea!",
    "Search engines index documents and images; they answer queries by meaning.",
    "Is this the real life? Is this just fantasy?",
    "Numbers like 1234 and 56.78 appear in text, as do e-mail addresses and URLs.",
]


def clip_like_tokenizer() -> Tokenizer:
    """A small BPE shaped like CLIP's: lowercased, whitespace folded, words end in </w>."""
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]", end_of_word_suffix="</w>"))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"], end_of_word_suffix="</w>")
    tokenizer.train_from_iterator(CORPUS * 5, trainer)
    return tokenizer


def byte_level_tokenizer() -> Tokenizer:
    """GPT-2 style: tokens carry their leading space, any byte is encodable."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS * 5, trainer)
    return tokenizer


TOKENIZERS = {"clip-like": clip_like_tokenizer(), "byte-level": byte_level_tokenizer()}


def count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def long_text(paragraphs: int = 60, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = " ".join(CORPUS).split()
    return "\n\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 90))) for _ in range(paragraphs))


def assert_spans(pages: list[Page], chunks: list[Chunk]) -> None:
    texts = {page.number: page.text for page in pages}
    for chunk in chunks:
        assert texts[chunk.page][chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: Helvetica text, one line per string, a correct xref table."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        ops = ["BT /F1 12 Tf 14 TL 72 720 Td"]
        for line in lines:
            ops.append("(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % len(objects)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# -- extraction --


def test_text_file_is_one_page(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("Hello\r\nworld. Ünïcödé ✓\n", encoding="utf-8")
    assert extract_pages(path) == [Page(None, "Hello\nworld. Ünïcödé ✓\n")]


def test_utf8_bom_is_dropped_and_markdown_is_kept_as_written(tmp_path: Path):
    path = tmp_path / "README.md"
    path.write_bytes(b"\xef\xbb\xbf# Title\n\nSome *text*.\n")
    assert extract_pages(path) == [Page(None, "# Title\n\nSome *text*.\n")]


def test_latin1_and_cp1252_text_is_read_in_its_encoding(tmp_path: Path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Le café est très bon, déjà vu. ".encode("latin-1") * 20)
    [page] = extract_pages(path)
    assert page.text.startswith("Le café est très bon, déjà vu.")
    path.write_bytes("Curriculum vitae: Résumé of Jürgen Müller, born in Zürich. Années à Genève.\r\n".encode("cp1252"))
    assert extract_pages(path)[0].text == "Curriculum vitae: Résumé of Jürgen Müller, born in Zürich. Années à Genève.\n"
    # Accents far into an ASCII file are read right too (the encoding shows where they are).
    path.write_bytes(b"plain words\n" * 200_000 + "Schöne Grüße aus Köln, à bientôt\n".encode("cp1252"))
    assert extract_pages(path)[0].text.endswith("Schöne Grüße aus Köln, à bientôt\n")


def test_real_legacy_encoded_text_is_read_as_its_utf8_twin(tmp_path: Path):
    """Python's own codec test texts (Chinese, Japanese, Korean in legacy encodings, each with a UTF-8
    twin) and a real ISO-8859-1 source file: read as the text they hold."""
    pairs = cjk_pairs()
    assert {"gb2312", "gbk", "big5", "shift_jis", "euc_jp", "euc_kr", "iso2022_jp"} <= set(pairs)
    for name, (legacy, text) in pairs.items():
        if len(legacy) < 100:
            continue  # big5hkscs's 23 bytes and hz's 83 say too little (see benchmarks/documents.py encodings)
        path = tmp_path / f"{name}.txt"
        path.write_bytes(legacy)
        assert extract_pages(path)[0].text == text.replace("\r\n", "\n"), name
    data, text = latin1_source()
    path = tmp_path / "module.txt"
    path.write_bytes(data)
    assert extract_pages(path)[0].text == text and "vérité" in text


def test_utf8_with_a_few_broken_bytes_stays_utf8(tmp_path: Path):
    path = tmp_path / "damaged.txt"
    good = "Zürich, Genève, 東京 — ünïcödé text. ".encode("utf-8") * 50
    path.write_bytes(good[:700] + b"\xff\xfe" + good[700:])
    text = extract_pages(path)[0].text
    assert text.count("\ufffd") <= 2 and "Genève, 東京" in text


def test_utf16_and_utf32_with_a_bom_are_read(tmp_path: Path):
    path = tmp_path / "wide.txt"
    for encoding in ("utf-16", "utf-32"):
        path.write_bytes("Ünïcödé in wide characters, 中文.\n".encode(encoding))
        assert extract_pages(path)[0].text == "Ünïcödé in wide characters, 中文.\n"


def test_binary_junk_named_txt_is_refused(tmp_path: Path):
    junk = tmp_path / "photo.txt"
    junk.write_bytes(random.Random(1).randbytes(10_000))
    with pytest.raises(DocumentError, match=r"photo\.txt.*looks binary"):
        extract_pages(junk)
    nul = tmp_path / "nul.md"
    nul.write_bytes(b"text and then \x00\x00\x01\x02 zeros")
    with pytest.raises(DocumentError, match="looks binary"):
        extract_pages(nul)
    high = tmp_path / "high.txt"
    high.write_bytes(bytes(random.Random(2).randrange(0x80, 0x100) for _ in range(5000)))  # no NUL, no controls
    with pytest.raises(DocumentError, match="looks binary"):
        extract_pages(high)


def test_big_text_file_is_capped_at_a_character_boundary(tmp_path: Path):
    path = tmp_path / "big.txt"
    path.write_text("é" * 1000, encoding="utf-8")  # 2000 bytes
    [page] = extract_pages(path, max_bytes=1001)  # cuts the 501st é in half: it is left out
    assert page.text == "é" * 500


def test_unknown_suffix_and_missing_file_raise_document_error(tmp_path: Path):
    with pytest.raises(DocumentError, match=r"x\.docx"):
        extract_pages(tmp_path / "x.docx")
    with pytest.raises(DocumentError, match=r"gone\.txt.*cannot be read"):
        extract_pages(tmp_path / "gone.txt")


def test_pdf_text_per_page(tmp_path: Path):
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf([["Hello world. This is page one.", "Second line."], [], ["Page three (last)."]]))
    pages = extract_pages(path)
    assert [p.number for p in pages] == [1, 2, 3]
    assert pages[0].text == "Hello world. This is page one.\nSecond line."
    assert pages[1].text == ""
    assert pages[2].text == "Page three (last)."
    chunks = chunk_pages(pages, TOKENIZERS["clip-like"], max_tokens=75, overlap_tokens=8)
    assert [(c.page, c.text) for c in chunks] == [(1, pages[0].text), (3, pages[2].text)]


def test_pdf_text_is_capped(tmp_path: Path):
    path = tmp_path / "long.pdf"
    path.write_bytes(make_pdf([["a" * 50], ["b" * 50], ["c" * 50]]))
    pages = extract_pages(path, max_bytes=70)
    assert [p.text for p in pages] == ["a" * 50, "b" * 20]


def test_encrypted_pdf_raises_document_error(tmp_path: Path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["Secret plans."]]))))
    writer.encrypt(user_password="secret", owner_password="owner")
    path = tmp_path / "locked.pdf"
    with open(path, "wb") as f:
        writer.write(f)
    with pytest.raises(DocumentError, match=r"locked\.pdf.*is encrypted"):
        extract_pages(path)


def test_pdf_with_only_an_owner_password_is_read(tmp_path: Path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["Open to read."]]))))
    writer.encrypt(user_password="", owner_password="owner")
    path = tmp_path / "restricted.pdf"
    with open(path, "wb") as f:
        writer.write(f)
    assert extract_pages(path) == [Page(1, "Open to read.")]


def test_corrupt_pdf_raises_document_error(tmp_path: Path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(random.Random(3).randbytes(4000))
    with pytest.raises(DocumentError, match=r"broken\.pdf.*not a readable PDF"):
        extract_pages(path)


# -- chunking --


@pytest.mark.parametrize("name", TOKENIZERS)
def test_short_text_is_one_chunk_equal_to_the_text(name: str):
    text = "A photograph of a red car parked by the sea!"
    assert chunk_pages([Page(None, text)], TOKENIZERS[name], max_tokens=75, overlap_tokens=10) == [
        Chunk(None, 0, len(text), text)
    ]


def test_whitespace_pages_give_no_chunks():
    pages = [Page(1, ""), Page(2, "  \n\t\n "), Page(3, "Real text.")]
    chunks = chunk_pages(pages, TOKENIZERS["clip-like"], max_tokens=75, overlap_tokens=10)
    assert [(c.page, c.text) for c in chunks] == [(3, "Real text.")]


def test_surrounding_whitespace_is_not_part_of_a_chunk():
    page = Page(None, "\n\n   The quick brown fox.  \n")
    [chunk] = chunk_pages([page], TOKENIZERS["clip-like"], max_tokens=75, overlap_tokens=10)
    assert chunk.text == "The quick brown fox." and page.text[chunk.start : chunk.end] == chunk.text


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("max_tokens,overlap", [(75, 10), (20, 5), (8, 0)])
def test_long_text_gives_overlapping_chunks_within_the_limit(name: str, max_tokens: int, overlap: int):
    tokenizer = TOKENIZERS[name]
    page = Page(None, long_text())
    chunks = chunk_pages([page], tokenizer, max_tokens=max_tokens, overlap_tokens=overlap)
    assert len(chunks) > 5
    assert_spans([page], chunks)
    assert all(count(tokenizer, c.text) <= max_tokens for c in chunks)
    # In order, nothing left out, and overlapping when asked to.
    assert all(a.start < b.start and a.end < b.end for a, b in zip(chunks, chunks[1:]))
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(ch.isspace() for i, ch in enumerate(page.text) if i not in covered)
    overlaps = [a.end > b.start for a, b in zip(chunks, chunks[1:])]
    if overlap:
        # Not every pair: a cut at a paragraph break may leave the overlap to the blank line.
        assert sum(overlaps) >= len(overlaps) // 2
    else:
        assert not any(overlaps)


@pytest.mark.parametrize("piece_chars", [4096, 50])
def test_chunks_prefer_to_end_at_sentences(piece_chars: int, monkeypatch: pytest.MonkeyPatch):
    # With 50-character pieces in 100-character batches, sentence ends fall on batch joins too.
    monkeypatch.setattr("mmsearch.chunking._PIECE_CHARS", piece_chars)
    monkeypatch.setattr("mmsearch.chunking._BATCH_CHARS", 2 * piece_chars)
    sentence = "The quick brown fox jumps over the lazy dog. "
    page = Page(None, sentence * 30)
    chunks = chunk_pages([page], TOKENIZERS["clip-like"], max_tokens=40, overlap_tokens=0)
    assert len(chunks) > 3
    assert all(c.text.endswith("dog.") for c in chunks)


def test_chunks_prefer_paragraph_breaks():
    paragraphs = [" ".join(["Is this the real life?"] * 3) for _ in range(12)]
    page = Page(None, "\n\n".join(paragraphs))
    chunks = chunk_pages([page], TOKENIZERS["clip-like"], max_tokens=60, overlap_tokens=0)
    assert all(page.text[c.end : c.end + 2] in ("\n\n", "") for c in chunks)


def test_chunks_never_cross_pages():
    pages = [Page(1, long_text(10, seed=1)), Page(2, long_text(10, seed=2))]
    chunks = chunk_pages(pages, TOKENIZERS["clip-like"], max_tokens=30, overlap_tokens=5)
    assert {c.page for c in chunks} == {1, 2}
    assert_spans(pages, chunks)
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_text_without_spaces_is_cut_inside_words_within_the_limit(name: str):
    tokenizer = TOKENIZERS[name]
    page = Page(None, "photograph" * 200 + " 中文句子。第二句。" * 30 + " " + "x" * 500)
    chunks = chunk_pages([page], tokenizer, max_tokens=16, overlap_tokens=4)
    assert_spans([page], chunks)
    assert all(count(tokenizer, c.text) <= 16 for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(ch.isspace() for i, ch in enumerate(page.text) if i not in covered)


def test_pieces_boundaries_do_not_change_the_counts(monkeypatch: pytest.MonkeyPatch):
    # Small pieces and batches, so windows straddle many encode calls.
    monkeypatch.setattr("mmsearch.chunking._PIECE_CHARS", 64)
    monkeypatch.setattr("mmsearch.chunking._BATCH_CHARS", 300)
    tokenizer = TOKENIZERS["clip-like"]
    page = Page(None, long_text(30) + "\n" + "y" * 400)
    chunks = chunk_pages([page], tokenizer, max_tokens=20, overlap_tokens=5)
    assert_spans([page], chunks)
    assert all(count(tokenizer, c.text) <= 20 for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(ch.isspace() for i, ch in enumerate(page.text) if i not in covered)


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        chunk_pages([Page(None, "x")], TOKENIZERS["clip-like"], max_tokens=10, overlap_tokens=10)
    with pytest.raises(ValueError):
        chunk_pages([Page(None, "x")], TOKENIZERS["clip-like"], max_tokens=0, overlap_tokens=0)


def test_a_truncating_or_padding_tokenizer_is_refused():
    # Such a tokenizer keeps only the first context's worth of tokens of each piece: the rest of the
    # page would never reach a chunk.
    truncating = Tokenizer.from_str(TOKENIZERS["clip-like"].to_str())
    truncating.enable_truncation(max_length=77)
    padding = Tokenizer.from_str(TOKENIZERS["clip-like"].to_str())
    padding.enable_padding(length=77)
    for tokenizer in (truncating, padding):
        with pytest.raises(ValueError, match="neither truncates nor pads"):
            chunk_pages([Page(None, long_text())], tokenizer, max_tokens=75, overlap_tokens=10)


TOYCLIP = Path(__file__).parent / "fixtures" / "toyclip"


def test_an_indexed_document_keeps_every_character(tmp_path: Path):
    """Python's own documentation (text nobody here wrote) as one 40k-character file: every
    non-space character lands in a chunk, and words from its last paragraph are found."""
    import pydoc_data.topics

    from mmsearch import Index

    text = "\n\n".join(pydoc_data.topics.topics[name] for name in ("assignment", "compound", "class"))
    assert len(text) > 30_000
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "reference.txt").write_text(text, encoding="utf-8")
    with Index(tmp_path / "index", model=TOYCLIP, device="cpu") as idx:
        idx.index([docs])
        rows = idx.catalog.conn.execute('SELECT start, "end", text FROM items ORDER BY start').fetchall()
        covered = bytearray(len(text))
        for start, end, chunk in rows:
            assert text[start:end] == chunk
            covered[start:end] = b"\x01" * (end - start)
        assert all(ch.isspace() for i, ch in enumerate(text) if not covered[i])
        last_words = " ".join(text.split()[-6:-2])
        hits = idx.search(last_words, mode="keyword", k=3)
        assert hits and hits[0].path.endswith("reference.txt")


def test_a_text_file_streams_in_segments_with_spans_into_the_whole_text(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    import pydoc_data.topics

    monkeypatch.setattr("mmsearch.textfiles._SEGMENT_BYTES", 3000)
    text = pydoc_data.topics.topics["compound"][:40_000] + "\n\nZürich 東京 " * 300
    path = tmp_path / "reference.txt"
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))  # CRLF pairs and characters cut by blocks
    pages = list(iter_pages(path))
    assert len(pages) > 10 and {p.number for p in pages} == {None}
    assert "".join(p.text for p in pages) == text
    assert [p.offset for p in pages] == [sum(len(q.text) for q in pages[:i]) for i in range(len(pages))]
    assert extract_pages(path) == [Page(None, text)]
    tokenizer = TOKENIZERS["clip-like"]
    chunks = list(iter_chunks(pages, tokenizer, max_tokens=20, overlap_tokens=4))
    covered = bytearray(len(text))
    for c in chunks:
        assert text[c.start : c.end] == c.text and count(tokenizer, c.text) <= 20
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    assert all(ch.isspace() for i, ch in enumerate(text) if not covered[i])


def test_chunks_are_cut_as_they_are_taken():
    def pages():
        yield Page(1, long_text(5))
        raise AssertionError("the second page was read before its chunks were asked for")

    chunks = iter_chunks(pages(), TOKENIZERS["clip-like"], max_tokens=20, overlap_tokens=4)
    first = next(chunks)
    assert first.page == 1 and first.start == 0


# -- indexing documents (the committed toy CLIP: a small text tower, real chunking and catalog) --


def reference_text(chars: int) -> str:
    """Python's language reference (text nobody here wrote), repeated to `chars` characters."""
    import pydoc_data.topics

    whole = "\n\n".join(pydoc_data.topics.topics.values())
    return (whole * (chars // len(whole) + 1))[:chars]


def test_a_document_past_the_limit_is_indexed_that_far_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]):
    from mmsearch import Index
    from mmsearch.ingest import commit as ingest_commit

    monkeypatch.setenv("MMSEARCH_MAX_DOCUMENT_CHARS", "30000")
    monkeypatch.setattr(ingest_commit, "KEEP_VECTORS", 50)  # past it, the graph reads the vectors back
    docs = tmp_path / "docs"
    docs.mkdir()
    text = reference_text(100_000)
    (docs / "long.txt").write_text(text + "\n\nzyzzyva quokka\n", encoding="utf-8")
    (docs / "short.txt").write_text(text[:20_000], encoding="utf-8")
    with Index(tmp_path / "index", model=TOYCLIP, device="cpu") as idx:
        report = idx.index([docs])
        assert report.added == 2 and not report.errors
        [partial] = report.partial
        assert partial["path"].endswith("long.txt") and "first 30,000 characters" in partial["reason"]
        assert "30% of the file" in partial["reason"]
        conn = idx.catalog.conn
        status, note = conn.execute("SELECT status, error FROM files WHERE path LIKE '%long.txt'").fetchone()
        assert status == "indexed" and note == partial["reason"]
        assert conn.execute("SELECT max(\"end\") FROM items JOIN files ON files.id = items.file_id "
                            "WHERE path LIKE '%long.txt'").fetchone()[0] <= 30_000
        assert idx.vectors.ids() == idx.catalog.live_item_ids() and len(idx.catalog.live_item_ids()) > 100
        assert idx.search("zyzzyva quokka", mode="keyword") == []
        assert idx.catalog.last_run()["summary"]["partial"] == report.partial
    # The command's report and `mmsearch status` say it in words too.
    from typer.testing import CliRunner

    from mmsearch.cli import app
    from mmsearch.cli_index import _print_report

    _print_report(report)
    assert "partly indexed" in capsys.readouterr().out
    status = CliRunner().invoke(app, ["status", "--index", str(tmp_path / "index")])
    assert status.exit_code == 0 and "partly indexed: " in status.stdout and "long.txt" in status.stdout


def test_a_cancel_while_vectors_are_computed_keeps_every_word_and_the_next_run_finishes(tmp_path: Path,
                                                                                       monkeypatch: pytest.MonkeyPatch):
    """Words first, vectors after: a document is searchable by its words once its text is read; a run
    stopped while its chunks' vectors are computed keeps the words and the vectors made so far, and the
    next run computes only the rest."""
    from mmsearch import Index
    from mmsearch.encoder import TextEncoder

    docs = tmp_path / "docs"
    docs.mkdir()
    text = reference_text(200_000)
    (docs / "long.txt").write_text(text, encoding="utf-8")
    middle = " ".join(text[len(text) // 2 :].split()[1:7])
    calls = []
    real_encode = TextEncoder.encode

    def encode(self, texts):
        calls.append(len(texts))
        return real_encode(self, texts)

    monkeypatch.setattr(TextEncoder, "encode", encode)
    with Index(tmp_path / "index", model=TOYCLIP, device="cpu") as idx:
        report = idx.index([docs], cancel=lambda: len(calls) >= 3)
        assert report.cancelled and report.added == 1 and len(calls) == 3
        counts = idx.counts()
        assert counts["chunks"] > 3 * 64 and counts["documents_without_vectors"] == 1
        # (the chunks given a vector: at least the texts encoded, more where a text repeats)
        assert report.encoded_items >= sum(calls)
        assert report.vectors_left == counts["chunks_without_vectors"] == counts["chunks"] - report.encoded_items
        hits = idx.search(middle, mode="keyword")  # every word is searchable
        assert hits and hits[0].path == str(docs / "long.txt")
        assert hits.words_only == 1  # and the query says one document is searchable by words only
        calls.clear()
        again = idx.index([docs])
        assert again.added == 0 and again.unchanged == 1 and again.encoded_items == report.vectors_left
        assert idx.counts()["chunks_without_vectors"] == 0 and again.vectors_left == 0
        assert idx.search(middle, mode="vector", type="document")[0].path == str(docs / "long.txt")


def test_chunks_of_the_same_text_are_encoded_once_and_each_gets_its_vector(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """The text tower is the vectors phase's cost: a copy of a document (or any chunk whose text another
    holds) is not encoded again, yet every chunk has its vector and both files are found by meaning."""
    from mmsearch import Index
    from mmsearch.encoder import TextEncoder

    docs = tmp_path / "docs"
    docs.mkdir()
    text = reference_text(20_000)
    (docs / "report.txt").write_text(text, encoding="utf-8")
    (docs / "report copy.txt").write_text(text, encoding="utf-8")
    (docs / "other.txt").write_text("the harbour master's logbook of the winter storms", encoding="utf-8")
    encoded: list[str] = []
    real_encode = TextEncoder.encode

    def encode(self, texts):
        encoded.extend(texts)
        return real_encode(self, texts)

    monkeypatch.setattr(TextEncoder, "encode", encode)
    with Index(tmp_path / "index", model=TOYCLIP, device="cpu") as idx:
        report = idx.index([docs], ocr=False)
        counts = idx.counts()
        distinct = {t for (t,) in idx.catalog.conn.execute("SELECT text FROM items WHERE kind = 'document'")}
        assert report.added == 3 and counts["chunks_without_vectors"] == 0
        assert report.encoded_items == counts["chunks"] > 2 * len(distinct) - 1
        chunk_texts = [t for t in encoded if t in distinct]  # (the index's calibration encodes its own probes)
        assert sorted(chunk_texts) == sorted(distinct)  # each text once
        hits = idx.search(" ".join(text.split()[40:52]), mode="vector", type="document", k=3)
        assert {Path(h.path).name for h in hits[:2]} == {"report.txt", "report copy.txt"}
        assert hits[0].similarity == pytest.approx(hits[1].similarity, abs=1e-6)


@pytest.mark.slow
def test_ctrl_c_inside_a_50_mb_text_file_stops_within_two_seconds(tmp_path: Path):
    import json
    import os
    import signal
    import subprocess
    import time

    docs = tmp_path / "docs"
    docs.mkdir()
    text = reference_text(1_000_000).encode("utf-8")
    with open(docs / "big.txt", "wb") as f:
        for _ in range(50):
            f.write(text)
    (docs / "second.txt").write_bytes(text * 5)
    trace = tmp_path / "trace.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mmsearch.cli", "index", str(docs), "--index", str(tmp_path / "index"),
           "--model", str(TOYCLIP), "--device", "cpu", "--json", "--trace-steps", str(trace)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "scan" not in (trace.read_text() if trace.exists() else ""):
        time.sleep(0.01)
    time.sleep(1.5)  # inside the first document: reading, cutting and encoding it
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert took < 2.0, f"took {took:.2f}s to stop"
    assert proc.returncode == 130, err
    report = json.loads(out)
    # What was read of the document it stopped in is kept, said to be unfinished (the next run reads it whole).
    assert report["cancelled"] and report["added"] == len(report["partial"]) <= 1
    assert all("stopped while it read this file" in p["reason"] for p in report["partial"])


def test_a_kill_while_vectors_are_computed_leaves_every_document_searchable_by_words(tmp_path: Path):
    """`mmsearch index` SIGKILLed inside the vectors step (its documents' words committed, their vectors
    not all computed): every document is found by a phrase from its middle; the next run computes the
    rest and nothing else."""
    import signal
    import subprocess
    import time

    from mmsearch import Index

    docs = tmp_path / "docs"
    docs.mkdir()
    phrases = {}
    for i in range(4):
        text = reference_text(60_000)
        phrases[f"doc{i}.txt"] = f"harbour{i} ledger{i} entry{i}"  # in its middle alone
        middle = text.index(" ", len(text) // 2)
        (docs / f"doc{i}.txt").write_text(f"{text[:middle]} {phrases[f'doc{i}.txt']}{text[middle:]}", encoding="utf-8")
    index, trace = tmp_path / "index", tmp_path / "trace"
    run = subprocess.Popen([sys.executable, "-m", "mmsearch", "index", str(docs), "--index", str(index), "--model",
                            str(TOYCLIP), "--no-ocr", "--trace-steps", str(trace), "--hold-steps", "0.5"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:  # past the documents' commits and the first save: inside the vectors step
            steps = trace.read_text().split() if trace.exists() else []
            if "save" in steps and steps[steps.index("save") + 1:].count("encode") >= 2:
                break
            assert run.poll() is None and time.monotonic() < deadline, f"the run ended first: {steps}"
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
    finally:
        run.wait(30)
    with Index(index, readonly=True) as idx:
        counts = idx.counts()
        assert counts["document"] == 4 and 0 < counts["chunks_without_vectors"] < counts["chunks"]
        for name, phrase in phrases.items():
            hits = idx.search(phrase, mode="keyword", k=1)
            assert hits and hits[0].path == str(docs / name), (name, phrase)
        waiting = counts["chunks_without_vectors"]
    with Index(index) as idx:
        again = idx.index([docs], ocr=False)
        assert again.unchanged == 4 and again.added == 0 and again.encoded_items == waiting
        assert idx.counts()["chunks_without_vectors"] == 0


def test_the_words_phase_loads_no_text_tower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Documents are searchable by their words before any model runs: the documents step cuts chunks with
    the bundle's tokenizer alone; the text tower loads for the vectors after."""
    from mmsearch import Index
    from mmsearch.encoder import TextEncoder

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_text("the harbour master's logbook of the winter storms", encoding="utf-8")
    made = []
    real_init = TextEncoder.__init__

    def init(self, *args, **kwargs):
        made.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(TextEncoder, "__init__", init)
    seen: list[str] = []
    with Index(tmp_path / "index", model=TOYCLIP, device="cpu") as idx:
        report = idx.index([docs], observe=seen.append, cancel=lambda: "save" in seen, ocr=False)
        assert report.added == 1 and report.cancelled and made == []
        assert idx.search("winter storms", mode="keyword")[0].path == str(docs / "note.txt")
