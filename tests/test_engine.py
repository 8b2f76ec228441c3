"""The engine through its Python API: incremental indexing, queries, filters, threads."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import datetime

import numpy as np
import pytest

from engine_helpers import DOCS, make_collection, picture, set_mtime
from mmsearch import Index, MmsearchError
from mmsearch.errors import InvalidArgument


@pytest.fixture()
def collection(tmp_path):
    root = tmp_path / "photos"
    make_collection(root)
    return root


@pytest.fixture()
def idx(tmp_path, bundle):
    with Index(tmp_path / "index", model=bundle, device="cpu") as index:
        yield index


def ann_ids(index: Index) -> set[int]:
    return index.vectors.ids()


def catalog_ids(index: Index) -> set[int]:
    return index.catalog.live_item_ids()


def test_first_run_indexes_everything_and_stores_agree(idx, collection):
    report = idx.index([collection])
    assert report.added == 6 + len(DOCS) and not report.errors
    counts = idx.catalog.counts()
    assert counts["image"] == 6 and counts["document"] == len(DOCS)
    assert ann_ids(idx) == catalog_ids(idx) and len(catalog_ids(idx)) >= 6 + len(DOCS)


def test_image_query_finds_itself_first(idx, collection):
    idx.index([collection])
    for name in ("img0.jpg", "sub/img1.png", "img2.webp"):
        hits = idx.search(image=collection / name, k=3, type="image")
        assert hits[0].path == str(collection / name)
        assert hits[0].similarity > 0.99 and hits[0].score > 0.49 and hits[0].match == "meaning"


def test_document_text_finds_its_document_first(idx, collection):
    idx.index([collection])
    for name, text in DOCS.items():
        for mode in ("vector", "hybrid", "keyword"):
            hits = idx.search(text, k=3, mode=mode, type="document")
            assert hits[0].path == str(collection / "docs" / name), mode
            assert hits[0].kind == "document" and hits[0].snippet


def test_second_run_encodes_nothing(idx, collection):
    idx.index([collection])
    again = idx.index([collection])
    assert again.encoded_items == 0 and again.added == again.updated == again.removed == 0
    assert again.unchanged == 6 + len(DOCS)


def test_nested_roots_encode_nothing_twice(idx, collection):
    """~/photos, then ~/photos/sub on its own, then ~/photos again: the overlap is indexed once."""
    first = idx.index([collection])
    sub = collection / "sub"
    in_sub = len([p for p in sub.rglob("*") if p.is_file()])
    for root in (sub, collection, sub):
        again = idx.index([root])
        assert again.encoded_items == 0 and again.added == again.updated == again.removed == 0, root
        assert again.unchanged == (in_sub if root == sub else first.added)
    (sub / "img1.png").unlink()  # gone from the inner root: a run over either root removes it, once
    assert idx.index([sub]).removed + idx.index([collection]).removed == 1
    assert idx.catalog.counts()["image"] == 5 and ann_ids(idx) == catalog_ids(idx)


def test_single_files_can_be_indexed(idx, collection, tmp_path):
    photo, doc = collection / "img0.jpg", collection / "docs" / next(iter(DOCS))
    first = idx.index([photo, doc])
    assert first.added == 2 and not first.errors
    assert idx.search(image=photo, k=1)[0].path == str(photo)
    assert idx.index([photo, doc]).unchanged == 2
    odd = tmp_path / "notes.xyz"
    odd.write_text("x")
    report = idx.index([odd])
    assert [(e["path"], e["reason"]) for e in report.errors] == [(str(odd), "not an image, a document or a video mmsearch reads (.xyz)")]
    assert str(odd) not in idx.status()["roots"]
    photo.unlink()  # a vanished root changes nothing (it may be an unplugged drive); forget drops it
    generation = idx.catalog.generation()
    with pytest.raises(InvalidArgument, match="img0.jpg: no such folder or file; nothing was indexed"):
        idx.index([photo, doc])  # nothing is done, not even for the path that exists
    assert idx.catalog.counts()["image"] == 1 and idx.catalog.generation() == generation
    idx.forget(photo)
    assert idx.catalog.counts()["image"] == 0 and ann_ids(idx) == catalog_ids(idx)


def test_change_delete_rename(idx, collection):
    idx.index([collection])
    before_ids = catalog_ids(idx)
    # changed: new pixels under the same name
    picture(100).save(collection / "img0.jpg", quality=95)
    set_mtime(collection / "img0.jpg", 2_000_000_000)
    # deleted
    (collection / "img2.webp").unlink()
    # renamed: same bytes, new name
    shutil.move(collection / "sub" / "img1.png", collection / "renamed.png")
    report = idx.index([collection])
    assert (report.updated, report.removed, report.moved) == (1, 1, 1)
    assert report.encoded_items == 1  # only the changed picture
    assert ann_ids(idx) == catalog_ids(idx)
    assert idx.catalog.file_by_path(str(collection / "img2.webp")) is None
    assert idx.catalog.file_by_path(str(collection / "sub" / "img1.png")) is None
    moved = idx.catalog.file_by_path(str(collection / "renamed.png"))
    assert moved is not None
    hits = idx.search(image=collection / "renamed.png", k=1)
    assert hits[0].path == str(collection / "renamed.png") and hits[0].item_id in before_ids  # vector kept
    hits = idx.search(image=collection / "img0.jpg", k=1)
    assert hits[0].path == str(collection / "img0.jpg") and hits[0].item_id not in before_ids  # re-encoded
    assert len(catalog_ids(idx)) == len(before_ids) - 1


def test_touched_file_is_not_reencoded(idx, collection):
    idx.index([collection])
    set_mtime(collection / "img0.jpg", 1_900_000_000)
    report = idx.index([collection])
    assert report.encoded_items == 0 and report.unchanged == 6 + len(DOCS)


def test_filters(idx, collection):
    set_mtime(collection / "img0.jpg", datetime(2001, 5, 1).timestamp())
    idx.index([collection])
    query = collection / "img0.jpg"
    assert all(h.kind == "image" for h in idx.search(image=query, type="image", k=20))
    assert all(h.kind == "document" for h in idx.search(image=query, type="document", k=20))
    under = idx.search(image=query, under=str(collection / "sub"), k=20)
    assert under and all(h.path.startswith(str(collection / "sub") + "/") for h in under)
    old = idx.search(image=query, before=datetime(2002, 1, 1), k=20)
    assert [h.path for h in old] == [str(query)]
    new = idx.search(image=query, after=datetime(2002, 1, 1), k=20)
    assert str(query) not in [h.path for h in new] and len(new) == 6 + len(DOCS) - 1


def test_similar_leaves_the_file_out(idx, collection):
    idx.index([collection])
    hits = idx.similar(collection / "img0.jpg", k=4, type="image")
    assert len(hits) == 4 and str(collection / "img0.jpg") not in [h.path for h in hits]
    assert [h.rank for h in hits] == [1, 2, 3, 4]


def test_forget_drops_root_from_both_stores(idx, collection, tmp_path):
    other = tmp_path / "other"
    make_collection(other, n_images=2, docs={})
    idx.index([collection, other])
    assert idx.forget(collection) == 6 + len(DOCS)
    assert ann_ids(idx) == catalog_ids(idx) and len(catalog_ids(idx)) == 2
    assert all(h.path.startswith(str(other)) for h in idx.search(image=other / "img0.jpg", k=10))


def test_index_is_tied_to_its_model(tmp_path, bundle, collection):
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        idx.index([collection])
    other = tmp_path / "other-model"  # another model: here the same towers under another manifest
    shutil.copytree(bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "name": "another-model"}))
    with pytest.raises(MmsearchError, match="built with model"):
        Index(tmp_path / "index", model=other)
    with Index(tmp_path / "index", readonly=True) as again:  # the recorded model is found by itself
        assert again.search(image=collection / "img0.jpg", k=1)[0].path == str(collection / "img0.jpg")


def test_searches_from_threads_while_indexing(tmp_path, bundle, collection):
    big = tmp_path / "more"
    make_collection(big, n_images=40, docs={}, first_seed=1000)  # no twin of the query picture
    errors: list[BaseException] = []
    stop = threading.Event()
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        idx.index([collection])

        def searcher():
            try:
                while not stop.is_set():
                    hits = idx.search(image=collection / "img0.jpg", k=5)
                    assert hits[0].path == str(collection / "img0.jpg")
                    idx.search("boats in the harbour", k=5)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=searcher) for _ in range(3)]
        for t in threads:
            t.start()
        report = idx.index([big])
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors
        assert report.added == 40
        assert ann_ids(idx) == catalog_ids(idx)


def test_reopened_index_reconciles_missing_vector_files(tmp_path, bundle, collection):
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        idx.index([collection])
    for path in (tmp_path / "index").glob("vectors*"):
        path.unlink()  # as if the process died before its first save
    with Index(tmp_path / "index", device="cpu") as idx:
        assert ann_ids(idx) == catalog_ids(idx) and len(catalog_ids(idx)) >= 9
        assert idx.search(image=collection / "img0.jpg", k=1)[0].path == str(collection / "img0.jpg")


def test_vectors_are_unit_length(idx, collection):
    idx.index([collection])
    for _, vecs in idx.catalog.all_vectors():
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)
