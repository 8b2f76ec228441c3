"""Old catalogs are migrated on open; catalogs from a newer mmsearch are refused, byte for byte untouched.

tests/fixtures/schema_v1.db was written by the schema-1 catalog code (commit d2257fc): 3 images and
1 document chunk with 16-dim vectors (the tiny bundle's dimension), 1 file in error, 1 finished run.

tests/fixtures/schema_v5.db was written by the schema-5 catalog code (commit ac66bcf, through its
Catalog.put_file / add_items / add_text_items): a PDF page of 31 words in 6 chunks of 8 words that
overlap by 2 (as a tiny text tower's context cuts them), a Chinese text file in 3 chunks that
overlap by 2 characters, and a photo with 16-dim vectors whose words were read ("OPEN 24 HOURS").
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mmsearch import Index, MmsearchError
from mmsearch.catalog import SCHEMA_VERSION, Catalog, CatalogError

FIXTURE = Path(__file__).parent / "fixtures" / "schema_v1.db"
FIXTURE_V5 = Path(__file__).parent / "fixtures" / "schema_v5.db"


@pytest.fixture()
def v1_index(tmp_path) -> Path:
    folder = tmp_path / "index"
    folder.mkdir()
    shutil.copy(FIXTURE, folder / "catalog.db")
    return folder


def test_fixture_is_schema_1():
    conn = sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    assert "pid" not in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]


def test_v1_is_migrated_on_open_keeps_rows_and_searches_work(v1_index, tiny_clip_bundle):
    with Index(v1_index, model=tiny_clip_bundle, device="cpu") as idx:
        assert idx.catalog.meta("schema_version") == str(SCHEMA_VERSION) == "9"
        conn = idx.catalog.conn
        assert "pid" in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        assert idx.status()["not_read"] == {}  # the table of files not read, empty until a walk counts them
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'files_status'").fetchone()
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT path FROM files WHERE status = 'error'"))
        assert "files_status" in plan
        # Version 5: every picture's words are still to be read (none was read before OCR existed).
        # Version 8: the chunks written before it all have their vectors.
        # Version 9: videos; there are none, and no file is left committed in part.
        assert idx.catalog.counts() == {"image": 3, "document": 1, "video": 0, "chunks": 1, "frames": 0, "errors": 1,
                                        "videos_in_part": 0, "documents_in_part": 0, "pictures_with_words": 0, "words_to_read": 3,
                                        "chunks_without_vectors": 0, "documents_without_vectors": 0}
        assert "ocr_hash" in [r[1] for r in conn.execute("PRAGMA table_info(files)")]
        assert idx.catalog.errors() == [{"path": "/photos/broken.jpg", "reason": "the image file is truncated"}]
        assert idx.catalog.last_run()["status"] == "done" and idx.catalog.last_run()["summary"] == {"added": 4}
        # The ANN file did not exist: it is rebuilt from the catalog's vectors, which searches then use.
        assert idx.vectors.ids() == {1, 2, 3, 4}
        hits = idx.similar("/photos/img0.jpg", k=3)
        assert len(hits) == 3 and "/photos/img0.jpg" not in {h.path for h in hits}
        kw = idx.search("harbour fishing boats", mode="keyword", k=1)
        assert kw[0].path == "/photos/notes/harbour.txt"
        # Version 4: every file dated by an instant (no EXIF times here: the modification time).
        assert conn.execute("SELECT count(*) FROM files WHERE time_s = mtime_ns / 1e9").fetchone()[0] == 5
        assert len(idx.search("harbour", mode="keyword", after="2023-11-14", before="2023-11-16")) == 1
        assert idx.search("harbour", mode="keyword", after="2023-11-16") == []
        # Version 3: the keyword index was rebuilt (diacritics folded, CJK characters apart) and the
        # document, whose pages older versions kept only the start of, is read again by the next run.
        assert idx.search("HARBOUR", mode="keyword", k=1)[0].path == "/photos/notes/harbour.txt"
        assert conn.execute("SELECT size, content_hash FROM files WHERE kind = 'document'").fetchall() == [(-1, None)]
        assert conn.execute("SELECT count(*) FROM files WHERE kind = 'image' AND size = -1").fetchone()[0] == 0
        # Version 6: no change time is known yet (the next run records it; test_web_guard serves by it).
        assert conn.execute("SELECT count(*) FROM files WHERE ctime_ns IS NULL").fetchone()[0] == 5
        run = idx.catalog.start_run()  # the new column is written
        assert conn.execute("SELECT pid FROM runs WHERE id = ?", (run,)).fetchone()[0] > 0


def test_v5_keyword_index_becomes_passages_from_the_chunks_nothing_read_or_encoded_again(tmp_path):
    """Schema 6 moves the keyword index from the vector chunks to passages cut from the chunks' text:
    a phrase longer than a chunk, or across two, is found as a phrase, on its page; so is a Chinese
    word across a chunk boundary; the vectors, items and files are as they were."""
    folder = tmp_path / "index"
    folder.mkdir()
    shutil.copy(FIXTURE_V5, folder / "catalog.db")
    before = sqlite3.connect(folder / "catalog.db")
    rows = lambda c, sql: c.execute(sql).fetchall()  # noqa: E731
    items = rows(before, 'SELECT id, file_id, kind, page, start, "end", text FROM items ORDER BY id')
    vectors = rows(before, "SELECT item_id, vector FROM vectors ORDER BY item_id")
    files = rows(before, "SELECT id, path, size, content_hash, ocr_hash FROM files ORDER BY id")
    before.close()
    catalog = Catalog(folder, readonly=True)  # a query migrates it
    assert catalog.schema_version() == 9
    conn = catalog.conn
    assert rows(conn, 'SELECT id, file_id, kind, page, start, "end", text FROM items ORDER BY id') == items
    assert rows(conn, "SELECT item_id, vector FROM vectors ORDER BY item_id") == vectors
    assert rows(conn, "SELECT id, path, size, content_hash, ocr_hash FROM files ORDER BY id") == files
    assert not rows(conn, "SELECT name FROM sqlite_master WHERE name LIKE 'items_fts%'")

    def best(query):
        hits = catalog.keyword_search(query, 5)
        row = catalog.passages([hits[0][0]])[hits[0][0]]
        return Path(row.path).name, row.page, int(hits[0][1])

    # 14 words over three chunks, as typed (level 3); a phrase no chunk held whole.
    assert best("dog while the farmer watches from the old red barn and the children sing") == ("farm.pdf", 1, 3)
    assert best("The quick brown fox jumps over the lazy dog while the farmer watches from the old red barn and "
                "the children sing a song about the harvest moon rising above the quiet hills tonight") == ("farm.pdf", 1, 3)
    assert best("人工智能的一个分支它使计算机") == ("ml.txt", None, 3)  # across both boundaries
    assert best("open 24 hours") == ("sign.jpg", None, 3)
    catalog.close()


def test_v9_adds_videos_times_leaving_every_item_and_file_as_it_was(tmp_path):
    """Schema 9: a video's frames are items with their time (items.time_s), the video its length
    (files.duration_s) and, while committed in parts, how far they go (files.done_s). An older catalog
    gets the columns empty: its items have no time, its files are whole."""
    folder = tmp_path / "index"
    folder.mkdir()
    shutil.copy(FIXTURE_V5, folder / "catalog.db")
    catalog = Catalog(folder)
    conn = catalog.conn
    assert catalog.schema_version() == 9
    assert "time_s" in [r[1] for r in conn.execute("PRAGMA table_info(items)")]
    assert {"duration_s", "done_s"} <= {r[1] for r in conn.execute("PRAGMA table_info(files)")}
    assert conn.execute("SELECT count(*) FROM items WHERE time_s IS NOT NULL").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM files WHERE done_s IS NOT NULL OR duration_s IS NOT NULL").fetchone()[0] == 0
    assert catalog.counts()["video"] == catalog.counts()["frames"] == catalog.counts()["videos_in_part"] == 0
    # The new columns are written: a video's frames, committed in two parts.
    with catalog.write() as c:
        file_id, _ = catalog.put_file(c, path="/v/clip.mp4", root_id=1, size=10, mtime_ns=1, content_hash="h",
                                      kind="video", status="indexing", duration_s=61.5, done_s=30.0)
        catalog.add_items(c, file_id, "video", np.eye(2, 16, dtype=np.float32), times=[0.0, 12.5])
    assert catalog.video_progress(file_id) == (30.0, 12.5) and catalog.counts()["videos_in_part"] == 1
    with catalog.write() as c:
        catalog.add_items(c, file_id, "video", np.eye(1, 16, dtype=np.float32), times=[31.0])
        catalog.set_video_progress(c, file_id, None)
    assert catalog.video_progress(file_id) == (None, 31.0)
    assert catalog.counts()["video"] == 1 and catalog.counts()["frames"] == 3
    catalog.close()


def test_a_reader_migrates_too_and_migration_is_idempotent(v1_index):
    cat = Catalog(v1_index, readonly=True)
    assert cat.meta("schema_version") == str(SCHEMA_VERSION) and cat.counts()["image"] == 3
    cat.close()
    again = Catalog(v1_index)
    assert again.meta("schema_version") == str(SCHEMA_VERSION)
    again.close()


def test_new_catalog_has_the_same_schema_as_a_migrated_one(v1_index, tmp_path):
    def shape(folder):
        c = Catalog(folder)
        out = {(t, tuple(r[1] for r in c.conn.execute(f"PRAGMA table_info({t})"))) for (t,) in c.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '%fts%' AND name != 'sqlite_sequence'")}
        idx = {r[0] for r in c.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        c.close()
        return out, idx

    assert shape(v1_index) == shape(tmp_path / "fresh")


def test_newer_schema_is_refused_clearly_and_left_untouched(tmp_path, bundle):
    folder = tmp_path / "index"
    folder.mkdir()
    shutil.copy(FIXTURE, folder / "catalog.db")
    conn = sqlite3.connect(folder / "catalog.db")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    digest = hashlib.sha256((folder / "catalog.db").read_bytes()).hexdigest()
    names = sorted(p.name for p in folder.iterdir())
    for readonly in (False, True):
        with pytest.raises(MmsearchError, match=r"newer mmsearch \(schema 99.*upgrade mmsearch.*untouched"):
            Index(folder, model=bundle, device="cpu", readonly=readonly)
    with pytest.raises(CatalogError):
        Catalog(folder)
    assert hashlib.sha256((folder / "catalog.db").read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in folder.iterdir()) == names


def test_new_catalog_stores_vectors_compactly(tmp_path):
    """512-d float32 vectors (2 KB each) take little more than their own bytes on disk."""
    import numpy as np

    catalog = Catalog(tmp_path)
    n, dim = 3000, 512
    vecs = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    root = catalog.add_root("/photos")
    with catalog.write() as conn:
        for i in range(n):
            fid, _ = catalog.put_file(conn, path=f"/photos/{i}.jpg", root_id=root, size=1, mtime_ns=i,
                                      content_hash=f"{i:064x}", kind="image", media_type="image/jpeg", width=1, height=1)
            catalog.add_items(conn, fid, "image", vecs[i : i + 1])
    catalog.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert catalog.conn.execute("PRAGMA page_size").fetchone()[0] == 16384
    size = (tmp_path / "catalog.db").stat().st_size
    assert size < 1.45 * n * dim * 4, size / (n * dim * 4)  # 4 KB pages gave 2.0x and more
    got = dict((int(i), v) for ids, vs in catalog.all_vectors() for i, v in zip(ids, vs))
    assert len(got) == n and np.array_equal(got[min(got)], vecs[0])
    catalog.close()


def test_documents_of_an_older_catalog_are_read_again_whole_by_the_next_run(v1_index, tmp_path, tiny_clip_bundle):
    """Older versions kept only the start of each page: the upgrade marks documents so the next run
    re-reads them, whatever their size and time say."""
    import os

    docs = tmp_path / "notes"
    docs.mkdir()
    text = "The old harbour at dawn, fishing boats tied along the stone quay. " * 200 + "Gulls circle the lighthouse."
    (docs / "harbour.txt").write_text(text)
    st = os.stat(docs / "harbour.txt")
    conn = sqlite3.connect(v1_index / "catalog.db")  # the fixture's document, moved here, as indexed before
    conn.execute("UPDATE files SET path = ?, size = ?, mtime_ns = ? WHERE kind = 'document'",
                  (str(docs / "harbour.txt"), st.st_size, st.st_mtime_ns))
    conn.commit()
    conn.close()
    with Index(v1_index, model=tiny_clip_bundle, device="cpu") as idx:
        report = idx.index([docs])
        assert report.updated == 1 and report.unchanged == 0, report
        assert [h.path for h in idx.search("lighthouse", mode="keyword")] == [str(docs / "harbour.txt")]
        again = idx.index([docs])
        assert again.unchanged == 1 and again.updated == 0


def test_scanned_pdfs_an_older_version_refused_are_read_again_by_the_next_run(v1_index):
    """Before version 5 a PDF without a text layer was 'no text found', in error, and an unchanged file
    in error is not retried: the upgrade marks those for the next run (which reads their pages)."""
    conn = sqlite3.connect(v1_index / "catalog.db")
    conn.execute("UPDATE files SET media_type = 'application/pdf', path = '/photos/scan.pdf', status = 'error',"
                 " error = 'no text found', content_hash = 'abc', size = 10 WHERE kind = 'document'")
    conn.commit()
    conn.close()
    cat = Catalog(v1_index)
    assert cat.conn.execute("SELECT size, content_hash FROM files WHERE path = '/photos/scan.pdf'").fetchall() == \
        [(-1, None)]
    # Other files in error stay as they were: unchanged, they are not retried.
    assert cat.errors() == [{"path": "/photos/broken.jpg", "reason": "the image file is truncated"},
                            {"path": "/photos/scan.pdf", "reason": "no text found"}]
    assert cat.conn.execute("SELECT size FROM files WHERE path = '/photos/broken.jpg'").fetchone()[0] != -1
    cat.close()


def test_counting_vectors_leaves_out_the_words_read_in_pictures(tmp_path):
    """A picture's words are an item without a vector: the count the vector files are checked against
    is of vectors, and it stays a count over small indexes (no vector row is read)."""
    import numpy as np

    from mmsearch.catalog import OCR_KIND

    catalog = Catalog(tmp_path)
    root = catalog.add_root("/photos")
    with catalog.write() as conn:
        fid, _ = catalog.put_file(conn, path="/photos/sign.jpg", root_id=root, size=1, mtime_ns=1,
                                  content_hash="f" * 64, kind="image", media_type="image/jpeg")
        catalog.add_items(conn, fid, "image", np.ones((1, 4), np.float32))
        generation = catalog.generation()
        catalog.add_text_items(conn, fid, OCR_KIND, [(None, "OPEN 24 HOURS")])
        catalog.set_ocr_done(conn, fid, "f" * 64)
    assert catalog.vector_count() == 1 == len(catalog.live_item_ids())
    assert catalog.generation() == generation  # no vector changed: the saved vector files stay current
    plan = " ".join(r[3] for r in catalog.conn.execute("EXPLAIN QUERY PLAN SELECT count(*) FROM items WHERE kind = ?",
                                                        (OCR_KIND,)))
    assert "items_ocr" in plan
    assert catalog.counts()["pictures_with_words"] == 1 and catalog.counts()["words_to_read"] == 0
    catalog.close()
