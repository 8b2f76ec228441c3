"""Words in pictures (OCR): read after the rest is indexed, found by keyword like a document's text,
each picture read once per content, scanned PDF pages read with their page numbers.

These need the OCR extra (`pip install 'mmsearch[ocr]'`, in the dev extra too); .ci/run fails where
it is missing rather than let them skip. The pictures use Pillow's own scalable font, so they need no
system fonts (benchmarks/ocr.py measures with the system's)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import picture, scanned_pdf, sign
from mmsearch import Index, MmsearchError, ocr
from mmsearch.catalog import OCR_KIND, Catalog

needs_ocr = pytest.mark.skipif(not ocr.installed(), reason=f"OCR is not installed: {ocr.INSTALL_HINT}")
@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "notes").mkdir(parents=True)
    sign(["Bellavista Pizzeria"], angle=8).save(root / "shop.png")
    sign(["Connection refused", "errno 111"], size=(640, 240), px=30).save(root / "error.jpg", quality=92)
    picture(1).save(root / "plain1.png")
    picture(2, (320, 240)).save(root / "plain2.jpg", quality=92)
    (root / "notes" / "dinner.txt").write_text("We had dinner at a pizzeria by the harbour.\n")
    return root


@pytest.fixture()
def idx(tmp_path: Path, bundle: Path):
    with Index(tmp_path / "index", model=bundle, device="cpu") as index:
        yield index


def words_of(index: Index, path: Path) -> str | None:
    row = index.catalog.file_by_path(str(path))
    assert row is not None
    return index.catalog.ocr_text(row.id)


@needs_ocr
def test_a_picture_is_found_by_its_words_with_them_as_its_snippet(idx: Index, photos: Path):
    report = idx.index([photos])
    assert (report.ocr_read, report.ocr_with_words, report.ocr_left) == (4, 2, 0), report
    assert words_of(idx, photos / "shop.png") == "Bellavista Pizzeria"
    assert words_of(idx, photos / "plain1.png") is None and words_of(idx, photos / "plain2.jpg") is None
    hits = idx.search("pizzeria", mode="keyword")
    assert {h.path for h in hits} == {str(photos / "shop.png"), str(photos / "notes" / "dinner.txt")}
    shop = next(h for h in hits if h.path.endswith("shop.png"))
    assert shop.kind == "image" and shop.snippet == "Bellavista Pizzeria" and shop.page is None
    # --type image returns the picture its words matched; --type document leaves it out.
    for mode in ("keyword", "hybrid"):
        assert idx.search("pizzeria", mode=mode, type="image")[0].path == str(photos / "shop.png")
        assert str(photos / "shop.png") not in {h.path for h in idx.search("pizzeria", mode=mode, type="document")}
    # A hybrid query counts each file once (a picture is its vector and its words): k files come back.
    hits = idx.search("connection refused", k=4)
    assert hits[0].path == str(photos / "error.jpg") and "Connection refused" in (hits[0].snippet or "")
    assert len(hits) == 4 and len({h.path for h in hits}) == 4
    # Similar pictures come from the picture's own vector, its words aside.
    row = idx.catalog.file_by_path(str(photos / "shop.png"))
    assert row is not None
    (image_item,), = idx.catalog.conn.execute("SELECT id FROM items WHERE file_id = ? AND kind = 'image'", (row.id,))
    _, own = next(idx.catalog.vectors_for([image_item]))
    assert np.allclose(idx.catalog.file_vector(row.id), own[0] / np.linalg.norm(own[0]))
    assert str(photos / "shop.png") not in {h.path for h in idx.similar(photos / "shop.png", k=3)}


@needs_ocr
def test_pictures_are_searchable_by_meaning_before_their_words_are_read(idx: Index, photos: Path, tmp_path: Path):
    seen: list[tuple[bool, list[str]]] = []

    def observe(step: str) -> None:
        if step == "ocr" and not seen:
            with Index(tmp_path / "index", readonly=True) as reader:
                hits = reader.search(image=photos / "plain1.png", k=1)
                seen.append(((tmp_path / "index" / "vectors.json").exists(), [h.path for h in hits]))

    idx.index([photos], observe=observe)
    assert seen == [(True, [str(photos / "plain1.png")])]  # saved, and found, while the words were still to read


@needs_ocr
def test_a_picture_is_read_once_until_it_changes(idx: Index, photos: Path):
    idx.index([photos])
    again = idx.index([photos])
    assert (again.ocr_read, again.unchanged) == (0, 5)
    ocr_items = idx.catalog.conn.execute("SELECT count(*) FROM items WHERE kind = ?", (OCR_KIND,)).fetchone()[0]
    assert ocr_items == 2  # not added twice
    # Moved: the same content keeps its words, nothing is read.
    shutil.move(photos / "error.jpg", photos / "notes" / "error.jpg")
    moved = idx.index([photos])
    assert (moved.moved, moved.ocr_read) == (1, 0)
    assert idx.search("refused", mode="keyword", type="image")[0].path == str(photos / "notes" / "error.jpg")
    # Changed: read again, and the old words are gone with the old content.
    sign(["Trattoria Roma"]).save(photos / "shop.png")
    changed = idx.index([photos])
    assert (changed.updated, changed.ocr_read, changed.ocr_with_words) == (1, 1, 1)
    assert [h.path for h in idx.search("trattoria", mode="keyword")] == [str(photos / "shop.png")]
    assert idx.search("bellavista", mode="keyword") == []


@needs_ocr
def test_without_ocr_the_words_wait_for_a_later_run(idx: Index, photos: Path):
    report = idx.index([photos], ocr=False)
    assert (report.ocr_read, report.ocr_left, report.ocr_device) == (0, 4, None)
    assert idx.search("bellavista", mode="keyword") == []
    assert idx.catalog.counts()["words_to_read"] == 4
    later = idx.index([photos])
    assert (later.unchanged, later.ocr_read, later.ocr_with_words) == (5, 4, 2)
    assert idx.search("bellavista", mode="keyword")[0].path == str(photos / "shop.png")
    assert idx.catalog.counts()["words_to_read"] == 0 and idx.catalog.counts()["pictures_with_words"] == 2


@needs_ocr
def test_a_cancel_in_the_ocr_phase_keeps_what_was_committed_and_the_next_run_reads_the_rest(
        idx: Index, photos: Path, monkeypatch: pytest.MonkeyPatch):
    import mmsearch.ingest.ocr as phase

    monkeypatch.setattr(phase, "COMMIT_PICTURES", 1)
    for i in range(4):
        sign([f"Platform {i + 1}"]).save(photos / f"platform{i}.png")
    steps: list[str] = []
    report = idx.index([photos], observe=steps.append, cancel=lambda: steps.count("ocr") >= 3)
    assert report.cancelled and 0 < report.ocr_read < 8 and report.ocr_left == 8 - report.ocr_read
    assert idx.catalog.last_run()["status"] == "cancelled"
    rest = idx.index([photos])
    assert not rest.cancelled and rest.ocr_read == 8 - report.ocr_read and rest.ocr_left == 0
    for i in range(4):
        assert words_of(idx, photos / f"platform{i}.png") == f"Platform {i + 1}"
    assert idx.catalog.conn.execute("SELECT count(*) FROM items WHERE kind = ?", (OCR_KIND,)).fetchone()[0] == 6


@needs_ocr
def test_scanned_pdf_pages_are_read_with_their_page_numbers(tmp_path: Path, bundle: Path):
    from benchmarks.real_corpus import pdf
    from mmsearch.textfiles import render_page

    manual = pdf("libtasn1.pdf")  # pages 4 and 5: "1 Introduction", "2 ASN.1 structure handling"
    docs = tmp_path / "docs"
    docs.mkdir()
    scanned_pdf(docs / "scan.pdf", [render_page(manual, n, 1600) for n in (4, 5)])
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        # Without OCR the scan is indexed (no longer refused for having no text) and says why it has no text.
        first = idx.index([docs], ocr=False)
        assert (first.added, first.errors, first.ocr_left) == (1, [], 1)
        assert first.partial == [{"path": str(docs / "scan.pdf"), "reason": "pages 1-2 have no text layer (scanned): "
                                  "their words were not read (OCR is off)"}]
        with pytest.raises(MmsearchError, match=r"scan\.pdf: has no vector to compare: its pages have no text layer"):
            idx.similar(docs / "scan.pdf")
        report = idx.index([docs])
        assert (report.unchanged, report.ocr_read, report.ocr_with_words, report.partial) == (1, 2, 2, [])
        hit = idx.search("Abstract Syntax Notation One", mode="keyword", k=1)[0]
        assert (hit.path, hit.kind, hit.page) == (str(docs / "scan.pdf"), "document", 1)
        assert "Abstract Syntax Notation" in (hit.snippet or "")
        assert idx.search("The parser is case sensitive", mode="keyword", k=1)[0].page == 2
        # Its chunks have vectors like any page's, and the note that said they were unread is gone.
        row = idx.catalog.file_by_path(str(docs / "scan.pdf"))
        assert row is not None and idx.catalog.file_error(row.id) is None
        assert idx.catalog.vector_count() == len(idx.vectors) > 10
        assert idx.index([docs]).ocr_read == 0


@needs_ocr
def test_a_pdf_with_text_pages_and_a_scanned_one_gets_both(tmp_path: Path, bundle: Path):
    from fpdf import FPDF

    docs = tmp_path / "docs"
    docs.mkdir()
    board = tmp_path / "board.png"
    sign(["Departures Gate 12"], size=(640, 200)).save(board)
    doc = FPDF()
    doc.add_page()
    doc.set_font("helvetica", size=14)
    doc.multi_cell(0, 8, "Travel notes. The train leaves from the old station at noon.")
    doc.add_page()
    doc.image(str(board), x=10, y=10, w=180)  # a page that is only a picture
    doc.output(str(docs / "trip.pdf"))
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        report = idx.index([docs])
        assert (report.added, report.ocr_read, report.ocr_with_words) == (1, 1, 1)
        assert idx.search("old station", mode="keyword", k=1)[0].page == 1
        hit = idx.search("departures gate", mode="keyword", k=1)[0]
        assert (hit.path, hit.page, hit.snippet) == (str(docs / "trip.pdf"), 2, "Departures Gate 12")


@needs_ocr
def test_the_reader_reads_turned_words_and_finds_none_in_noise():
    reader = ocr.TextReader("cpu")
    assert reader.device == "cpu"
    lines = reader.read_pixels(np.asarray(sign(["Hauptbahnhof", "Ausgang Nord"], size=(560, 260), angle=-12)))
    assert [line.text for line in lines] == ["Hauptbahnhof", "Ausgang Nord"]
    assert all(line.score > 0.9 and line.box.shape == (4, 2) for line in lines)
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(128, 40, (480, 640, 3)), 0, 255).astype(np.uint8)
    assert reader.read_pixels(noise) == [] and reader.read(noise) == []
    assert reader.read_pixels(np.zeros((8, 400, 3), np.uint8)) == []  # too small to hold words


def test_chinese_japanese_and_korean_words_read_in_a_picture_are_found_by_their_words(tmp_path: Path):
    """The words of a picture go through the keyword index's CJK handling like a document's."""
    catalog = Catalog(tmp_path)
    root = catalog.add_root("/photos")
    with catalog.write() as conn:
        fid, _ = catalog.put_file(conn, path="/photos/menu.jpg", root_id=root, size=1, mtime_ns=1,
                                  content_hash="a" * 64, kind="image", media_type="image/jpeg")
        catalog.add_items(conn, fid, "image", np.ones((1, 4), np.float32))
        catalog.add_text_items(conn, fid, OCR_KIND, [(None, "营业时间 上午九点\n駅前ラーメン 영업중")])
    for word in ("营业", "上午九点", "ラーメン", "영업"):
        hits = catalog.keyword_search(word, 5)
        assert [catalog.items([i])[i].path for i, _ in hits] == ["/photos/menu.jpg"], word
        assert catalog.items([hits[0][0]])[hits[0][0]].kind == "image"
    catalog.close()


def test_ocr_asked_for_but_not_installed_says_how_to_install_it(tmp_path: Path, bundle: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ocr, "installed", lambda: False)
    photos = tmp_path / "photos"
    photos.mkdir()
    picture(1).save(photos / "a.png")
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        with pytest.raises(MmsearchError, match=r"OCR is not installed; install it with: pip install 'mmsearch\[ocr\]'"):
            idx.index([photos], ocr=True)
        report = idx.index([photos])  # by default OCR is on only where installed
        assert (report.added, report.ocr_read, report.ocr_left) == (1, 0, 1)
    with pytest.raises(ocr.OcrError, match=r"pip install 'mmsearch\[ocr\]'"):
        ocr.TextReader("cpu")


def test_doctor_says_whether_ocr_is_on(monkeypatch: pytest.MonkeyPatch):
    from typer.testing import CliRunner

    from mmsearch.cli import app

    out = CliRunner().invoke(app, ["doctor", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)["ocr"]
    if ocr.installed():
        assert info["installed"] and info["engine"].startswith("rapidocr ") and len(info["models"]) == 2
        assert info["models_bytes"] > 10e6
        assert "OCR: on for `mmsearch index` (--no-ocr skips it)" in CliRunner().invoke(app, ["doctor"]).output
    monkeypatch.setattr(ocr, "installed", lambda: False)
    text = CliRunner().invoke(app, ["doctor"]).output
    assert "OCR: not installed, the words in pictures and scanned pages are not read (pip install 'mmsearch[ocr]')" in text


def test_a_catalog_written_before_ocr_has_every_picture_to_read(tmp_path: Path):
    """files.ocr_hash starts NULL for a new or changed file, and is set only for the content read."""
    catalog = Catalog(tmp_path)
    root = catalog.add_root("/photos")
    with catalog.write() as conn:
        fid, _ = catalog.put_file(conn, path="/photos/a.jpg", root_id=root, size=1, mtime_ns=1, content_hash="1" * 64,
                                  kind="image")
        catalog.set_ocr_done(conn, fid, "2" * 64)  # another content than the catalog's: not marked
    assert [t.path for t in catalog.ocr_pending([root])] == ["/photos/a.jpg"]
    with catalog.write() as conn:
        catalog.set_ocr_done(conn, fid, "1" * 64)
    assert catalog.ocr_pending([root]) == []
    with catalog.write() as conn:
        catalog.put_file(conn, path="/photos/a.jpg", root_id=root, size=2, mtime_ns=2, content_hash="3" * 64,
                         kind="image")
    assert [t.content_hash for t in catalog.ocr_pending([root])] == ["3" * 64]
    catalog.close()
    conn2 = sqlite3.connect(tmp_path / "catalog.db")
    assert conn2.execute("SELECT ocr_hash FROM files").fetchone() == (None,)
    conn2.close()


@needs_ocr
def test_words_rendered_in_the_system_fonts_bring_their_picture_back(tmp_path: Path, bundle: Path):
    """A small draw of the benchmark's quality set (benchmarks/ocr.py: 300 + 300 pictures, bars 90% and
    95%): words in the system's fonts at different sizes, colours and turns, over photos and noise."""
    from benchmarks.textpictures import write_set

    photos = tmp_path / "photos"
    with_text = write_set(photos, 16, seed=5, with_text=True)
    without = write_set(photos, 16, seed=6, with_text=False)
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        report = idx.index([photos])
        assert report.ocr_read == 32
        found = [str(photos / p.name) in {h.path for h in idx.search(w, mode="keyword", k=3)}
                 for p in with_text for w in p.words]
        assert sum(found) >= 0.85 * len(found), f"{sum(found)} of {len(found)} words"
        quiet = [words_of(idx, photos / p.name) is None for p in without]
        assert sum(quiet) >= 15, f"{16 - sum(quiet)} of 16 pictures without words got some"


@needs_ocr
def test_photos_without_words_are_not_read_in_full(tmp_path: Path, bundle: Path):
    """Photo-like pictures light the glance's detector up about half the time (texture); its boxes then
    read as nothing, and the full read (detection at 960 px, every box recognised) is not paid."""
    from benchmarks.textpictures import write_set

    photos = tmp_path / "photos"
    write_set(photos, 12, seed=8, with_text=False, size=(1200, 900), background="photo")
    with_words = write_set(photos, 4, seed=9, with_text=True, size=(1200, 900), background="photo")
    steps: list[str] = []
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        report = idx.index([photos], observe=steps.append)
        assert report.ocr_read == 16
        read_in_full = steps.count("ocr") - 1  # once as the phase starts, then once per picture read in full
        assert report.ocr_with_words <= read_in_full <= 4 + 1, read_in_full
        assert report.ocr_with_words >= 3
        assert sum(words_of(idx, photos / p.name) is not None for p in with_words) == report.ocr_with_words


@needs_ocr
@pytest.mark.gpu
def test_on_cuda_the_words_are_read_on_the_cuda_provider_as_on_the_cpu(tmp_path: Path, bundle: Path, photos: Path):
    from mmsearch import runtime

    ok, why = runtime.cuda_works()
    if not ok:
        pytest.skip(f"CUDA provider does not work here: {why}")
    reader = ocr.TextReader("cuda")
    assert reader.device == "cuda"
    picture_ = np.asarray(sign(["Hauptbahnhof", "Ausgang Nord"], size=(560, 260), angle=-12))
    assert [line.text for line in reader.read_pixels(picture_)] == ["Hauptbahnhof", "Ausgang Nord"]
    with Index(tmp_path / "index", model=bundle, device="auto") as idx:
        report = idx.index([photos])
        assert report.ocr_device == "cuda" and report.ocr_with_words == 2
        assert idx.search("pizzeria", mode="keyword", type="image")[0].path == str(photos / "shop.png")


@needs_ocr
def test_a_photo_without_words_is_read_from_disk_once_and_looked_at_as_it_is_decoded(
        tmp_path: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch):
    """The glance runs in the images step, on the picture decoded for the image tower: a photo without
    words is committed with its words read (none), and the words step neither opens it again nor looks
    at it; a picture with words is read in full there."""
    import builtins
    import os
    from collections import Counter

    from PIL import Image

    from benchmarks.common import realistic_photo

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(realistic_photo(i, 800, 600)).save(photos / f"photo{i}.jpg", quality=90)
    sign(["Platform 9"]).save(photos / "sign.png")
    opened: Counter[str] = Counter()
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(file, str) and file.startswith(str(photos)):
            opened[os.path.basename(file)] += 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        report = idx.index([photos])
        assert (report.ocr_read, report.ocr_with_words, report.ocr_left) == (4, 1, 0), report
        assert words_of(idx, photos / "sign.png") == "Platform 9"
        assert all(words_of(idx, photos / f"photo{i}.jpg") is None for i in range(3))
    assert [opened[f"photo{i}.jpg"] for i in range(3)] == [1, 1, 1], opened
    assert opened["sign.png"] == 2  # decoded for the tower, then read in full by the words step
