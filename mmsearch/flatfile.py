"""The saved vectors as a flat matrix: what a cold query scans, exactly, without loading the graph.

One file in NumPy's .npy format (a documented format with a maintained reader and writer): a 1-d array
of records `(id int64, vector float32[dim])`, ids ascending, live vectors only. `np.load(path,
mmap_mode="r")` reads it anywhere; mmsearch maps it with the page tables filled at once. The records
are a strided float32 matrix that BLAS multiplies in place: scoring 100k x 512 takes ~10 ms, against
~0.5 s to load and check the graph.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .ann import Hits, normalise
from .errors import MmsearchError


class FlatFileError(MmsearchError):
    """A flat vector file that is missing, damaged or for another dimension; the store rebuilds it."""


def record_dtype(dim: int) -> np.dtype:
    return np.dtype([("id", "<i8"), ("vector", "<f4", (dim,))])


def write(path: Path, dim: int, count: int, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write `count` records from (ids, vectors) batches, ids ascending across batches, then fsync."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=record_dtype(dim), shape=(count,))
    at = 0
    try:
        for ids, vectors in batches:
            n = len(ids)
            out["id"][at : at + n] = ids
            out["vector"][at : at + n] = vectors
            at += n
        if at != count:
            raise ValueError(f"{path}: {at} records written, {count} announced")
        out.flush()
    finally:
        del out
    with open(path, "r+b") as f:
        os.fsync(f.fileno())


class FlatVectors:
    """A flat vector file, memory-mapped read-only, searched exactly."""

    def __init__(self, path: Path, dim: int):
        self.path, self.dim = Path(path), dim
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f".npy format version {version}")
                offset = f.tell()
                size = os.fstat(f.fileno()).st_size
                if dtype != record_dtype(dim) or fortran or len(shape) != 1:
                    raise FlatFileError(f"{self.path}: holds {dtype} records, not {dim}-d vectors; rebuilt from the catalog")
                count = int(shape[0])
                if size != offset + count * dtype.itemsize:
                    raise FlatFileError(f"{self.path}: {size} bytes, not the {offset + count * dtype.itemsize} its "
                                        "header announces; rebuilt from the catalog")
                buf = _map(f.fileno(), size) if count else b""
        except FileNotFoundError:
            raise FlatFileError(f"{self.path}: missing") from None
        except (OSError, ValueError) as e:
            raise FlatFileError(f"{self.path}: unreadable ({e})") from None
        records = np.frombuffer(buf, dtype=dtype, count=count, offset=offset) if count else np.zeros(0, dtype)
        self.ids: np.ndarray = records["id"]
        self._vectors: np.ndarray = records["vector"]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def max_id(self) -> int:
        return int(self.ids[-1]) if len(self.ids) else 0

    def search(self, vector: np.ndarray, k: int, *, allowed: set[int] | None = None) -> Hits:
        """(id, cosine similarity), best first, exact; `allowed` narrows it to those ids."""
        if not len(self.ids) or k <= 0:
            return []
        query = normalise(np.asarray(vector, dtype=np.float32).reshape(1, self.dim))[0]
        scores = self._vectors @ query
        if allowed is not None:
            keep = np.flatnonzero(np.isin(self.ids, np.fromiter(allowed, dtype=np.int64, count=len(allowed))))
            return top(self.ids[keep], scores[keep], k)
        return top(self.ids, scores, k)

    def batches(self, size: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for lo in range(0, len(self.ids), size):
            yield np.array(self.ids[lo : lo + size]), np.array(self._vectors[lo : lo + size])


def top(ids: np.ndarray, scores: np.ndarray, k: int) -> Hits:
    """The k best (id, score) pairs, best first."""
    k = min(int(k), len(ids))
    if k <= 0:
        return []
    part = np.argpartition(-scores, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
    part = part[np.argsort(-scores[part], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in part]


def _map(fd: int, length: int) -> Any:
    """The first `length` bytes of a file, read-only: a shared mapping with its page tables filled
    at once where the platform can (one call instead of a fault per page), else a private copy (on
    Windows a live mapping would block the writer's replacing the file)."""
    import mmap

    if os.name == "nt":
        buf = bytearray(length)
        with os.fdopen(os.dup(fd), "rb") as f:
            f.readinto(buf)
        return buf
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, length, flags=flags, prot=mmap.PROT_READ)


# -- the tail: vectors committed since the last save ---------------------------------------------------
#
# `vectors-N.tail` holds the vectors committed after save N, appended by the writing process after each
# commit, so a query during a run (or after one that was stopped or crashed) scans them as it scans the
# flat file instead of reading them row by row from the catalog. A header of TAIL_HEADER bytes (magic,
# dim), then records as in the flat file, ids ascending. Nothing is fsynced: the catalog is the truth,
# and a reader keeps the records up to the first that is not whole or not above the one before it (a
# torn or zero-filled end after a power loss), then asks the catalog for the ids above the last kept.

TAIL_MAGIC = b"MMSTAIL1"
TAIL_HEADER = 16


class TailWriter:
    """Appends (id, vector) records to a tail file; ids must grow."""

    def __init__(self, path: Path, dim: int):
        self.path, self.dim = Path(path), dim
        self.dtype = record_dtype(dim)
        self.last_id = 0
        self._file: IO[bytes]
        if self.path.exists():
            ids, _ = read_tail(self.path, dim, 0)
            self.last_id = int(ids[-1]) if len(ids) else 0
            keep = TAIL_HEADER + len(ids) * self.dtype.itemsize
            self._file = open(self.path, "r+b")
            self._file.truncate(keep)  # a torn end goes
            self._file.seek(keep)
        else:
            from . import private

            self._file = private.open_file(self.path, "wb")  # 0600, as every file of an index
            self._file.write(TAIL_MAGIC + np.uint32(dim).tobytes() + bytes(TAIL_HEADER - len(TAIL_MAGIC) - 4))
            self._file.flush()

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        if not len(ids):
            return
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        if ids[0] <= self.last_id:
            raise ValueError(f"{self.path}: id {int(ids[0])} is not above the last appended, {self.last_id}")
        records = np.empty(len(ids), self.dtype)
        records["id"] = ids
        records["vector"] = np.asarray(vectors, np.float32)[order]
        self._file.write(records.tobytes())  # one write: a reader sees whole records up to the file's size
        self._file.flush()
        self.last_id = int(ids[-1])

    def close(self) -> None:
        self._file.close()


def read_tail(path: Path, dim: int, above: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole records of a tail file with ascending ids above `above` (see TailWriter): (ids,
    vectors), mapped read-only. A missing or foreign file gives none."""
    dtype = record_dtype(dim)
    try:
        with open(path, "rb") as f:
            head = f.read(TAIL_HEADER)
            size = os.fstat(f.fileno()).st_size
            if len(head) < TAIL_HEADER or head[:8] != TAIL_MAGIC or int(np.frombuffer(head[8:12], np.uint32)[0]) != dim:
                return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
            count = (size - TAIL_HEADER) // dtype.itemsize
            buf = _map(f.fileno(), TAIL_HEADER + count * dtype.itemsize) if count else b""
    except OSError:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    if not count:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    records = np.frombuffer(buf, dtype=dtype, count=count, offset=TAIL_HEADER)
    ids = records["id"]
    steps = np.diff(np.concatenate([[above], ids]))
    bad = np.flatnonzero(steps <= 0)
    n = int(bad[0]) if len(bad) else count
    return ids[:n], records["vector"][:n]
