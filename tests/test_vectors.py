from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from mmsearch.ann import AnnGraph
from mmsearch.catalog import Catalog
from mmsearch.flatfile import FlatVectors
from mmsearch.vectors import STAMP, VectorStore

DIM = 32


def unit(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, dim: int, clusters: int, seed: int, spread: float = 1.0) -> np.ndarray:
    # The same recipe as benchmarks/ann.py: gaussian clusters around random unit centres, normalised.
    centres = unit(clusters, dim, seed=seed)
    rng = np.random.default_rng(seed + 1 + n)
    x = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)).astype(np.float32) * spread / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def catalog_with(folder: Path, vectors: np.ndarray) -> tuple[Catalog, list[int]]:
    """A catalog holding one image item per vector (ids 1..n)."""
    catalog = Catalog(folder)
    root = catalog.add_root("/photos")
    ids = []
    with catalog.write() as conn:
        for i, vec in enumerate(vectors):
            fid, _ = catalog.put_file(conn, path=f"/photos/{i}.jpg", root_id=root, size=1, mtime_ns=i,
                                      content_hash=f"{i:064x}", kind="image")
            ids += catalog.add_items(conn, fid, "image", vec[None])
    return catalog, ids


def delete_items(catalog: Catalog, ids: list[int]) -> None:
    with catalog.write() as conn:
        catalog.delete_files(conn, [r[0] for r in conn.execute(
            f"SELECT file_id FROM items WHERE id IN ({','.join('?' * len(ids))})", ids)])


def save_from_catalog(folder: Path, catalog: Catalog) -> VectorStore:
    """What an index run that changed nothing does: the graph filled from the catalog, then saved."""
    store = VectorStore(folder, DIM, catalog)
    store.begin_writing()
    store.save()
    store.end_writing()
    return store


def saved_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("vectors"))


def test_empty_index_searches_to_nothing():
    index = AnnGraph(DIM)
    assert index.search(unit(1)[0], 5) == []
    assert len(index) == 0 and index.ids() == set()


def test_a_vector_finds_itself_first():
    x = unit(500)
    index = AnnGraph(DIM)
    index.add(np.arange(1000, 1500), x)
    for i in (0, 17, 499):
        hits = index.search(x[i], 5)
        assert hits[0][0] == 1000 + i
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_scores_are_cosine_similarities_even_for_unnormalised_input():
    x = unit(50)
    index = AnnGraph(DIM)
    index.add(np.arange(50), x * 3.0)
    hits = index.search(x[0] * 0.5, 50)
    expected = x @ x[0]
    for label, score in hits:
        assert score == pytest.approx(expected[label], abs=1e-5)


def test_k_is_clipped_to_the_live_count():
    index = AnnGraph(DIM)
    index.add(np.arange(3), unit(3))
    assert len(index.search(unit(1, seed=9)[0], 10)) == 3


def test_update_replaces_the_vector():
    x = unit(200)
    index = AnnGraph(DIM)
    index.add(np.arange(200), x)
    index.remove([5, 6, 7])  # vacant slots must not swallow the update
    index.add(np.array([3]), x[150:151])
    hits = index.search(x[150], 2)
    assert {label for label, _ in hits} == {3, 150}
    assert len(index) == 197
    labels = [label for label, _ in index.search(x[0], 197)]
    assert len(labels) == len(set(labels)) == 197


def test_repeated_id_in_one_batch_keeps_the_last_vector():
    x = unit(3)
    index = AnnGraph(DIM)
    index.add(np.array([1, 1, 2]), x)
    assert len(index) == 2
    assert index.search(x[1], 1)[0][0] == 1


def test_remove_hides_from_search_and_ids():
    x = unit(300)
    index = AnnGraph(DIM)
    index.add(np.arange(300), x)
    index.remove([10, 11, 999])  # 999 was never there: ignored
    assert 10 not in index.ids() and 11 not in index.ids()
    assert len(index) == 298
    for i in (10, 11):
        assert i not in {label for label, _ in index.search(x[i], 20)}


def test_readding_a_removed_id_brings_it_back():
    x = unit(100)
    index = AnnGraph(DIM)
    index.add(np.arange(100), x)
    index.remove([42])
    index.add(np.array([42]), x[42:43])
    assert 42 in index.ids()
    assert index.search(x[42], 1)[0][0] == 42


def test_new_ids_reuse_deleted_slots():
    x = unit(400)
    index = AnnGraph(DIM)
    index.add(np.arange(200), x[:200])
    index.remove(range(0, 100))
    index.add(np.arange(1000, 1050), x[200:250])
    assert len(index) == 150
    assert index.ids() == set(range(100, 200)) | set(range(1000, 1050))
    assert index._index.element_count == 200  # the 50 new ones went into vacant slots
    index.add(np.arange(2000, 2100), x[250:350])  # more than the 50 vacancies left
    assert len(index) == 250
    assert index.search(x[300], 1)[0][0] == 2050
    assert index.search(x[220], 1)[0][0] == 1020


def test_capacity_grows_past_the_initial_size():
    x = unit(3000)
    index = AnnGraph(DIM)
    for lo in range(0, 3000, 500):
        index.add(np.arange(lo, lo + 500), x[lo : lo + 500])
    assert len(index) == 3000
    assert index._index.max_elements >= 3000
    assert index.search(x[2999], 1)[0][0] == 2999


def test_reconcile_adds_missing_and_removes_extra():
    x = unit(100)
    index = AnnGraph(DIM)
    index.add(np.arange(0, 80), x[:80])  # 80..99 never made it into the index
    live = set(range(10, 100))  # 0..9 were deleted from the catalog
    asked: list[set[int]] = []

    def stored(missing: set[int]):
        asked.append(set(missing))
        ids = np.array(sorted(missing))
        for lo in range(0, len(ids), 7):
            yield ids[lo : lo + 7], x[ids[lo : lo + 7]]

    assert index.reconcile(stored, live) == (20, 10)
    assert asked == [set(range(80, 100))]
    assert index.ids() == live
    assert index.search(x[95], 1)[0][0] == 95
    assert index.reconcile(stored, live) == (0, 0)
    assert len(asked) == 1  # nothing missing: the catalog isn't asked


def test_filter_keeps_only_accepted_ids():
    x = unit(1000)
    index = AnnGraph(DIM)
    index.add(np.arange(1000), x)
    hits = index.search(x[4], 10, filter=lambda label: label % 2 == 1)
    assert len(hits) == 10 and all(label % 2 == 1 for label, _ in hits)
    exact = np.argsort(-(x @ x[4]))
    assert hits[0][0] == [i for i in exact if i % 2 == 1][0]


def test_many_equal_vectors_are_all_found_though_no_walk_reaches_them():
    """Equal vectors (boilerplate chunks, copies of one photo) cut hnswlib's graph into parts a walk
    never leaves: asked for more than the walk reaches, the search ranks every live vector exactly."""
    groups, copies = 8, 300
    base = unit(groups, 16, seed=5)
    index = AnnGraph(16)
    index.add(np.arange(groups * copies), np.repeat(base, copies, axis=0))
    assert len(index.search(base[0], groups * copies)) == groups * copies
    for g in range(groups):  # each group alone, as a kind or a folder filter asks
        hits = index.search(base[0], copies, filter=lambda label, g=g: label // copies == g)
        assert sorted(i for i, _ in hits) == list(range(g * copies, (g + 1) * copies)), g


def test_filter_accepting_fewer_than_k_returns_what_there_is():
    x = unit(1000)
    index = AnnGraph(DIM)
    index.add(np.arange(1000), x)
    index.remove([7])
    hits = index.search(x[0], 10, filter=lambda label: label in (3, 7, 500))
    assert [label for label, _ in hits] == sorted([3, 500], key=lambda i: -float(x[i] @ x[0]))
    assert hits[0][1] == pytest.approx(float(x[hits[0][0]] @ x[0]), abs=1e-5)
    assert index.search(x[0], 10, filter=lambda label: False) == []


def test_searches_from_threads_while_one_adds():
    x = unit(4000)
    index = AnnGraph(DIM)
    index.add(np.arange(500), x[:500])
    errors: list[BaseException] = []
    done = threading.Event()

    def search():
        rng = np.random.default_rng(threading.get_ident() % 1000)
        try:
            while not done.is_set():
                i = int(rng.integers(0, 500))
                hits = index.search(x[i], 5, filter=(lambda label: label != 3) if i % 2 else None)
                assert hits[0][0] == i or i == 3
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for lo in range(500, 4000, 100):
            index.add(np.arange(lo, lo + 100), x[lo : lo + 100])
            if lo % 1000 == 0:
                index.remove(range(lo - 50, lo))
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert len(index) == 4000 - 3 * 50


@pytest.mark.slow
def test_recall_at_10_on_clustered_vectors_with_the_defaults(tmp_path: Path):
    dim, n, queries = 512, 20_000, 200
    base = clustered(n, dim, clusters=200, seed=1)
    probe = clustered(queries, dim, clusters=200, seed=1)  # same centres, fresh points
    index = AnnGraph(dim)
    for lo in range(0, n, 5000):
        index.add(np.arange(lo, lo + 5000), base[lo : lo + 5000])
    truth = np.argsort(-(probe @ base.T), axis=1)[:, :10]
    hits = sum(len({i for i, _ in index.search(q, 10)} & set(t.tolist())) for q, t in zip(probe, truth))
    assert hits / truth.size >= 0.98


# -- the store: its files, their stamp, and when it trusts them ------------------------------------


def test_the_store_saves_a_graph_a_flat_file_and_a_stamp_that_names_them(tmp_path: Path):
    x = unit(300)
    catalog, ids = catalog_with(tmp_path, x)
    save_from_catalog(tmp_path, catalog)
    assert saved_files(tmp_path) == ["vectors-1.hnsw", "vectors-1.npy", STAMP]
    flat = np.load(tmp_path / "vectors-1.npy", mmap_mode="r")  # a plain .npy file: any NumPy reads it
    assert flat["id"].tolist() == ids and np.allclose(flat["vector"], x, atol=1e-6)
    again = VectorStore(tmp_path, DIM, catalog)
    hits = again.search(x[7], 5)  # the first search scans the flat file
    assert hits[0] == (ids[7], pytest.approx(1.0, abs=1e-5))
    assert again._graph is None
    assert again.ids() == set(ids)  # loads the saved graph: nothing to reconcile
    assert again.search(x[7], 5) == hits or [i for i, _ in again.search(x[7], 5)] == [i for i, _ in hits]


def test_saves_replace_the_previous_files_and_a_failed_save_keeps_them(tmp_path: Path, monkeypatch):
    x = unit(60)
    catalog, ids = catalog_with(tmp_path, x[:30])
    store = VectorStore(tmp_path, DIM, catalog)
    store.begin_writing()
    store.save()
    stamp_before = (tmp_path / STAMP).read_bytes()
    store.add(np.arange(1000, 1010), x[30:40])

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mmsearch.flatfile.os.fsync", no_space)
    with pytest.raises(OSError):
        store.save()
    monkeypatch.undo()
    assert (tmp_path / STAMP).read_bytes() == stamp_before  # the last complete save is still in force
    # No temporary files left; the vectors added since save 1 wait in its tail (queries read them there).
    assert saved_files(tmp_path) == ["vectors-1.hnsw", "vectors-1.npy", "vectors-1.tail", STAMP]
    store.save()
    assert saved_files(tmp_path) == ["vectors-2.hnsw", "vectors-2.npy", STAMP]
    store.end_writing()


def test_a_cold_search_is_exact_and_current_without_the_graph(tmp_path: Path):
    """The flat file of the last save plus, from the catalog, what was added since; what was deleted
    since is for the catalog to drop (it no longer has the rows)."""
    x = unit(200)
    catalog, ids = catalog_with(tmp_path, x[:150])
    save_from_catalog(tmp_path, catalog)
    root = catalog.roots()[0][0]
    with catalog.write() as conn:  # another process's run, not saved yet
        fid, _ = catalog.put_file(conn, path="/photos/new.jpg", root_id=root, size=1, mtime_ns=1,
                                  content_hash="n" * 64, kind="image")
        new_id = catalog.add_items(conn, fid, "image", x[180:181])[0]
    reader = VectorStore(tmp_path, DIM, catalog)
    hits = reader.search(x[180], 3)
    assert hits[0][0] == new_id and reader._graph is None
    exact = np.argsort(-(x[:150] @ x[3]))[:10]
    assert [i for i, _ in reader.search(x[3], 10)] == [ids[i] for i in exact]
    allowed = set(ids[::3])
    assert {i for i, _ in reader.search(x[3], 500, allowed=allowed)} == allowed


def test_graph_of_another_hnswlib_version_is_rebuilt_not_read(tmp_path: Path, caplog):
    x = unit(80)
    catalog, ids = catalog_with(tmp_path, x)
    save_from_catalog(tmp_path, catalog)
    stamp = json.loads((tmp_path / STAMP).read_text())
    stamp["hnswlib"] = "0.7.0"
    (tmp_path / STAMP).write_text(json.dumps(stamp))
    graph = tmp_path / stamp["graph"]["name"]
    graph.write_bytes(b"\xff" * graph.stat().st_size)  # a format this hnswlib must never be handed
    with caplog.at_level("INFO", logger="mmsearch"):
        again = VectorStore(tmp_path, DIM, catalog)
        assert again.ids() == set(ids)
        assert again.search(x[5], 1)[0][0] == ids[5]
    assert "written by hnswlib 0.7.0" in caplog.text


@pytest.mark.parametrize("damage", ["truncate-flat", "garbage-flat", "drop-graph", "bad-stamp", "other-dim"])
def test_files_that_do_not_match_their_stamp_fall_back_to_the_catalog(tmp_path: Path, damage: str):
    x = unit(120)
    catalog, ids = catalog_with(tmp_path, x)
    save_from_catalog(tmp_path, catalog)
    stamp = json.loads((tmp_path / STAMP).read_text())
    flat, graph = tmp_path / stamp["flat"]["name"], tmp_path / stamp["graph"]["name"]
    if damage == "truncate-flat":
        flat.write_bytes(flat.read_bytes()[:-100])
    elif damage == "garbage-flat":
        flat.write_bytes(np.random.default_rng(0).bytes(flat.stat().st_size))
    elif damage == "drop-graph":
        graph.unlink()
    elif damage == "bad-stamp":
        (tmp_path / STAMP).write_text("{not json")
    else:
        stamp["dim"] = DIM * 2
        (tmp_path / STAMP).write_text(json.dumps(stamp))
    reader = VectorStore(tmp_path, DIM, catalog)
    assert reader.search(x[9], 1)[0][0] == ids[9]  # exact, from the catalog where the flat file fails
    assert reader.ids() == set(ids)
    save_from_catalog(tmp_path, catalog)  # a run repairs the files
    assert len(FlatVectors(tmp_path / json.loads((tmp_path / STAMP).read_text())["flat"]["name"], DIM)) == 120


def test_files_of_an_earlier_version_are_replaced(tmp_path: Path):
    x = unit(20)
    catalog, ids = catalog_with(tmp_path, x)
    (tmp_path / "vectors.hnsw").write_bytes(b"an hnswlib file of the single-file layout")
    (tmp_path / "vectors.hnsw.json").write_text('{"generation": 3, "live": 20}')
    reader = VectorStore(tmp_path, DIM, catalog)
    assert reader.search(x[4], 1)[0][0] == ids[4]  # never read: the catalog answers
    save_from_catalog(tmp_path, catalog)
    assert saved_files(tmp_path) == ["vectors-1.hnsw", "vectors-1.npy", STAMP]


def test_deleted_items_leave_the_saved_files(tmp_path: Path):
    x = unit(40)
    catalog, ids = catalog_with(tmp_path, x)
    store = VectorStore(tmp_path, DIM, catalog)
    store.begin_writing()
    store.save()
    delete_items(catalog, ids[:10])
    store.remove(ids[:10])
    store.save()
    store.end_writing()
    flat = FlatVectors(tmp_path / "vectors-2.npy", DIM)
    assert flat.ids.tolist() == ids[10:]
    assert VectorStore(tmp_path, DIM, catalog).ids() == set(ids[10:])


def test_vectors_committed_since_the_save_are_scanned_from_the_tail_not_read_from_the_catalog(tmp_path: Path,
                                                                                                monkeypatch):
    """A run appends what it commits to the tail (vectors-N.tail): a query in another process during
    the run, or after it was killed before its save, scans them as fast as saved ones; the catalog is
    asked only for what is past the tail. A torn end of the tail (power lost mid-append) is left out,
    and what it held comes from the catalog."""
    x = unit(400)
    catalog, ids = catalog_with(tmp_path, x[:100])
    root = catalog.roots()[0][0]
    writer = VectorStore(tmp_path, DIM, catalog)
    writer.begin_writing()
    writer.save()
    for lo in range(100, 400, 50):  # the run's batches: committed, then applied; no save (it was killed)
        with catalog.write() as conn:
            new = []
            for i in range(lo, lo + 50):
                fid, _ = catalog.put_file(conn, path=f"/photos/{i}.jpg", root_id=root, size=1, mtime_ns=i,
                                          content_hash=f"{i:064x}", kind="image")
                new += catalog.add_items(conn, fid, "image", x[i : i + 1])
        writer.add(np.asarray(new), x[lo : lo + 50])
        ids += new
    reader_catalog = Catalog(tmp_path, readonly=True)
    asked: list[int] = []
    read_from_catalog = reader_catalog.vectors_after

    def counted(after: int):
        got = read_from_catalog(after)
        asked.append(len(got[0]))
        return got

    monkeypatch.setattr(reader_catalog, "vectors_after", counted)
    reader = VectorStore(tmp_path, DIM, reader_catalog)
    exact = np.argsort(-(x @ x[350]))[:10]
    assert [i for i, _ in reader.search(x[350], 10)] == [ids[i] for i in exact]
    assert asked == [0]  # all 300 came from the tail
    tail = tmp_path / "vectors-1.tail"
    size = tail.stat().st_size
    with open(tail, "r+b") as f:  # the last record torn, and a zero-filled one before it
        f.truncate(size - 40)
        f.seek(size - 40 - (8 + 4 * DIM) * 2 + 20)
        f.write(bytes(8 + 4 * DIM))
    reader = VectorStore(tmp_path, DIM, reader_catalog)
    assert [i for i, _ in reader.search(x[399], 10)] == [ids[i] for i in np.argsort(-(x @ x[399]))[:10]]
    assert asked[-1] == 2  # the two damaged records, from the catalog
    writer.end_writing()
