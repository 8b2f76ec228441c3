"""The vectors of an index folder: one store that owns their files, answers searches and saves.

Files (all caches of the catalog, which holds every vector and is the truth):

    vectors.json        the stamp, written last: the files of the last save, how many vectors they
                        hold, the catalog generation they reflect, the hnswlib version that wrote
                        the graph
    vectors-N.hnsw      the hnswlib graph of save N (read and written through hnswlib's API only)
    vectors-N.npy       the same vectors as a flat matrix (flatfile.py), for exact scans

A cold query scans the flat file (memory-mapped, exact) plus, from the catalog, the vectors of items
added since that save (item ids only grow); items deleted since are dropped when the catalog is asked
for their rows. So a query is exact and current without loading the graph, also during an index run
in another process. A process that searches again and again loads the graph once and brings it in
line with the catalog.

Saving: once at the end of an index run (and of a forget), not during it: a save rewrites both files
whole (2 GB each at 1M x 512), so saving every few seconds would make a run's speed depend on the
index's size. A crash loses no committed work: the next run reconciles the graph with the catalog.
A graph written by another hnswlib version, or any file that does not match its stamp, is rebuilt
from the catalog instead of being read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import flatfile, private
from .ann import AnnError, AnnGraph, Hits
from .flatfile import FlatFileError, FlatVectors

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger("mmsearch")

STAMP = "vectors.json"
STAMP_FORMAT = 1
_SAVED = re.compile(r"^vectors-(\d+)\.(hnsw|npy)$")
_LEGACY = ("vectors.hnsw", "vectors.hnsw.json")  # the single-file layout of earlier versions
# A process scans the flat file for its first search; past this many vectors, later searches load the
# graph (0.25 ms a search at 100k, against ~10 ms to scan 100k x 512 and 0.5-0.7 s to load the graph).
FLAT_SCAN_MAX = 10_000
# A save rebuilds the graph without the slots of removed vectors once they are this share of it: the
# saved graph holds every slot, live or not, so deleting a large document would otherwise leave its
# vectors' room in the file until later adds happen to reuse it.
COMPACT_SHARE = 0.25
# A filter that leaves at most this many items is ranked exactly, not by a graph walk that rejects
# most nodes.
EXACT_LIMIT = 50_000


class VectorStore:
    """The graph, the flat file and their stamp for one index folder. Thread-safe.

    Reading: `search`. Writing (the caller holds the index lock): `begin_writing`, `add`, `remove`,
    `reserve`, `save`, `end_writing`."""

    def __init__(self, folder: Path, dim: int, catalog: Catalog):
        self.folder, self.dim, self.catalog = Path(folder), dim, catalog
        self._lock = threading.RLock()
        self._graph: AnnGraph | None = None
        self._graph_generation = -1  # the catalog generation the graph in memory reflects
        self._flat: tuple[Any, FlatVectors] | None = None  # (stamp key, mapped file)
        self._writing = False
        self._dirty = False
        self._searches = 0

    # -- reading -----------------------------------------------------------------------------------

    def searcher(self) -> Searcher:
        """What one query searches with: the flat file or the graph, chosen once for all its calls."""
        return Searcher(self, self._source())

    def search(self, query: np.ndarray, k: int, *, allowed: set[int] | None = None) -> Hits:
        """One search (see Searcher.search)."""
        return self.searcher().search(query, k, allowed=allowed)

    def prepare(self) -> None:
        """Map the flat file now (a cold query does this while its text tower loads on another thread)."""
        with self._lock:
            if self._graph is None and not self._writing:
                self._saved_flat()

    def _source(self) -> AnnGraph | FlatVectors:
        with self._lock:
            self._searches += 1
            if self._graph is not None or self._writing:
                return self._current_graph()
            flat = self._saved_flat()
            if flat is not None and (len(flat) <= FLAT_SCAN_MAX or self._searches == 1):
                return flat
            self._flat = None  # the graph takes over; let the mapping go
            return self._current_graph()

    def _scan(self, flat: FlatVectors, q: np.ndarray, k: int, allowed: set[int] | None) -> Hits:
        hits = flat.search(q, k, allowed=allowed)
        ids, vectors = self.catalog.vectors_after(flat.max_id)  # added since the save
        if not len(ids):
            return hits
        if allowed is not None:
            keep = np.isin(ids, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
            ids, vectors = ids[keep], vectors[keep]
        scores = vectors @ (q / max(float(np.linalg.norm(q)), 1e-12))
        merged_ids = np.concatenate([np.array([i for i, _ in hits], np.int64), ids])
        merged_scores = np.concatenate([np.array([s for _, s in hits], np.float32), scores.astype(np.float32)])
        return flatfile.top(merged_ids, merged_scores, k)

    def _saved_flat(self) -> FlatVectors | None:
        """The flat file of the last save, mapped once per save; an empty one where nothing was saved
        (then every vector comes from the catalog)."""
        stamp = self._read_stamp()
        key = None if stamp is None else (stamp["save"], stamp["flat"]["bytes"])
        if self._flat is not None and self._flat[0] == key:
            return self._flat[1]
        flat: FlatVectors
        if stamp is None:
            flat = _EmptyFlat(self.dim)
        else:
            try:
                flat = FlatVectors(self.folder / stamp["flat"]["name"], self.dim)
            except FlatFileError as e:
                log.debug("%s", e)
                flat = _EmptyFlat(self.dim)
            if len(flat) != stamp["count"]:
                flat = _EmptyFlat(self.dim)
        self._flat = (key, flat)
        return flat

    def _read_stamp(self) -> dict[str, Any] | None:
        try:
            stamp = json.loads((self.folder / STAMP).read_text())
            if stamp.get("format") != STAMP_FORMAT or stamp.get("dim") != self.dim:
                return None
            for part in ("graph", "flat"):
                if not _SAVED.match(stamp[part]["name"]):
                    return None
            int(stamp["save"]), int(stamp["count"]), int(stamp["generation"])
            return stamp
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    # -- the graph ---------------------------------------------------------------------------------

    def _current_graph(self) -> AnnGraph:
        """The graph, brought in line with the catalog when the catalog moved on."""
        with self._lock:
            if self._writing and self._graph is not None:
                return self._graph  # the run in this process keeps it current as it commits
            generation = self.catalog.generation()
            if self._graph is not None and generation == self._graph_generation:
                return self._graph
            saved_generation = None
            if self._graph is None:
                self._graph, saved_generation = self._load_graph()
            if saved_generation != generation or len(self._graph) != self.catalog.vector_count():
                added, removed = self._graph.reconcile(self.catalog.vectors_for, self.catalog.live_item_ids())
                if added or removed:
                    self._dirty = True
                    log.info("%s: vectors brought in line with the catalog: %d added, %d removed", self.folder,
                             added, removed)
            self._graph_generation = generation
            return self._graph

    def _load_graph(self) -> tuple[AnnGraph, int | None]:
        """The saved graph and the generation it reflects, where its stamp vouches for it; else an
        empty graph (the caller fills it from the catalog)."""
        stamp = self._read_stamp()
        if stamp is None:
            if any((self.folder / name).exists() for name in _LEGACY):
                log.info("%s: vector files of an earlier mmsearch; rebuilding them from the catalog", self.folder)
            return AnnGraph(self.dim), None
        graph_path = self.folder / stamp["graph"]["name"]
        why = None
        if stamp.get("hnswlib") != _hnswlib_version():
            why = f"written by hnswlib {stamp.get('hnswlib')}, this is {_hnswlib_version()}"
        elif not graph_path.is_file() or graph_path.stat().st_size != stamp["graph"]["bytes"]:
            why = "missing, or not the size its stamp records"
        else:
            try:
                flat = FlatVectors(self.folder / stamp["flat"]["name"], self.dim)
                if len(flat) != stamp["count"]:
                    raise FlatFileError("its flat file does not hold the count its stamp records")
                graph = AnnGraph.load(graph_path, self.dim, flat.ids.tolist())
                return graph, int(stamp["generation"])
            except (FlatFileError, AnnError) as e:
                why = str(e)
        log.info("%s: rebuilding the vector graph from the catalog (%s)", graph_path, why)
        return AnnGraph(self.dim), None

    # -- writing -----------------------------------------------------------------------------------

    def begin_writing(self) -> None:
        """Hold the graph in memory, current, for an index run (the caller holds the index lock)."""
        with self._lock:
            self._current_graph()
            self._writing = True
            self._flat = None

    def end_writing(self) -> None:
        with self._lock:
            self._writing = False
            self._graph_generation = self.catalog.generation()

    def _writable_graph(self) -> AnnGraph:
        graph = self._graph if self._writing else self._current_graph()
        assert graph is not None
        return graph

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self._writable_graph().add(ids, vectors)
            self._dirty = True

    def remove(self, ids: list[int]) -> None:
        if len(ids):
            with self._lock:
                self._writable_graph().remove(ids)
                self._dirty = True

    def reserve(self, more: int) -> None:
        with self._lock:
            self._writable_graph().reserve(more)

    def __len__(self) -> int:
        with self._lock:
            return len(self._current_graph())

    def ids(self) -> set[int]:
        with self._lock:
            return self._current_graph().ids()

    def save(self, *, compact: bool = False) -> None:
        """Write the graph and the flat file under new names, then the stamp that names them, then drop
        the old files: a crash at any point leaves the last complete save in force. Nothing to do when
        nothing changed since the last save. The graph is rebuilt without the room of removed vectors
        first when they are COMPACT_SHARE of it (or any, with `compact`)."""
        with self._lock:
            graph = self._writable_graph()
            deleted = graph.deleted_count
            if deleted and (compact or deleted >= COMPACT_SHARE * (deleted + len(graph))):
                log.info("%s: giving back the room of %d removed vectors", self.folder, deleted)
                graph = self._graph = graph.rebuilt()
                self._dirty = True
            if not self._dirty and self._read_stamp() is not None:
                return
            generation = self.catalog.generation()  # read first: the stamp may lag the catalog, never lead
            stamp = self._read_stamp()
            number = (int(stamp["save"]) + 1) if stamp else 1
            names = {"graph": f"vectors-{number}.hnsw", "flat": f"vectors-{number}.npy"}
            tmp = {part: self.folder / f"{name}.tmp-{os.getpid()}" for part, name in names.items()}
            private.make_folder(self.folder)
            try:
                for path in tmp.values():
                    private.empty_file(path)  # 0600 before hnswlib and NumPy write them (they keep the mode)
                graph.save(tmp["graph"])
                ids = sorted(graph.ids())
                flatfile.write(tmp["flat"], self.dim, len(ids), (
                    (np.asarray(ids[lo : lo + 65_536], np.int64), graph.vectors(ids[lo : lo + 65_536]))
                    for lo in range(0, len(ids), 65_536)))
                for part, name in names.items():
                    os.replace(tmp[part], self.folder / name)
                new_stamp = {
                    "format": STAMP_FORMAT, "save": number, "generation": generation, "count": len(ids),
                    "dim": self.dim, "hnswlib": _hnswlib_version(),
                    **{part: {"name": name, "bytes": (self.folder / name).stat().st_size} for part, name in names.items()},
                }
                _write_atomically(self.folder / STAMP, json.dumps(new_stamp, indent=1).encode())
            except BaseException:
                for path in tmp.values():
                    path.unlink(missing_ok=True)
                raise
            self._dirty = False
            self._flat = None
            self._drop_old_files(keep=set(names.values()))

    def _drop_old_files(self, keep: set[str]) -> None:
        for entry in os.scandir(self.folder):
            if (_SAVED.match(entry.name) and entry.name not in keep) or entry.name in _LEGACY:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass

    def remove_stale_temp_files(self) -> None:
        """Temp files of saves that a killed run left behind (the index lock is held: none is live)."""
        for entry in os.scandir(self.folder):
            if entry.name.startswith(("vectors-", "vectors.json")) and ".tmp-" in entry.name:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass


class Searcher:
    """One query's view of the vectors."""

    def __init__(self, store: VectorStore, source: AnnGraph | FlatVectors):
        self._store, self._source = store, source

    @property
    def scans_exactly(self) -> bool:
        """Every search scans every vector, so asking for many more hits costs nothing."""
        return isinstance(self._source, FlatVectors)

    def search(self, query: np.ndarray, k: int, *, allowed: set[int] | None = None) -> Hits:
        """(item id, cosine similarity), best first, at most k; `allowed` narrows to those ids. Ids of
        items deleted since the last save may appear: the catalog no longer knows them."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        source = self._source
        if isinstance(source, FlatVectors):
            return self._store._scan(source, q, k, allowed)  # noqa: SLF001
        if allowed is None:
            return source.search(q, k)
        if len(allowed) <= EXACT_LIMIT:
            return source.exact(q, allowed, k)
        return source.search(q, k, filter=allowed.__contains__)


class _EmptyFlat(FlatVectors):
    """No saved vectors: every one comes from the catalog."""

    def __init__(self, dim: int):  # noqa: D107 - nothing to map
        self.path, self.dim = Path(), dim
        self.ids = np.zeros(0, np.int64)
        self._vectors = np.zeros((0, dim), np.float32)


@lru_cache(maxsize=1)
def _hnswlib_version() -> str:
    from importlib.metadata import version  # ~40 ms: only when a graph is loaded or saved

    return version("hnswlib")


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with private.open_file(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the renames durable. Directories can't be opened this way on Windows; NTFS journals renames.
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
