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
from typing import Any

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
