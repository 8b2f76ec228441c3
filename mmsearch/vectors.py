"""The approximate-nearest-neighbour index: hnswlib over unit vectors, labelled with catalog item ids.

The catalog (SQLite) is the durable truth; this file is a cache of it that can always be rebuilt. So a
damaged file is an error the caller answers with `VectorIndex.rebuild`, and `reconcile` repairs drift
left by a crash between a catalog commit and the next index save.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from .errors import MmsearchError

log = logging.getLogger("mmsearch")

# hnswlib 0.8 `saveIndex` header: offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData (size_t), maxlevel (int), enterpoint_node (uint32), maxM, maxM0, M (size_t),
# mult (double), ef_construction (size_t). Level-0 records, then one uint32-prefixed link block per element.
_HEADER = struct.Struct("<QQQQQQiIQQQdQ")
_DELETE_MARK = 0x01  # bit in byte 2 of an element's level-0 link header
_INITIAL_CAPACITY = 1024
_CHECK_ROWS = 65_536  # level-0 records checked per numpy step, to bound memory on big files


class VectorIndexError(MmsearchError):
    """The index file is unreadable or does not match; rebuild it from the catalog."""


# The stamp beside the ANN file records which catalog generation the saved file reflects.


def ann_stamp_path(ann_path) -> str:
    return f"{ann_path}.json"


def write_ann_stamp(ann_path, generation: int, live: int | None = None) -> None:
    """Record which catalog generation the saved ANN file reflects, and how many live vectors it
    holds (atomically). A query checks the file against the stamp instead of counting the catalog."""
    import json

    tmp = f"{ann_stamp_path(ann_path)}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w") as f:
        json.dump({"generation": generation} if live is None else {"generation": generation, "live": live}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, ann_stamp_path(ann_path))


def read_ann_stamp(ann_path) -> int | None:
    """The catalog generation the saved ANN file reflects (None: no stamp, or an unreadable one)."""
    stamp = read_ann_stamp_full(ann_path)
    return stamp[0] if stamp else None


def read_ann_stamp_full(ann_path) -> tuple[int, int | None] | None:
    """(generation, live vector count or None for stamps written before it was recorded)."""
    import json

    try:
        with open(ann_stamp_path(ann_path)) as f:
            data = json.load(f)
        live = data.get("live")
        return int(data["generation"]), (int(live) if live is not None else None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class VectorIndex:
    """hnswlib index (space='ip' on L2-normalised float32 vectors) whose labels are catalog item ids."""

    # Defaults from benchmarks/ann.py (200 gaussian clusters, dim 512): recall@10 0.988 at 1M vectors with
    # p50 1.0 ms on one core; M=16 needs a far larger ef for that, M=24 costs 3% more memory than it.
    def __init__(self, path: Path, dim: int, *, M: int = 24, ef_construction: int = 200, ef_search: int = 250):
        self.path = Path(path)
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
    def open(cls, path: Path, dim: int, **params) -> VectorIndex:
        """Load `path` if it exists, else start empty. A damaged file raises VectorIndexError."""
        self = cls(path, dim, **params)
        if self.path.exists():
            self._load()
        return self

    @classmethod
    def rebuild(
        cls, path: Path, dim: int, batches: Iterable[tuple[np.ndarray, np.ndarray]], **params
    ) -> VectorIndex:
        """A fresh index from (ids, vectors) batches, saved over whatever is at `path`."""
        self = cls(path, dim, **params)
        for ids, vectors in batches:
            self.add(ids, vectors)
        self.save()
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

    def search(
        self, vector: np.ndarray, k: int, *, filter: Callable[[int], bool] | None = None
    ) -> list[tuple[int, float]]:
        """(id, cosine similarity), best first. `filter(id)` keeps only the ids it accepts."""
        query = self._normalise(np.asarray(vector, dtype=np.float32).reshape(1, self.dim))
        with self._lock:
            k = min(int(k), len(self._live))
            if k <= 0:
                return []
            self._index.set_ef(max(self.ef_search, k))
            seen: set[int] = set()
            if filter is None:
                try:
                    labels, distances = self._index.knn_query(query, k=k, num_threads=1)
                    return _pairs(labels[0], distances[0])
                except RuntimeError:
                    # Fewer than k reachable (heavy deletion): search again, noting what the walk accepts.
                    accept = _recording(lambda _label: True, seen)
            else:
                accept = _recording(filter, seen)
            try:
                labels, distances = self._index.knn_query(query, k=k, num_threads=1, filter=accept)
                return _pairs(labels[0], distances[0])
            except RuntimeError:
                # hnswlib raises when fewer than k pass; by then the walk has seen every accepted label it
                # can reach (it doesn't stop until ef are found), so score those exactly.
                return self._exact(query[0], sorted(seen), k)

    def ids(self) -> set[int]:
        """Live (not deleted) ids."""
        with self._lock:
            return set(self._live)

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, label: object) -> bool:
        return label in self._live

    def save(self) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        with self._lock:
            try:
                self._index.save_index(str(tmp))
                with open(tmp, "r+b") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        _fsync_dir(self.path.parent)

    def reconcile(
        self,
        catalog_ids_and_vectors: Callable[[set[int]], Iterable[tuple[np.ndarray, np.ndarray]]],
        live_ids: set[int],
    ) -> tuple[int, int]:
        """Make the index agree with the catalog: add back what it lacks, drop what it no longer has.

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
        if added or extra:
            log.info("%s: reconciled with the catalog: %d added, %d removed", self.path, added, len(extra))
        return added, len(extra)

    # -- internals --

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
        return ids[keep], self._normalise(vectors[keep])

    @staticmethod
    def _normalise(vectors: np.ndarray) -> np.ndarray:
        # Inner product is cosine only on unit vectors; encoders mostly hand those over already (fp16 drift aside).
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def _exact(self, query: np.ndarray, labels: list[int], k: int) -> list[tuple[int, float]]:
        if not labels:
            return []
        vectors = np.asarray(self._index.get_items(labels), dtype=np.float32)
        scores = vectors @ query
        order = np.argsort(-scores, kind="stable")[:k]
        return [(labels[i], float(scores[i])) for i in order]

    def _load(self) -> None:
        try:
            count, labels, deleted = _check_file(self.path, self.dim)
            index = hnswlib.Index(space="ip", dim=self.dim)
            # Our own capacity, not the header's: a bogus max_elements there would be a huge allocation.
            index.load_index(str(self.path), max_elements=max(count, _INITIAL_CAPACITY), allow_replace_deleted=True)
        except OSError as e:
            raise VectorIndexError(f"{self.path}: cannot read the index file ({e.strerror or e})") from e
        except (RuntimeError, MemoryError) as e:
            raise VectorIndexError(f"{self.path}: hnswlib could not load it ({e})") from e
        if index.element_count != count:
            raise VectorIndexError(f"{self.path}: hnswlib loaded {index.element_count} items, the file holds {count}")
        self._index = index
        self._deleted = set(labels[deleted].tolist())
        self._live = set(labels[~deleted].tolist())


class SavedVectors:
    """A saved index file read as a flat matrix: exact search by one matrix-vector product over the
    memory-mapped level-0 records, without loading (or validating) the graph.

    hnswlib stores each element's vector inside its level-0 record, so the file is also a strided
    float32 matrix. For a one-off query this beats loading the graph (which reads the same bytes and
    more, then builds structures); it is exact where the graph is approximate. Only the header is
    validated: a damaged body gives wrong scores, never a crash, and `live_count` not matching the
    catalog sends the caller to the checked path.
    """

    def __init__(self, path: Path, dim: int):
        self.path = Path(path)
        self.dim = dim
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError as e:
            raise VectorIndexError(f"{self.path}: cannot read the index file ({e.strerror or e})") from e
        try:
            size = os.fstat(fd).st_size
            layout = _Layout(self.path, dim, size)
            self.count = layout.count
            if layout.count == 0:
                self._labels = np.zeros(0, np.int64)
                self._vectors = np.zeros((0, dim), np.float32)
                self._live = np.zeros(0, bool)
                self.live_count = 0
                return
            data = _map(fd, layout.level0_end)
        finally:
            os.close(fd)
        records = np.frombuffer(data, dtype=np.uint8, count=layout.count * layout.record,
                                offset=_HEADER.size).reshape(layout.count, layout.record)
        # A strided [count, dim] view: BLAS reads it in place (row stride = record size).
        self._vectors = records[:, layout.offset_data : layout.label_offset].view(np.float32)
        labels = np.ascontiguousarray(records[:, layout.label_offset : layout.label_offset + 8]).view("<u8")[:, 0]
        self._live = ~(records[:, 2] & _DELETE_MARK).astype(bool) & (labels < 2**63)
        self._labels = labels.astype(np.int64)
        self.live_count = int(self._live.sum())

    def __len__(self) -> int:
        return self.live_count

    def search(self, vector: np.ndarray, k: int, *, allowed: Iterable[int] | None = None,
               filter: Callable[[int], bool] | None = None) -> list[tuple[int, float]]:
        """(id, cosine similarity), best first, exact. `allowed` (ids) or `filter(id)` narrow it."""
        query = VectorIndex._normalise(np.asarray(vector, dtype=np.float32).reshape(1, self.dim))[0]
        if not self.count or k <= 0:
            return []
        scores = self._vectors @ query
        keep = self._live
        if allowed is not None:
            wanted = np.fromiter(allowed, dtype=np.int64) if not isinstance(allowed, np.ndarray) else allowed
            keep = keep & np.isin(self._labels, wanted)
        if filter is not None:
            keep = keep & np.fromiter((filter(int(i)) for i in self._labels), dtype=bool, count=len(self._labels))
        candidates = np.flatnonzero(keep)
        if not len(candidates):
            return []
        cand_scores = scores[candidates]
        k = min(int(k), len(candidates))
        top = np.argpartition(-cand_scores, k - 1)[:k] if k < len(candidates) else np.arange(len(candidates))
        top = top[np.argsort(-cand_scores[top], kind="stable")]
        return [(int(self._labels[candidates[i]]), float(cand_scores[i])) for i in top]


def _map(fd: int, length: int) -> Any:
    """The first `length` bytes of a file, read-only: a shared mapping with its page tables filled
    at once where the platform can (one call instead of a fault per page), else a private copy (on
    Windows a live mapping would block the writer's atomic replace of the file)."""
    import mmap

    if os.name == "nt":
        buf = bytearray(length)
        with os.fdopen(os.dup(fd), "rb") as f:
            f.readinto(buf)
        return buf
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, length, flags=flags, prot=mmap.PROT_READ)


def _pairs(labels: np.ndarray, distances: np.ndarray) -> list[tuple[int, float]]:
    # hnswlib's 'ip' distance is 1 - <a, b>.
    return [(int(label), float(1.0 - d)) for label, d in zip(labels, distances)]


def _recording(accept: Callable[[int], bool], seen: set[int]) -> Callable[[int], bool]:
    def wrapped(label: int) -> bool:
        if accept(label):
            seen.add(label)
            return True
        return False

    return wrapped


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable. Directories can't be opened this way on Windows; NTFS journals renames.
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Layout:
    """The validated header of an hnswlib 0.8 file: where the level-0 records and their parts are."""

    def __init__(self, path: Path, dim: int, size: int):
        self.path, self.size = path, size
        if size < _HEADER.size:
            raise self.bad(f"{size} bytes, shorter than the {_HEADER.size}-byte header")
        with open(path, "rb") as f:
            header = f.read(_HEADER.size)
        (offset_level0, _max_elements, count, record, label_offset, offset_data,
         max_level, entry, max_m, max_m0, m, _mult, ef_construction) = _HEADER.unpack(header)  # fmt: skip
        links0 = max_m0 * 4 + 4
        if not (2 <= m <= 4096 and max_m == m and max_m0 == 2 * m and ef_construction >= 1):
            raise self.bad(f"implausible graph parameters M={m}, maxM={max_m}, maxM0={max_m0}")
        if offset_level0 != 0 or offset_data != links0 or record != label_offset + 8 or label_offset <= offset_data:
            raise self.bad("inconsistent record layout")
        if label_offset != offset_data + 4 * dim:
            raise self.bad(f"built for {(label_offset - offset_data) // 4}-dimensional vectors, not {dim}")
        self.level0_end = _HEADER.size + count * record
        if self.level0_end + 4 * count > size:
            raise self.bad(f"truncated: {size} bytes cannot hold {count} elements")
        if count == 0 and size != _HEADER.size:
            raise self.bad("trailing bytes after an empty index")
        if count and not (0 <= max_level < 64 and entry < count):
            raise self.bad(f"entry point {entry} at level {max_level} is out of range")
        self.count, self.record, self.label_offset, self.offset_data = count, record, label_offset, offset_data
        self.max_level, self.entry, self.max_m, self.max_m0, self.links0 = max_level, entry, max_m, max_m0, links0

    def bad(self, reason: str) -> VectorIndexError:
        return VectorIndexError(f"{self.path}: not a usable hnswlib index ({reason}); rebuild it from the catalog")


def _check_file(path: Path, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Validate an hnswlib 0.8 file before hnswlib reads it: a bad header or a link pointing past the end
    makes hnswlib crash the process (not raise), at load or at the first query.

    Returns the element count, and the labels and deleted marks of the stored elements.
    """
    size = path.stat().st_size
    layout = _Layout(path, dim, size)
    bad = layout.bad
    count, record, label_offset, level0_end = layout.count, layout.record, layout.label_offset, layout.level0_end
    max_level, entry, max_m, max_m0, links0 = (layout.max_level, layout.entry, layout.max_m, layout.max_m0,
                                               layout.links0)
    if count == 0:
        return 0, np.zeros(0, np.int64), np.zeros(0, bool)

    data = np.memmap(path, dtype=np.uint8, mode="r")
    links_m = max_m * 4 + 4

    # Upper-level link blocks: a uint32 byte length per element, then that many bytes. Most are 0, so
    # jump from one non-zero word to the next instead of stepping element by element in Python.
    tail = data[level0_end:]
    if len(tail) % 4:
        raise bad("truncated link lists")
    words = tail.view("<u4")
    nonzero = np.flatnonzero(words)
    levels = np.zeros(count, dtype=np.int64)
    blocks: list[tuple[int, int]] = []  # (word offset of a level's block, level)
    position = element = 0
    while element < count:
        nxt = np.searchsorted(nonzero, position)
        zero_run = (int(nonzero[nxt]) if nxt < len(nonzero) else len(words)) - position
        if zero_run >= count - element:
            position += count - element
            element = count
            break
        position += zero_run
        element += zero_run
        if position >= len(words):
            raise bad("truncated link lists")
        length = int(words[position])
        if length % links_m or length // links_m > 64:
            raise bad(f"bad link block length {length} for element {element}")
        level = length // links_m
        levels[element] = level
        for lv in range(level):
            blocks.append((position + 1 + lv * links_m // 4, lv + 1))
        position += 1 + length // 4
        element += 1
        if position > len(words):
            raise bad("truncated link lists")
    if position != len(words):
        raise bad(f"{4 * (len(words) - position)} bytes more than the graph needs (or truncated)")
    if levels[entry] < max_level:
        raise bad("entry point is not on the top level")

    # Every neighbour id must be a stored element, and one on at least that level.
    if blocks:
        starts = np.array([b[0] for b in blocks], dtype=np.int64)
        block_levels = np.array([b[1] for b in blocks], dtype=np.int64)
        counts = words[starts] & 0xFFFF
        neighbours = words[starts[:, None] + 1 + np.arange(max_m)]
        used = np.arange(max_m) < counts[:, None]
        if (counts > max_m).any():
            raise bad("an upper-level link list is longer than M")
        targets = neighbours[used].astype(np.int64)
        if (targets >= count).any() or (levels[targets] < np.repeat(block_levels, used.sum(axis=1))).any():
            raise bad("an upper-level link points outside the graph")

    records = data[_HEADER.size : level0_end].reshape(count, record)
    labels = np.empty(count, dtype=np.uint64)
    deleted = np.empty(count, dtype=bool)
    for lo in range(0, count, _CHECK_ROWS):
        rows = records[lo : lo + _CHECK_ROWS]
        head = np.ascontiguousarray(rows[:, :links0]).view("<u4")
        counts = head[:, 0] & 0xFFFF
        if (counts > max_m0).any():
            raise bad("a level-0 link list is longer than 2*M")
        used = np.arange(max_m0) < counts[:, None]
        if (head[:, 1:][used] >= count).any():
            raise bad("a level-0 link points outside the graph")
        deleted[lo : lo + len(rows)] = (rows[:, 2] & _DELETE_MARK).astype(bool)
        labels[lo : lo + len(rows)] = np.ascontiguousarray(rows[:, label_offset : label_offset + 8]).view("<u8")[:, 0]
    if (labels >= 2**63).any() or len(np.unique(labels)) != count:
        raise bad("bad or repeated labels")
    del data
    return count, labels.astype(np.int64), deleted
