"""The SQLite catalog: the durable truth of an index.

Schema (version 3), written with the standard library's sqlite3, WAL mode, every change in one transaction:

    meta     key/value: schema_version, model name and manifest hash, embedding dim, generation
    roots    the folders the user indexed
    files    one row per file seen: path, size, mtime, content hash, kind, media type, size in
             pixels, EXIF capture time and orientation, status ('indexed' | 'error') and last error
    items    the units that get a vector: an image, or one chunk of a document (page, span, text)
    vectors  item id -> float32 vector, so the ANN index can always be rebuilt without re-encoding
    items_fts  FTS5 over the document chunks' text
    runs     one row per index run, with its summary and the writing process's pid

Version 2 added `runs.pid` (a run left 'running' by a killed process is marked 'interrupted' by the
next run) and an index on files(status), so listing the files in error does not scan every file.
Version 3 added `files.time_s`, the file's date as an instant (Unix seconds): the EXIF capture time
where the photo has one, else the modification time. EXIF times without an offset are the camera's
wall clock, read as this machine's local time (as photo apps do); `files.taken_at` keeps the EXIF text
as found, with its offset where the photo records one. Date filters compare instants.

`generation` grows with every transaction that adds or removes items; the ANN file records the
generation it reflects, so opening an index knows at once whether the two agree.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MmsearchError
from .filenames import display_path as db_path
from .filenames import from_stored, path_bytes

SCHEMA_VERSION = 3
CATALOG_FILE = "catalog.db"


class CatalogError(MmsearchError):
    """A catalog that cannot be used as it is; the message says what to do."""


class CatalogWriteError(CatalogError):
    """The catalog could not be written (disk full, read-only folder, I/O error). The last committed
    state is intact: SQLite rolled the transaction back."""


# Test hook (tests/test_crash.py, benchmarks/killtest.py): seconds to sleep inside every write
# transaction before it commits, so a SIGKILL can be aimed at an open transaction. Unset in real use.
_SLOW_COMMIT_S = float(os.environ.get("MMSEARCH_TEST_SLOW_S") or 0)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _file_row(r: tuple) -> FileRow:
    """A FileRow from (id, path, path_bytes, size, mtime_ns, content_hash, kind, status)."""
    return FileRow(r[0], r[1], from_stored(r[1], r[2]), r[3], r[4], r[5], r[6], r[7])


def _rowid(cursor: sqlite3.Cursor) -> int:
    """The id an INSERT just gave its row (always set after an INSERT)."""
    assert cursor.lastrowid is not None
    return cursor.lastrowid


@dataclass(frozen=True, slots=True)
class FileRow:
    id: int
    path: str  # as stored (display form)
    fs_path: str  # what to open on disk
    size: int
    mtime_ns: int
    content_hash: str | None
    kind: str
    status: str


@dataclass(frozen=True)
class ModelRecord:
    """The model an index was built with: its vectors compare only with that model's."""

    name: str
    path: str  # the bundle folder it was loaded from
    manifest_sha256: str
    embedding_dim: int


@dataclass(frozen=True)
class ItemRow:
    item_id: int
    file_id: int
    path: str  # the path that opens the file (see filenames.py for names that are not UTF-8)
    kind: str
    page: int | None
    start: int | None
    end: int | None
    text: str | None
    media_type: str | None
    width: int | None
    height: int | None
    taken_at: str | None
    mtime_ns: int


_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS roots (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    path_bytes BLOB,
    root_id INTEGER REFERENCES roots(id) ON DELETE CASCADE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT,
    kind TEXT NOT NULL,
    media_type TEXT,
    width INTEGER,
    height INTEGER,
    taken_at TEXT,
    orientation INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    indexed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_hash ON files(content_hash);
CREATE INDEX IF NOT EXISTS files_root ON files(root_id);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    page INTEGER,
    start INTEGER,
    "end" INTEGER,
    text TEXT
);
CREATE INDEX IF NOT EXISTS items_file ON items(file_id);
CREATE TABLE IF NOT EXISTS vectors (
    item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    vector BLOB NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(text, content='items', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS items_ai AFTER INSERT ON items WHEN new.text IS NOT NULL BEGIN
    INSERT INTO items_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS items_ad AFTER DELETE ON items WHEN old.text IS NOT NULL BEGIN
    INSERT INTO items_fts(items_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    summary TEXT
);
"""

# Migrations from version N to N+1: statements applied in order, all in one transaction, on open.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "ALTER TABLE runs ADD COLUMN pid INTEGER",
        "CREATE INDEX IF NOT EXISTS files_status ON files(status)",
    ],
    2: [
        "ALTER TABLE files ADD COLUMN time_s REAL",
        # Version 2 stored naive EXIF times ("YYYY-MM-DDTHH:MM:SS"); 'utc' reads them as local time.
        "UPDATE files SET time_s = coalesce(CAST(strftime('%s', replace(substr(taken_at, 1, 19), 'T', ' '), 'utc')"
        " AS REAL), mtime_ns / 1e9)",
        "CREATE INDEX IF NOT EXISTS files_time ON files(time_s)",
    ],
}

# A new catalog is the first schema with every migration applied, so both paths give the same tables.
_SCHEMA_LATEST = [stmt for v in sorted(MIGRATIONS) for stmt in MIGRATIONS[v]]


PAGE_SIZE = 16384


class Catalog:
    """One index's SQLite file. Reads use a connection per thread; writes go through `write()`."""

    def __init__(self, folder: Path, *, readonly: bool = False):
        self.folder = folder
        self.path = folder / CATALOG_FILE
        self.readonly = readonly
        self._local = threading.local()
        self._write_lock = threading.Lock()
        if not readonly:
            folder.mkdir(parents=True, exist_ok=True)
            self._create_or_migrate()
        elif not self.path.exists():
            raise CatalogError(f"{folder}: no index here (no {CATALOG_FILE}); run `mmsearch index PATH --index {folder}` first")
        else:
            self._migrate_for_reading()
        self._check_version()

    # -- connections -----------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = self._connect_readonly()
            else:
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """A reading connection. A WAL catalog in a folder this user cannot write (a read-only mount,
        another user's index) cannot get its shared-memory file; SQLite then reads it only as
        `immutable`, which is right there: nobody can be writing it through this folder."""
        uri = f"file:{self.path}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as e:
            if not _is_readonly_error(e) or os.access(self.folder, os.W_OK):
                raise
            conn.close()
        return sqlite3.connect(f"{uri}&immutable=1", uri=True, check_same_thread=False, timeout=30)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: everything inside commits together or not at all."""
        if self.readonly:
            raise CatalogError(f"{self.path}: opened read-only")
        with self._write_lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise _write_error(self.path, e) from None
            try:
                yield conn
                if _SLOW_COMMIT_S:
                    time.sleep(_SLOW_COMMIT_S)
                conn.commit()
            except BaseException as e:
                try:
                    conn.rollback()
                except sqlite3.Error:
                    pass
                if isinstance(e, sqlite3.OperationalError):
                    raise _write_error(self.path, e) from None
                raise

    # -- schema ----------------------------------------------------------------------------

    def _create_or_migrate(self) -> None:
        conn = self.conn
        # The version is read before anything else: a catalog from a newer mmsearch is left byte for
        # byte as it is (not even switched to WAL).
        version = self._stored_version()
        if version is not None and version > SCHEMA_VERSION:
            return  # _check_version refuses it, untouched
        try:
            if version is None:
                # Fixed when the file is first written. A 2 KB vector row fits once in a 4 KB page and
                # seven times in a 16 KB one: the catalog of 20k ViT-B/32 vectors is 1.14x their bytes
                # instead of 2.0x, and reading them all back is twice as fast.
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if version is None:
                # executescript commits any open transaction first, so the script carries its own.
                conn.executescript(
                    "BEGIN IMMEDIATE;" + _SCHEMA_V1 + "".join(f"{stmt};" for stmt in _SCHEMA_LATEST)
                    + f"INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                    + "INSERT OR IGNORE INTO meta VALUES ('generation', '0');"
                    + f"INSERT OR IGNORE INTO meta VALUES ('created', '{now()}');"
                    + "COMMIT;"
                )
            elif version < SCHEMA_VERSION:
                self._migrate(conn)
        except sqlite3.OperationalError as e:
            raise _write_error(self.path, e) from None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring an older catalog up to SCHEMA_VERSION in one transaction (all steps or none)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0])  # again, under the write lock: another process may have done it
            for v in range(version, SCHEMA_VERSION):
                for stmt in MIGRATIONS[v]:
                    conn.execute(stmt)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def _migrate_for_reading(self) -> None:
        """A reader (a query) of an older catalog migrates it when it may write the folder, so an
        upgrade of mmsearch does not need an index run before the first query."""
        version = self._stored_version()
        if version is None or version >= SCHEMA_VERSION or not os.access(self.folder, os.W_OK):
            return
        try:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                conn.execute("PRAGMA busy_timeout = 30000")
                self._migrate(conn)
            finally:
                conn.close()
        except sqlite3.Error:
            pass  # _check_version says what to do

    def _stored_version(self) -> int | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return None
            if _is_readonly_error(e):
                raise CatalogWriteError(
                    f"{self.path}: the index folder is read-only (or belongs to another user), so it cannot be "
                    "written; its last committed state stays readable (`mmsearch query` works). Fix its "
                    "permissions, or index into another folder with --index."
                ) from None
            raise CatalogError(f"{self.path}: cannot read the catalog ({e})") from None
        except sqlite3.DatabaseError as e:
            raise CatalogError(f"{self.path}: not a readable SQLite catalog ({e})") from None
        return int(row[0]) if row else None

    def _check_version(self) -> None:
        version = self._stored_version()
        if version is None:
            raise CatalogError(f"{self.path}: not an mmsearch catalog (no schema version)")
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path}: written by a newer mmsearch (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade mmsearch to use it. The index was left untouched."
            )
        if version < SCHEMA_VERSION and self.readonly:
            raise CatalogError(f"{self.path}: schema {version} needs migrating and this folder cannot be written; "
                               "run `mmsearch index` once (with write access) to upgrade it")

    # -- meta --------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def schema_version(self) -> int:
        return int(self.meta("schema_version") or 0)

    def model_record(self) -> ModelRecord | None:
        values = dict(self.conn.execute(
            "SELECT key, value FROM meta WHERE key IN ('model_name', 'model_path', 'model_manifest_sha256', 'embedding_dim')"))
        if "model_manifest_sha256" not in values:
            return None
        return ModelRecord(values.get("model_name", ""), values.get("model_path", ""), values["model_manifest_sha256"],
                           int(values["embedding_dim"]))

    def record_model(self, record: ModelRecord) -> None:
        with self.write() as conn:
            for key, value in (("model_name", record.name), ("model_path", record.path),
                               ("model_manifest_sha256", record.manifest_sha256),
                               ("embedding_dim", str(record.embedding_dim))):
                self.set_meta(conn, key, value)

    def generation(self) -> int:
        return int(self.meta("generation") or 0)

    def _bump(self, conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    # -- roots -------------------------------------------------------------------------------

    def add_root(self, path: str) -> int:
        with self.write() as c:
            c.execute("INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)", (db_path(path), now()))
            return c.execute("SELECT id FROM roots WHERE path = ?", (db_path(path),)).fetchone()[0]

    def roots(self) -> list[tuple[int, str]]:
        return [tuple(r) for r in self.conn.execute("SELECT id, path FROM roots ORDER BY path")]  # type: ignore[misc]

    def remove_root(self, root_id: int) -> tuple[list[int], int]:
        """Drop a root, its files and items; returns the removed item ids and how many files went."""
        with self.write() as c:
            ids = [r[0] for r in c.execute(
                "SELECT items.id FROM items JOIN files ON files.id = items.file_id WHERE files.root_id = ?", (root_id,)
            )]
            files = c.execute("DELETE FROM files WHERE root_id = ?", (root_id,)).rowcount
            c.execute("DELETE FROM roots WHERE id = ?", (root_id,))
            self._bump(c)
        return ids, files

    # -- files -------------------------------------------------------------------------------

    def files_of_root(self, root_id: int) -> Iterator[FileRow]:
        """Every file of a root, streamed (a root may hold a million)."""
        cursor = self.conn.execute(
            "SELECT id, path, path_bytes, size, mtime_ns, content_hash, kind, status FROM files WHERE root_id = ?",
            (root_id,),
        )
        for r in cursor:
            yield _file_row(r)

    def files_by_path(self, paths: Sequence[str]) -> dict[str, FileRow]:
        """The indexed files among `paths` (as the scanner sees them), under any root."""
        out: dict[str, FileRow] = {}
        keys = [db_path(p) for p in paths]
        for lo in range(0, len(keys), 500):
            part = keys[lo : lo + 500]
            marks = ",".join("?" * len(part))
            for r in self.conn.execute(
                "SELECT id, path, path_bytes, size, mtime_ns, content_hash, kind, status FROM files"
                f" WHERE path IN ({marks})", part,
            ):
                row = _file_row(r)
                out[row.fs_path] = row
        return out

    def file_by_path(self, path: str) -> FileRow | None:
        r = self.conn.execute(
            "SELECT id, path, path_bytes, size, mtime_ns, content_hash, kind, status FROM files WHERE path = ?",
            (db_path(path),),
        ).fetchone()
        return None if r is None else _file_row(r)

    def file_error(self, file_id: int) -> str | None:
        row = self.conn.execute("SELECT error FROM files WHERE id = ?", (file_id,)).fetchone()
        return row[0] if row else None

    def file_vector(self, file_id: int) -> np.ndarray:
        """One vector for a file: an image's own, a document's chunks' mean (renormalised)."""
        ids = [r[0] for r in self.conn.execute("SELECT id FROM items WHERE file_id = ? ORDER BY id", (file_id,))]
        vecs = np.concatenate([v for _, v in self.vectors_for(ids)])
        mean = vecs.mean(axis=0)
        return (mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32)

    def put_file(self, conn: sqlite3.Connection, *, path: str, root_id: int, size: int, mtime_ns: int,
                 content_hash: str | None, kind: str, media_type: str | None = None, width: int | None = None,
                 height: int | None = None, taken_at: datetime | None = None, orientation: int | None = None,
                 status: str = "indexed", error: str | None = None) -> tuple[int, list[int]]:
        """Insert or replace a file row; a replaced file's old items go. Returns (file id, removed item ids).
        taken_at: the EXIF capture time, naive (camera wall clock, read as local time) or aware."""
        key = db_path(path)
        row = conn.execute("SELECT id FROM files WHERE path = ?", (key,)).fetchone()
        time_s = taken_at.timestamp() if taken_at else mtime_ns / 1e9
        values = (root_id, size, mtime_ns, content_hash, kind, media_type, width, height,
                  taken_at.isoformat() if taken_at else None, time_s, orientation, status, error, now())
        removed: list[int] = []
        if row is None:
            cur = conn.execute(
                "INSERT INTO files(path, path_bytes, root_id, size, mtime_ns, content_hash, kind, media_type, width,"
                " height, taken_at, time_s, orientation, status, error, indexed_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, path_bytes(path), *values),
            )
            return _rowid(cur), removed
        file_id = int(row[0])
        removed = self._delete_items(conn, file_id)
        conn.execute(
            "UPDATE files SET root_id=?, size=?, mtime_ns=?, content_hash=?, kind=?, media_type=?, width=?, height=?,"
            " taken_at=?, time_s=?, orientation=?, status=?, error=?, indexed_at=? WHERE id = ?",
            (*values, file_id),
        )
        return file_id, removed

    # A file without an EXIF time is dated by its modification time, which these two may change.
    _MTIME_DATE = "time_s = CASE WHEN taken_at IS NULL THEN ? ELSE time_s END"

    def touch_file(self, conn: sqlite3.Connection, file_id: int, size: int, mtime_ns: int) -> None:
        conn.execute(f"UPDATE files SET size = ?, mtime_ns = ?, {self._MTIME_DATE} WHERE id = ?",
                     (size, mtime_ns, mtime_ns / 1e9, file_id))

    def move_file(self, conn: sqlite3.Connection, file_id: int, new_path: str, root_id: int, size: int, mtime_ns: int) -> None:
        conn.execute(
            f"UPDATE files SET path = ?, path_bytes = ?, root_id = ?, size = ?, mtime_ns = ?, {self._MTIME_DATE}"
            " WHERE id = ?",
            (db_path(new_path), path_bytes(new_path), root_id, size, mtime_ns, mtime_ns / 1e9, file_id),
        )

    def delete_files(self, conn: sqlite3.Connection, file_ids: Iterable[int]) -> list[int]:
        removed: list[int] = []
        for file_id in file_ids:
            removed += self._delete_items(conn, file_id)
            conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
        return removed

    def _delete_items(self, conn: sqlite3.Connection, file_id: int) -> list[int]:
        ids = [r[0] for r in conn.execute("SELECT id FROM items WHERE file_id = ?", (file_id,))]
        if ids:
            conn.execute("DELETE FROM items WHERE file_id = ?", (file_id,))
            self._bump(conn)
        return ids

    def add_items(self, conn: sqlite3.Connection, file_id: int, kind: str, vectors: np.ndarray,
                  chunks: Sequence[tuple[int | None, int, int, str]] | None = None) -> list[int]:
        """Items of one file with their vectors; chunks are (page, start, end, text) for documents."""
        ids: list[int] = []
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for i, vec in enumerate(vectors):
            page, start, end, text = chunks[i] if chunks else (None, None, None, None)
            cur = conn.execute(
                'INSERT INTO items(file_id, kind, page, start, "end", text) VALUES (?,?,?,?,?,?)',
                (file_id, kind, page, start, end, text),
            )
            item_id = _rowid(cur)
            conn.execute("INSERT INTO vectors(item_id, vector) VALUES (?, ?)", (item_id, vec.tobytes()))
            ids.append(item_id)
        if ids:
            self._bump(conn)
        return ids

    def files_by_hash(self, hashes: Iterable[str]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for h in set(hashes):
            for (fid,) in self.conn.execute("SELECT id FROM files WHERE content_hash = ? AND status = 'indexed'", (h,)):
                out.setdefault(h, []).append(fid)
        return out

    # -- items and vectors -----------------------------------------------------------------

    def vector_count(self) -> int:
        """How many vectors the catalog holds: one per item (add_items writes both in one transaction,
        deleting an item deletes its vector), so the items are counted, a small table, rather than
        the vector rows, which means reading every blob: 1.7 ms vs 232 ms at 100k items."""
        return int(self.conn.execute("SELECT count(*) FROM items").fetchone()[0])

    def live_item_ids(self) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT item_id FROM vectors")}

    def vectors_for(self, ids: Iterable[int], batch: int = 1000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids = list(ids)
        for i in range(0, len(ids), batch):
            part = ids[i : i + batch]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(f"SELECT item_id, vector FROM vectors WHERE item_id IN ({marks})", part).fetchall()
            if rows:
                yield (np.asarray([r[0] for r in rows], dtype=np.int64),
                       np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))

    def vectors_after(self, item_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Every vector of an item whose id is above `item_id` (ids only grow: what was added since)."""
        rows = self.conn.execute("SELECT item_id, vector FROM vectors WHERE item_id > ? ORDER BY item_id",
                                 (item_id,)).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return (np.asarray([r[0] for r in rows], dtype=np.int64),
                np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))

    def all_vectors(self, batch: int = 10000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        cur = self.conn.execute("SELECT item_id, vector FROM vectors ORDER BY item_id")
        while rows := cur.fetchmany(batch):
            yield (np.asarray([r[0] for r in rows], dtype=np.int64),
                   np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))

    def items(self, ids: Sequence[int]) -> dict[int, ItemRow]:
        out: dict[int, ItemRow] = {}
        for i in range(0, len(ids), 900):
            part = list(ids[i : i + 900])
            marks = ",".join("?" * len(part))
            for r in self.conn.execute(
                "SELECT items.id, items.file_id, files.path, files.path_bytes, items.kind, items.page, items.start,"
                " items.\"end\", items.text, files.media_type, files.width, files.height, files.taken_at, files.mtime_ns"
                f" FROM items JOIN files ON files.id = items.file_id WHERE items.id IN ({marks})",
                part,
            ):
                out[r[0]] = ItemRow(r[0], r[1], from_stored(r[2], r[3]), *r[4:])
        return out

    def keyword_search(self, query: str, limit: int) -> list[tuple[int, float]]:
        """FTS5 over document chunks: (item id, bm25 score, higher is better)."""
        match = fts_query(query)
        if not match:
            return []
        try:
            rows = self.conn.execute(
                "SELECT rowid, -bm25(items_fts) FROM items_fts WHERE items_fts MATCH ? ORDER BY bm25(items_fts) LIMIT ?",
                (match, limit),
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        return [(int(r[0]), float(r[1])) for r in rows]

    def item_ids_matching(self, *, kind: str | None = None, under: str | None = None, after: float | None = None,
                          before: float | None = None) -> list[int]:
        """Items of one kind ("image" | "document"), of files under a folder, dated (files.time_s) at or
        after / before an instant in Unix seconds; None leaves a condition out."""
        where, params = ["1"], []  # type: tuple[list[str], list[Any]]
        if kind is not None:
            where.append("items.kind = ?")
            params.append(kind)
        if under is not None:
            prefix = db_path(under).rstrip(os.sep) + os.sep
            where.append("substr(files.path, 1, ?) = ?")
            params += [len(prefix), prefix]
        if after is not None:
            where.append("files.time_s >= ?")
            params.append(after)
        if before is not None:
            where.append("files.time_s < ?")
            params.append(before)
        sql = f"SELECT items.id FROM items JOIN files ON files.id = items.file_id WHERE {' AND '.join(where)}"
        return [r[0] for r in self.conn.execute(sql, params)]

    # -- runs and status ---------------------------------------------------------------------

    def start_run(self) -> int:
        """A new run. The caller holds the index lock, so a run still 'running' died (killed, power
        lost) without finishing: it is marked 'interrupted'."""
        with self.write() as c:
            c.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
            return _rowid(c.execute("INSERT INTO runs(started_at, status, pid) VALUES (?, 'running', ?)",
                                    (now(), os.getpid())))

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        with self.write() as c:
            c.execute("UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                      (now(), status, json.dumps(summary), run_id))

    def last_run(self) -> dict[str, Any] | None:
        r = self.conn.execute(
            "SELECT started_at, finished_at, status, summary, pid FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if r is None:
            return None
        return {"started_at": r[0], "finished_at": r[1], "status": r[2], "summary": json.loads(r[3]) if r[3] else None,
                "pid": r[4]}

    def counts(self) -> dict[str, int]:
        out = {"image": 0, "document": 0, "chunks": 0, "errors": 0}
        for kind, n in self.conn.execute("SELECT kind, count(*) FROM files WHERE status = 'indexed' GROUP BY kind"):
            out[kind] = n
        out["chunks"] = self.conn.execute("SELECT count(*) FROM items WHERE kind = 'document'").fetchone()[0]
        out["errors"] = self.conn.execute("SELECT count(*) FROM files WHERE status = 'error'").fetchone()[0]
        return out

    def errors(self, limit: int = 1000) -> list[dict[str, str]]:
        return [{"path": r[0], "reason": r[1]} for r in self.conn.execute(
            "SELECT path, error FROM files WHERE status = 'error' ORDER BY path LIMIT ?", (limit,)
        )]


def _is_readonly_error(e: sqlite3.Error) -> bool:
    text = str(e).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _write_error(path: Path, e: sqlite3.OperationalError) -> Exception:
    text = str(e)
    low = text.lower()
    if "full" in low:
        why = "the disk is full"
    elif "readonly" in low or "read-only" in low:
        why = "the index folder is read-only"
    elif "unable to open" in low or "disk i/o" in low:
        why = f"it cannot be written ({text})"
    elif "locked" in low or "busy" in low:
        return CatalogWriteError(f"{path}: another process holds the catalog's write lock too long ({text}); try again")
    else:
        return e  # not about the disk: a bug to see as it is
    return CatalogWriteError(f"{path}: {why}; nothing of the unfinished batch was kept, the index keeps its "
                             "last committed state. Free space or fix permissions, then run the same command to resume.")


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: each word quoted (no operator surprises), any may match."""
    words = ["".join(ch for ch in w if ch.isalnum()) for w in text.split()]
    return " OR ".join(f'"{w}"' for w in words if w)
