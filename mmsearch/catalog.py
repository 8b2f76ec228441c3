"""The SQLite catalog: the durable truth of an index.

Schema (version 1), written through sqlite-utils, WAL mode, every change in one transaction:

    meta     key/value: schema_version, model name and manifest hash, embedding dim, generation
    roots    the folders the user indexed
    files    one row per file seen: path, size, mtime, content hash, kind, media type, size in
             pixels, EXIF capture time and orientation, status ('indexed' | 'error') and last error
    items    the units that get a vector: an image, or one chunk of a document (page, span, text)
    vectors  item id -> float32 vector, so the ANN index can always be rebuilt without re-encoding
    items_fts  FTS5 over the document chunks' text
    runs     one row per index run, with its summary

`generation` grows with every transaction that adds or removes items; the ANN file records the
generation it reflects, so opening an index knows at once whether the two agree.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

SCHEMA_VERSION = 1
CATALOG_FILE = "catalog.db"


class CatalogError(Exception):
    """A catalog that cannot be used as it is; the message says what to do."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def db_path(path: str) -> str:
    """The text we store for a path: itself, or where the name is not UTF-8, a readable escape
    (the exact bytes go in files.path_bytes)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def path_bytes(path: str) -> bytes | None:
    try:
        path.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return os.fsencode(path)


@dataclass(frozen=True)
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
class ItemRow:
    item_id: int
    file_id: int
    path: str
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

# Migrations from version N to N+1, applied in order inside one transaction on open.
MIGRATIONS: dict[int, str] = {}


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
        self._check_version()

    # -- connections -----------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                uri = f"file:{self.path}?mode=ro"
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
            else:
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        return sqlite_utils.Database(self.conn)

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
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()

    # -- schema ----------------------------------------------------------------------------

    def _create_or_migrate(self) -> None:
        conn = self.conn
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        version = self._stored_version()
        if version is None:
            # executescript commits any open transaction first, so the script carries its own.
            conn.executescript(
                "BEGIN IMMEDIATE;" + _SCHEMA_V1
                + f"INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                + "INSERT OR IGNORE INTO meta VALUES ('generation', '0');"
                + f"INSERT OR IGNORE INTO meta VALUES ('created', '{now()}');"
                + "COMMIT;"
            )
            return
        if version > SCHEMA_VERSION:
            return  # _check_version refuses it, untouched
        if version < SCHEMA_VERSION:
            steps = "".join(MIGRATIONS[v] for v in range(version, SCHEMA_VERSION))
            conn.executescript(
                "BEGIN IMMEDIATE;" + steps
                + f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version';"
                + "COMMIT;"
            )

    def _stored_version(self) -> int | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            return None
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
            raise CatalogError(f"{self.path}: schema {version} needs migrating; run `mmsearch index` once to upgrade it")

    # -- meta --------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

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

    def remove_root(self, root_id: int) -> list[int]:
        """Drop a root, its files and items; returns the removed item ids."""
        with self.write() as c:
            ids = [r[0] for r in c.execute(
                "SELECT items.id FROM items JOIN files ON files.id = items.file_id WHERE files.root_id = ?", (root_id,)
            )]
            c.execute("DELETE FROM files WHERE root_id = ?", (root_id,))
            c.execute("DELETE FROM roots WHERE id = ?", (root_id,))
            self._bump(c)
        return ids

    # -- files -------------------------------------------------------------------------------

    def files_under(self, root_id: int) -> dict[str, FileRow]:
        """Every file of a root, by the path the scanner sees (fs form)."""
        out: dict[str, FileRow] = {}
        for r in self.conn.execute(
            "SELECT id, path, path_bytes, size, mtime_ns, content_hash, kind, status FROM files WHERE root_id = ?",
            (root_id,),
        ):
            fs = os.fsdecode(r[2]) if r[2] is not None else r[1]
            out[fs] = FileRow(r[0], r[1], fs, r[3], r[4], r[5], r[6], r[7])
        return out

    def file_by_path(self, path: str) -> FileRow | None:
        r = self.conn.execute(
            "SELECT id, path, path_bytes, size, mtime_ns, content_hash, kind, status FROM files WHERE path = ?",
            (db_path(path),),
        ).fetchone()
        if r is None:
            return None
        fs = os.fsdecode(r[2]) if r[2] is not None else r[1]
        return FileRow(r[0], r[1], fs, r[3], r[4], r[5], r[6], r[7])

    def put_file(self, conn: sqlite3.Connection, *, path: str, root_id: int, size: int, mtime_ns: int,
                 content_hash: str | None, kind: str, media_type: str | None = None, width: int | None = None,
                 height: int | None = None, taken_at: str | None = None, orientation: int | None = None,
                 status: str = "indexed", error: str | None = None) -> tuple[int, list[int]]:
        """Insert or replace a file row; a replaced file's old items go. Returns (file id, removed item ids)."""
        key = db_path(path)
        row = conn.execute("SELECT id FROM files WHERE path = ?", (key,)).fetchone()
        values = (root_id, size, mtime_ns, content_hash, kind, media_type, width, height, taken_at,
                  orientation, status, error, now())
        removed: list[int] = []
        if row is None:
            cur = conn.execute(
                "INSERT INTO files(path, path_bytes, root_id, size, mtime_ns, content_hash, kind, media_type, width,"
                " height, taken_at, orientation, status, error, indexed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, path_bytes(path), *values),
            )
            return int(cur.lastrowid), removed
        file_id = int(row[0])
        removed = self._delete_items(conn, file_id)
        conn.execute(
            "UPDATE files SET root_id=?, size=?, mtime_ns=?, content_hash=?, kind=?, media_type=?, width=?, height=?,"
            " taken_at=?, orientation=?, status=?, error=?, indexed_at=? WHERE id = ?",
            (*values, file_id),
        )
        return file_id, removed

    def touch_file(self, conn: sqlite3.Connection, file_id: int, size: int, mtime_ns: int) -> None:
        conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))

    def move_file(self, conn: sqlite3.Connection, file_id: int, new_path: str, root_id: int, size: int, mtime_ns: int) -> None:
        conn.execute(
            "UPDATE files SET path = ?, path_bytes = ?, root_id = ?, size = ?, mtime_ns = ? WHERE id = ?",
            (db_path(new_path), path_bytes(new_path), root_id, size, mtime_ns, file_id),
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
            item_id = int(cur.lastrowid)
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
        return int(self.conn.execute("SELECT count(*) FROM vectors").fetchone()[0])

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
                "SELECT items.id, items.file_id, files.path, items.kind, items.page, items.start, items.\"end\","
                " items.text, files.media_type, files.width, files.height, files.taken_at, files.mtime_ns"
                f" FROM items JOIN files ON files.id = items.file_id WHERE items.id IN ({marks})",
                part,
            ):
                out[r[0]] = ItemRow(*r)
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

    def item_ids_where(self, where: str, params: Sequence[Any]) -> list[int]:
        sql = f"SELECT items.id FROM items JOIN files ON files.id = items.file_id WHERE {where}"
        return [r[0] for r in self.conn.execute(sql, list(params))]

    # -- runs and status ---------------------------------------------------------------------

    def start_run(self) -> int:
        with self.write() as c:
            return int(c.execute("INSERT INTO runs(started_at, status) VALUES (?, 'running')", (now(),)).lastrowid)

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        with self.write() as c:
            c.execute("UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                      (now(), status, json.dumps(summary), run_id))

    def last_run(self) -> dict[str, Any] | None:
        r = self.conn.execute(
            "SELECT started_at, finished_at, status, summary FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if r is None:
            return None
        return {"started_at": r[0], "finished_at": r[1], "status": r[2], "summary": json.loads(r[3]) if r[3] else None}

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


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: each word quoted (no operator surprises), any may match."""
    words = ["".join(ch for ch in w if ch.isalnum()) for w in text.split()]
    return " OR ".join(f'"{w}"' for w in words if w)
