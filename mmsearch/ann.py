"""The approximate-nearest-neighbour graph: hnswlib over unit vectors, labelled with catalog item ids.

hnswlib is used through its public API only (init, add, mark deleted, query, save, load): its file
format is its own business. The store (vectors.py) decides when a graph is saved and when a saved
one may be loaded; this module only wraps the library.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import hnswlib
import numpy as np

from .errors import MmsearchError

_INITIAL_CAPACITY = 1024
Hits = list[tuple[int, float]]  # (item id, cosine similarity), best first


class AnnError(MmsearchError):
    """A graph file hnswlib could not load; the store rebuilds it from the catalog."""


_GET_BLOCK = 2048  # vectors read from hnswlib at a time (AnnGraph.vectors)


class AnnGraph:
    """hnswlib index (space='ip' on L2-normalised float32 vectors) whose labels are catalog item ids."""

    # Defaults from benchmarks/ann.py (200 gaussian clusters, dim 512): recall@10 0.988 at 1M vectors with
    # p50 1.0 ms on one core; M=16 needs a far larger ef for that, M=24 costs 3% more memory than it.
    def __init__(self, dim: int, *, M: int = 24, ef_construction: int = 200, ef_search: int = 250):
        self.dim = dim
        self.ef_search = ef_search
        # hnswlib is not safe for an add racing a query, and set_ef is index-wide: one lock for all.
        self._lock = threading.RLock()
        self._index = hnswlib.Index(space="ip", dim=dim)
        self._index.init_index(
            max_elements=_INITIAL_CAPACITY, M=M, ef_construction=ef_construction, allow_replace_deleted=True
        )
        self._live: set[int] = set()
        self._deleted: set[int] = set()  # labels still in the graph but marked deleted

    @classmethod
    def load(cls, path: Path, dim: int, live: Iterable[int], **params) -> AnnGraph:
        """A graph saved by `save`, whose live labels the caller knows (the store keeps them beside it:
        hnswlib does not list its deleted marks)."""
        self = cls(dim, **params)
        live_set = {int(i) for i in live}
        try:
            index = hnswlib.Index(space="ip", dim=dim)
            index.load_index(str(path), max_elements=max(len(live_set), _INITIAL_CAPACITY), allow_replace_deleted=True)
        except OSError as e:
            raise AnnError(f"{path}: cannot read the graph ({e.strerror or e})") from e
        except (RuntimeError, MemoryError, ValueError) as e:
            raise AnnError(f"{path}: hnswlib could not load it ({e})") from e
        labels = set(index.get_ids_list())
        if not live_set <= labels:
            raise AnnError(f"{path}: the graph lacks {len(live_set - labels)} of the vectors saved beside it")
        self._index = index
        self._live = live_set
        self._deleted = labels - live_set
        return self

    @property
    def M(self) -> int:
        return self._index.M

    @property
    def ef_construction(self) -> int:
        return self._index.ef_construction

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or update; an id that was removed comes back."""
        ids, vectors = self._check_batch(ids, vectors)
        if not len(ids):
            return
        with self._lock:
            labels = ids.tolist()
            revived = [i for i in labels if i in self._deleted]
            for label in revived:
                # With allow_replace_deleted, hnswlib refuses to update a deleted label: unmark it first.
                self._index.unmark_deleted(label)
                self._deleted.discard(label)
                self._live.add(label)
            existing = np.fromiter((i in self._live for i in labels), dtype=bool, count=len(labels))
            new = ~existing
            count_new = int(new.sum())
            needed = self._index.element_count + count_new
            if needed > self._index.max_elements:
                self._index.resize_index(max(needed, 2 * self._index.max_elements))
            if existing.any():
                # Never replace_deleted here: it would move a live label into a vacant slot and leave its
                # old slot in the graph as a duplicate.
                self._index.add_items(vectors[existing], ids[existing], replace_deleted=False)
            if count_new:
                self._index.add_items(vectors[new], ids[new], replace_deleted=True)
                if self._deleted:
                    # Some deleted slots were reused and their labels are gone; hnswlib doesn't say which.
                    if count_new >= len(self._deleted):
                        self._deleted.clear()
                    else:
                        self._deleted.intersection_update(self._index.get_ids_list())
            self._live.update(labels)

    def reserve(self, more: int) -> None:
        """Make room for `more` vectors at once. Growing by doubling as adds arrive holds the old and
        the new graph together at each step and ends with up to twice the room needed; an index run
        knows how many files it will add and asks once."""
        with self._lock:
            needed = self._index.element_count + more
            if needed > self._index.max_elements:
                self._index.resize_index(needed)

    def remove(self, ids: Iterable[int]) -> None:
        """Hide ids from search (hnswlib marks them deleted; their slots are reused by later adds)."""
        with self._lock:
            for label in ids:
                label = int(label)
                if label in self._live:
                    self._index.mark_deleted(label)
                    self._live.discard(label)
                    self._deleted.add(label)

    def search(self, vector: np.ndarray, k: int, *, filter: Callable[[int], bool] | None = None) -> Hits:
        """(id, cosine similarity), best first. `filter(id)` keeps only the ids it accepts."""
        query = normalise(np.asarray(vector, dtype=np.float32).reshape(1, self.dim))
        with self._lock:
            k = min(int(k), len(self._live))
            if k <= 0:
                return []
            self._index.set_ef(max(self.ef_search, k))
            try:
                labels, distances = self._index.knn_query(query, k=k, num_threads=1, filter=filter)
                return _pairs(labels[0], distances[0])
            except RuntimeError:
                # hnswlib raises when its walk finds fewer than k. Fewer may pass the filter, or the walk
                # may not reach them: many equal vectors (boilerplate chunks, copies of a photo) cut a
                # graph into parts that no walk leaves. Rank every live label the filter accepts exactly.
                accepted = self._live if filter is None else [i for i in self._live if filter(i)]
                return self.exact(query[0], accepted, k)

    def exact(self, query: np.ndarray, labels: Iterable[int], k: int) -> Hits:
        """Exact cosine ranking of the given live labels (for filters that leave few)."""
        with self._lock:
            wanted = [int(i) for i in labels if int(i) in self._live]
            if not wanted:
                return []
            vectors = self.vectors(wanted)
        scores = vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(wanted[i], float(scores[i])) for i in order]

    def vectors(self, ids: list[int]) -> np.ndarray:
        out = np.empty((len(ids), self.dim), np.float32)
        # In blocks: hnswlib builds each block's answer through Python floats (~25x the vectors' bytes;
        # 65,536 at once cost a save 370 MB of peak memory).
        with self._lock:
            for lo in range(0, len(ids), _GET_BLOCK):
                part = ids[lo : lo + _GET_BLOCK]
                out[lo : lo + len(part)] = np.asarray(self._index.get_items(part), dtype=np.float32).reshape(len(part), self.dim)
        return out

    @property
    def deleted_count(self) -> int:
        """Slots that removed vectors still take in the graph (and in its saved file) until reused."""
        return len(self._deleted)

    def rebuilt(self) -> AnnGraph:
        """A new graph of the live vectors alone: the slots of removed ones given back."""
        with self._lock:
            live = sorted(self._live)
            fresh = AnnGraph(self.dim, M=self.M, ef_construction=self.ef_construction, ef_search=self.ef_search)
            fresh.reserve(len(live))
            for lo in range(0, len(live), 10_000):
                ids = live[lo : lo + 10_000]
                fresh.add(np.asarray(ids, np.int64), self.vectors(ids))
        return fresh

    def ids(self) -> set[int]:
        """Live (not deleted) ids."""
        with self._lock:
            return set(self._live)

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, label: object) -> bool:
        return label in self._live

    def save(self, path: Path) -> None:
        """Write to `path` (the store writes a new name each save and points its stamp at it)."""
        with self._lock:
            self._index.save_index(str(path))
        with open(path, "r+b") as f:
            os.fsync(f.fileno())

    def reconcile(
        self,
        catalog_ids_and_vectors: Callable[[set[int]], Iterable[tuple[np.ndarray, np.ndarray]]],
        live_ids: set[int],
    ) -> tuple[int, int]:
        """Make the graph agree with the catalog: add back what it lacks, drop what it no longer has.

        `catalog_ids_and_vectors(missing)` yields (ids, vectors) batches of stored vectors for those ids.
        Returns (added, removed).
        """
        with self._lock:
            missing = set(live_ids) - self._live
            extra = self._live - set(live_ids)
        self.remove(extra)
        if missing:
            for ids, vectors in catalog_ids_and_vectors(missing):
                self.add(ids, vectors)
        with self._lock:
            added = len(missing & self._live)
        return added, len(extra)

    def _check_batch(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim) if ids.size else vectors
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not ids.size:
            return ids, vectors
        if ids.min() < 0:
            raise ValueError("ids must be >= 0 (hnswlib labels are unsigned)")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity")
        # A repeated id keeps its last vector, as sequential updates would.
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        return ids[keep], normalise(vectors[keep])


def normalise(vectors: np.ndarray) -> np.ndarray:
    # Inner product is cosine only on unit vectors; encoders mostly hand those over already (fp16 drift aside).
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _pairs(labels: np.ndarray, distances: np.ndarray) -> Hits:
    # hnswlib's 'ip' distance is 1 - <a, b>.
    return [(int(label), float(1.0 - d)) for label, d in zip(labels, distances)]
