from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from mmsearch.vectors import VectorIndex, VectorIndexError

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


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "vectors.hnsw"


def test_empty_index_searches_to_nothing(path: Path):
    index = VectorIndex(path, DIM)
    assert index.search(unit(1)[0], 5) == []
    assert len(index) == 0 and index.ids() == set()


def test_a_vector_finds_itself_first(path: Path):
    x = unit(500)
    index = VectorIndex(path, DIM)
    index.add(np.arange(1000, 1500), x)
    for i in (0, 17, 499):
        hits = index.search(x[i], 5)
        assert hits[0][0] == 1000 + i
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_scores_are_cosine_similarities_even_for_unnormalised_input(path: Path):
    x = unit(50)
    index = VectorIndex(path, DIM)
    index.add(np.arange(50), x * 3.0)
    hits = index.search(x[0] * 0.5, 50)
    expected = x @ x[0]
    for label, score in hits:
        assert score == pytest.approx(expected[label], abs=1e-5)


def test_k_is_clipped_to_the_live_count(path: Path):
    index = VectorIndex(path, DIM)
    index.add(np.arange(3), unit(3))
    assert len(index.search(unit(1, seed=9)[0], 10)) == 3


def test_update_replaces_the_vector(path: Path):
    x = unit(200)
    index = VectorIndex(path, DIM)
    index.add(np.arange(200), x)
    index.remove([5, 6, 7])  # vacant slots must not swallow the update
    index.add(np.array([3]), x[150:151])
    hits = index.search(x[150], 2)
    assert {label for label, _ in hits} == {3, 150}
    assert len(index) == 197
    labels = [label for label, _ in index.search(x[0], 197)]
    assert len(labels) == len(set(labels)) == 197


def test_repeated_id_in_one_batch_keeps_the_last_vector(path: Path):
    x = unit(3)
    index = VectorIndex(path, DIM)
    index.add(np.array([1, 1, 2]), x)
    assert len(index) == 2
    assert index.search(x[1], 1)[0][0] == 1


def test_remove_hides_from_search_and_ids(path: Path):
    x = unit(300)
    index = VectorIndex(path, DIM)
    index.add(np.arange(300), x)
    index.remove([10, 11, 999])  # 999 was never there: ignored
    assert 10 not in index.ids() and 11 not in index.ids()
    assert len(index) == 298
    for i in (10, 11):
        assert i not in {label for label, _ in index.search(x[i], 20)}


def test_readding_a_removed_id_brings_it_back(path: Path):
    x = unit(100)
    index = VectorIndex(path, DIM)
    index.add(np.arange(100), x)
    index.remove([42])
    index.add(np.array([42]), x[42:43])
    assert 42 in index.ids()
    assert index.search(x[42], 1)[0][0] == 42


def test_new_ids_reuse_deleted_slots(path: Path):
    x = unit(400)
    index = VectorIndex(path, DIM)
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


def test_capacity_grows_past_the_initial_size(path: Path):
    x = unit(3000)
    index = VectorIndex(path, DIM)
    for lo in range(0, 3000, 500):
        index.add(np.arange(lo, lo + 500), x[lo : lo + 500])
    assert len(index) == 3000
    assert index._index.max_elements >= 3000
    assert index.search(x[2999], 1)[0][0] == 2999


def test_save_then_open_round_trip(path: Path):
    x = unit(600)
    index = VectorIndex(path, DIM, M=8, ef_construction=64)
    index.add(np.arange(600), x)
    index.remove([1, 2, 3])
    index.save()
    again = VectorIndex.open(path, DIM)
    assert again.ids() == index.ids()
    assert again.M == 8 and again.ef_construction == 64  # the file's graph parameters win
    assert again.search(x[100], 5) == index.search(x[100], 5)
    again.add(np.array([1]), x[1:2])  # a deleted id from the file can come back
    assert again.search(x[1], 1)[0][0] == 1


def test_open_missing_file_is_empty(path: Path):
    assert len(VectorIndex.open(path, DIM)) == 0


def test_empty_and_all_deleted_indexes_round_trip(path: Path):
    VectorIndex(path, DIM).save()
    assert len(VectorIndex.open(path, DIM)) == 0
    index = VectorIndex(path, DIM)
    index.add(np.array([5]), unit(1))
    index.remove([5])
    index.save()
    again = VectorIndex.open(path, DIM)
    assert len(again) == 0 and again.search(unit(1)[0], 3) == []
    again.add(np.array([6]), unit(1, seed=2))
    assert again.ids() == {6}


def test_save_is_atomic_and_leaves_no_temporary_files(path: Path):
    index = VectorIndex(path, DIM)
    index.add(np.arange(10), unit(10))
    index.save()
    index.add(np.arange(10, 20), unit(10, seed=1))
    index.save()
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert len(VectorIndex.open(path, DIM)) == 20


def test_failed_save_keeps_the_old_file(path: Path, monkeypatch: pytest.MonkeyPatch):
    index = VectorIndex(path, DIM)
    index.add(np.arange(10), unit(10))
    index.save()
    before = path.read_bytes()
    index.add(np.arange(10, 20), unit(10, seed=1))

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mmsearch.vectors.os.fsync", fail)
    with pytest.raises(OSError):
        index.save()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_rebuild_from_batches(path: Path):
    x = unit(250)
    batches = ((np.arange(lo, lo + 50), x[lo : lo + 50]) for lo in range(0, 250, 50))
    index = VectorIndex.rebuild(path, DIM, batches)
    assert path.exists() and len(index) == 250
    assert VectorIndex.open(path, DIM).ids() == set(range(250))


def test_reconcile_adds_missing_and_removes_extra(path: Path):
    x = unit(100)
    index = VectorIndex(path, DIM)
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


def test_filter_keeps_only_accepted_ids(path: Path):
    x = unit(1000)
    index = VectorIndex(path, DIM)
    index.add(np.arange(1000), x)
    hits = index.search(x[4], 10, filter=lambda label: label % 2 == 1)
    assert len(hits) == 10 and all(label % 2 == 1 for label, _ in hits)
    exact = np.argsort(-(x @ x[4]))
    assert hits[0][0] == [i for i in exact if i % 2 == 1][0]


def test_filter_accepting_fewer_than_k_returns_what_there_is(path: Path):
    x = unit(1000)
    index = VectorIndex(path, DIM)
    index.add(np.arange(1000), x)
    index.remove([7])
    hits = index.search(x[0], 10, filter=lambda label: label in (3, 7, 500))
    assert [label for label, _ in hits] == sorted([3, 500], key=lambda i: -float(x[i] @ x[0]))
    assert hits[0][1] == pytest.approx(float(x[hits[0][0]] @ x[0]), abs=1e-5)
    assert index.search(x[0], 10, filter=lambda label: False) == []


def test_truncated_file_raises_a_clear_error(path: Path):
    index = VectorIndex(path, DIM)
    index.add(np.arange(500), unit(500))
    index.save()
    data = path.read_bytes()
    for cut in (0, 50, 96, len(data) // 3, len(data) - 4, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(VectorIndexError, match=str(path)):
            VectorIndex.open(path, DIM)


def test_garbage_and_wrong_dimension_raise_a_clear_error(path: Path):
    index = VectorIndex(path, DIM)
    index.add(np.arange(50), unit(50))
    index.save()
    with pytest.raises(VectorIndexError, match="32-dimensional"):
        VectorIndex.open(path, 64)
    data = bytearray(path.read_bytes())
    data[100:104] = b"\xff" * 4  # the first element's first neighbour points nowhere
    path.write_bytes(bytes(data))
    with pytest.raises(VectorIndexError, match=str(path)):
        VectorIndex.open(path, DIM)
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(VectorIndexError, match=str(path)):
        VectorIndex.open(path, DIM)


def test_searches_from_threads_while_one_adds(path: Path):
    x = unit(4000)
    index = VectorIndex(path, DIM)
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
    index = VectorIndex(tmp_path / "recall.hnsw", dim)
    for lo in range(0, n, 5000):
        index.add(np.arange(lo, lo + 5000), base[lo : lo + 5000])
    truth = np.argsort(-(probe @ base.T), axis=1)[:, :10]
    hits = sum(len({i for i, _ in index.search(q, 10)} & set(t.tolist())) for q, t in zip(probe, truth))
    assert hits / truth.size >= 0.98
