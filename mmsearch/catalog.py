"""The SQLite catalog: the durable truth of an index.

Schema (version 9), written with the standard library's sqlite3, WAL mode, every change in one transaction:

    meta     key/value: schema_version, model name and manifest hash, embedding dim, generation
    roots    the folders the user indexed
    files    one row per file seen: path, size, mtime, content hash, kind, media type, size in
             pixels, EXIF capture time and orientation, status ('indexed' | 'error') and last error
    items    the units of a file: an image (its vector), one chunk of a document (page, span, text, its
             vector), or the words read in a picture (kind 'ocr': text, no vector; see version 5)
    vectors  item id -> float32 vector, so the ANN index can always be rebuilt without re-encoding
    passages FTS5-indexed passages of a file's text (passages.py), cut from its items' text (see version 6)
    runs     one row per index run, with its summary and the writing process's pid

Version 2 added `runs.pid` (a run left 'running' by a killed process is marked 'interrupted' by the
next run) and an index on files(status), so listing the files in error does not scan every file.
Version 3 rebuilt `items_fts` for words in any script: it indexes `fts_text(text)`, where each Chinese,
Japanese or Korean character stands alone (FTS5's unicode61 tokenizer makes a whole run of them one
token, so no word inside the run could match), and folds diacritics ("resume" finds "Résumé"). It is
contentless (the text lives in `items`); the triggers call `fts_text` as the SQL function
`mmsearch_fts_text`, which every connection registers, and a delete re-derives the indexed text, so
changing `fts_text` needs a migration that rebuilds the table. The upgrade also marks every document
for re-reading (size -1, no hash): older versions kept only the start of each page.

Version 4 added `files.time_s`, the file's date as an instant (Unix seconds): the EXIF capture time
where the photo has one, else the modification time. EXIF times without an offset are the camera's
wall clock, read as this machine's local time (as photo apps do); `files.taken_at` keeps the EXIF text
as found, with its offset where the photo records one. Date filters compare instants.

Version 5 added OCR: `files.ocr_hash`, the content hash whose pictures were read for words (a photo,
or the pages of a PDF that have no text layer); NULL while that is still to do, so an OCR phase that
was cut short resumes where it stopped, and a picture read once is not read again until its content
changes (a new row, or a changed file's, starts NULL). What a picture says is an item of kind 'ocr'
with its text and no vector (the picture's own vector stands for its meaning), found by keyword;
a scanned page's text becomes ordinary document chunks, with vectors. Documents that earlier
versions refused for having no text (scanned PDFs) are read again by the next run.

Version 6 moved the keyword index from the items (the text tower's chunks) to `passages`: the text of
each page cut into passages of 200 words that overlap by 56 (passages.py), so a phrase of any length up
to that, or across two chunks, is found. `passages_fts` indexes them as `items_fts` did the chunks
(contentless, `fts_text`, diacritics folded). The catalog keeps them in step itself: `add_items` and
`add_text_items` cut the passages their chunks change, `_delete_items` drops a file's. The upgrade cuts
every file's passages from its chunks' text: nothing is read or encoded again. `items_file` became an
index on (file_id, page, start), the order passages are cut in.

Version 9 added videos (video.py): a video is a file of kind 'video' whose items are frames, each with
its vector and `items.time_s`, its time in seconds from the video's start; `files.duration_s` is its
length. A long video is committed in parts: until its last part is, its row's status is 'indexing' and
`files.done_s` says how far into it its frames are committed, so a run that resumes it starts there.

`generation` grows with every transaction that adds or removes vectors; the ANN file records the
generation it reflects, so opening an index knows at once whether the two agree.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import keyword, passages, private
from .errors import MmsearchError
from .filenames import display_path as db_path
from .filenames import from_stored, path_bytes
from .keyword import register_functions

if TYPE_CHECKING:
    import numpy as np  # imported where vectors are read or written: a keyword query loads none of it

SCHEMA_VERSION = 9
CATALOG_FILE = "catalog.db"


class CatalogError(MmsearchError):
    """A catalog that cannot be used as it is; the message says what to do."""


class CatalogWriteError(CatalogError):
    """The catalog could not be written (disk full, read-only folder, I/O error). The last committed
    state is intact: SQLite rolled the transaction back."""




def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# The columns _file_row reads, in its order: every query of FileRows selects these.
_FILE_COLUMNS = "id, path, path_bytes, size, mtime_ns, content_hash, kind, status, ctime_ns"
# A file's first item of its own kind (a document's first passage, not an OCR item): the one that shows it.
_FIRST_ITEM = "(SELECT min(items.id) FROM items WHERE items.file_id = files.id AND items.kind = files.kind)"


def _file_row(r: tuple) -> FileRow:
    """A FileRow from (id, path, path_bytes, size, mtime_ns, content_hash, kind, status, ctime_ns)."""
    return FileRow(r[0], r[1], from_stored(r[1], r[2]), r[3], r[4], r[5], r[6], r[7], r[8])


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
    ctime_ns: int | None = None  # the inode's change time as indexed (None: not recorded yet)


@dataclass(frozen=True)
class OcrTodo:
    """A file whose words are still to be read."""

    file_id: int
    path: str  # what to open on disk
    kind: str  # "image" | "document" (a PDF)
    content_hash: str  # the content the catalog holds for it: what is read must be this


@dataclass(frozen=True)
class ModelRecord:
    """The model an index was built with: its vectors compare only with that model's."""

    name: str
    path: str  # the bundle folder it was loaded from
    manifest_sha256: str
    embedding_dim: int


@dataclass(frozen=True, slots=True)
class ItemFile:
    """One item and the file it belongs to, as an app shows and serves it (the web app's thumbnails,
    its larger view and the original file)."""

    item_id: int
    file_id: int
    path: str  # as stored (display form)
    fs_path: str  # what to open on disk
    kind: str  # "image" | "document" | "video"
    page: int | None  # a PDF chunk's page
    size: int
    mtime_ns: int
    content_hash: str | None
    media_type: str | None
    width: int | None
    height: int | None
    taken_at: str | None  # the EXIF capture time as found
    time_s: float | None  # the file's date as an instant: taken_at where known, else the modification time
    status: str
    ctime_ns: int | None  # the inode's change time as indexed (None: not recorded yet)
    frame_s: float | None = None  # a video's frame: its time, in seconds from the video's start


# The kind of the items that hold the words read in a picture: text for the keyword index, no vector.
OCR_KIND = "ocr"


@dataclass(frozen=True)
class DuplicateRow:
    """An indexed file as the search for duplicates sees it."""

    id: int
    path: str  # what opens the file
    kind: str
    size: int
    width: int | None
    height: int | None
    content_hash: str
    item_id: int | None  # the file's first item: what shows it (a thumbnail) and opens it in an app


@dataclass(frozen=True)
class ContentSource:
    """An indexed file's content as a copy of it takes it (Catalog.content_source)."""

    kind: str
    width: int | None
    height: int | None
    taken_at: str | None  # the EXIF capture time as stored (ISO 8601)
    orientation: int | None
    note: str | None  # a document indexed only in part, and why
    chunks: list[tuple[int | None, int | None, int | None, str | None]]  # (page, start, end, text) per item
    vectors: np.ndarray  # [items, dim] float32


@dataclass(frozen=True)
class PassageRow:
    """A keyword passage (passages.py) with its file's fields, as a result shows it."""

    passage_id: int
    file_id: int
    path: str  # the path that opens the file
    kind: str  # the file's kind: "image" | "document"
    page: int | None
    start: int
    end: int
    text: str
    media_type: str | None
    width: int | None
    height: int | None
    taken_at: str | None
    mtime_ns: int


@dataclass(frozen=True)
class ItemRow:
    item_id: int
    file_id: int
    path: str  # the path that opens the file (see filenames.py for names that are not UTF-8)
    kind: str  # the file's kind: "image" | "document" (an 'ocr' item belongs to an image)
    page: int | None
    start: int | None
    end: int | None
    text: str | None
    media_type: str | None
    width: int | None
    height: int | None
    taken_at: str | None
    mtime_ns: int
    time_s: float | None = None  # a video's frame: seconds from the video's start


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
MIGRATIONS: dict[int, list[Any]] = {
    1: [
        "ALTER TABLE runs ADD COLUMN pid INTEGER",
        "CREATE INDEX IF NOT EXISTS files_status ON files(status)",
    ],
    2: [
        "DROP TRIGGER IF EXISTS items_ai",
        "DROP TRIGGER IF EXISTS items_ad",
        "DROP TABLE IF EXISTS items_fts",
        "CREATE VIRTUAL TABLE items_fts USING fts5(text, content='', tokenize='unicode61 remove_diacritics 2')",
        "CREATE TRIGGER items_ai AFTER INSERT ON items WHEN new.text IS NOT NULL BEGIN"
        " INSERT INTO items_fts(rowid, text) VALUES (new.id, mmsearch_fts_text(new.text)); END",
        "CREATE TRIGGER items_ad AFTER DELETE ON items WHEN old.text IS NOT NULL BEGIN"
        " INSERT INTO items_fts(items_fts, rowid, text) VALUES ('delete', old.id, mmsearch_fts_text(old.text)); END",
        "INSERT INTO items_fts(rowid, text) SELECT id, mmsearch_fts_text(text) FROM items WHERE text IS NOT NULL",
        # Documents indexed before this version kept only the start of each page: the next run reads
        # them again (a changed size makes the scan hand them over, no hash makes extraction redo them).
        "UPDATE files SET size = -1, content_hash = NULL WHERE kind = 'document'",
    ],
    3: [
        "ALTER TABLE files ADD COLUMN time_s REAL",
        # Earlier versions stored naive EXIF times ("YYYY-MM-DDTHH:MM:SS"); 'utc' reads them as local time.
        "UPDATE files SET time_s = coalesce(CAST(strftime('%s', replace(substr(taken_at, 1, 19), 'T', ' '), 'utc')"
        " AS REAL), mtime_ns / 1e9)",
        "CREATE INDEX IF NOT EXISTS files_time ON files(time_s)",
    ],
    4: [
        "ALTER TABLE files ADD COLUMN ocr_hash TEXT",
        # The files whose words are still to be read: few once a run has read them.
        "CREATE INDEX IF NOT EXISTS files_ocr_pending ON files(root_id) WHERE ocr_hash IS NULL",
        # Items without a vector, so counting the vectors stays a count of small indexes.
        f"CREATE INDEX IF NOT EXISTS items_ocr ON items(file_id) WHERE kind = '{OCR_KIND}'",
        # Scanned PDFs were refused for having no text: the next run reads them again (a changed size
        # makes the scan hand them over), and reads their pages when OCR is installed.
        "UPDATE files SET size = -1, content_hash = NULL WHERE kind = 'document' AND status = 'error'"
        " AND error = 'no text found'",
    ],
    5: [
        # What a file's size and mtime (which anyone who may write it can set) leave unsaid: whether the
        # path holds the same inode as indexed. The kernel sets it; a file swapped in, or a symlink to
        # another file, has another. Recorded by the next run for files indexed before.
        "ALTER TABLE files ADD COLUMN ctime_ns INTEGER",
    ],
    6: [
        # The keyword index moves from the vector chunks to passages (passages.py), cut from the chunks'
        # text: nothing is read or encoded again.
        "DROP TRIGGER IF EXISTS items_ai",
        "DROP TRIGGER IF EXISTS items_ad",
        "DROP TABLE IF EXISTS items_fts",
        'CREATE TABLE passages (id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,'
        ' page INTEGER, start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL)',
        "CREATE INDEX passages_file ON passages(file_id, page, start)",
        "CREATE VIRTUAL TABLE passages_fts USING fts5(text, content='', tokenize='unicode61 remove_diacritics 2')",
        "CREATE TRIGGER passages_ai AFTER INSERT ON passages BEGIN"
        " INSERT INTO passages_fts(rowid, text) VALUES (new.id, mmsearch_fts_text(new.text)); END",
        "CREATE TRIGGER passages_ad AFTER DELETE ON passages BEGIN"
        " INSERT INTO passages_fts(passages_fts, rowid, text) VALUES ('delete', old.id, mmsearch_fts_text(old.text)); END",
        # A file's chunks by page and position: the passages that follow a new batch of chunks read the
        # chunks from where they change (Catalog._follow_passages), not the whole file's.
        "DROP INDEX IF EXISTS items_file",
        "CREATE INDEX items_file ON items(file_id, page, start)",
        lambda conn: _rebuild_passages(conn),
    ],
    7: [
        # Words first, vectors after: a document's chunks are written (and searchable by their words) as
        # soon as its text is read; those whose vectors are still to be computed are listed here.
        "CREATE TABLE vectors_pending (item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE)",
        # Files of types mmsearch does not read, by suffix, as the last complete walk of each root counted
        # them (`mmsearch status`: "not read: 120 .key, 3 .pages").
        "CREATE TABLE not_read (root_id INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE,"
        " suffix TEXT NOT NULL, files INTEGER NOT NULL, PRIMARY KEY (root_id, suffix))",
    ],
    8: [
        # Videos: each kept frame an item with its time in the video; the video's length; and, while a
        # long video is committed in parts (status 'indexing'), how far its frames go.
        "ALTER TABLE items ADD COLUMN time_s REAL",
        "ALTER TABLE files ADD COLUMN duration_s REAL",
        "ALTER TABLE files ADD COLUMN done_s REAL",
    ],
}

# A new catalog is the first schema with every migration applied, so both paths give the same tables
# (the steps written in Python move data, which a new catalog has none of).
_SCHEMA_LATEST = [stmt for v in sorted(MIGRATIONS) for stmt in MIGRATIONS[v] if isinstance(stmt, str)]


PAGE_SIZE = 16384
# The catalog is compacted (Catalog.compact) at the end of a run or a forget once this share of it, and
# at least this many bytes, are pages of deleted rows.
COMPACT_SHARE = 0.25
COMPACT_MIN_BYTES = 4 * 2**20


class Catalog:
    """One index's SQLite file. Reads use a connection per thread; writes go through `write()`."""

    def __init__(self, folder: Path, *, readonly: bool = False):
        self.folder = folder
        self.path = folder / CATALOG_FILE
        self.readonly = readonly
        self._local = threading.local()
        self._write_lock = threading.Lock()
        if not readonly:
            private.make_folder(folder)
            if not self.path.exists():
                # Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files its mode.
                private.empty_file(self.path)
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
            register_functions(conn)
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
                conn.commit()
            except BaseException as e:
                try:
                    conn.rollback()
                except sqlite3.Error:
                    pass
                if isinstance(e, sqlite3.OperationalError):
                    raise _write_error(self.path, e) from None
                raise

    # -- space -----------------------------------------------------------------------------

    def free_bytes(self) -> tuple[int, int]:
        """(the file's pages in bytes, those of them free): SQLite keeps the pages of deleted rows for
        reuse rather than giving them back."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return pages * size, free * size

    def compact(self, *, force: bool = False) -> bool:
        """Give the room of deleted rows back to the file system (the keyword index's segments merged,
        then VACUUM, which rewrites the file in one transaction: a crash leaves it as it was). Done when
        free pages are COMPACT_SHARE of the file and at least COMPACT_MIN_BYTES, or always with `force`.
        Returns whether it ran."""
        total, free = self.free_bytes()
        if not force and (free < COMPACT_MIN_BYTES or free < COMPACT_SHARE * total):
            return False
        with self.write() as conn:
            conn.execute("INSERT INTO passages_fts(passages_fts) VALUES ('optimize')")
        with self._write_lock:
            conn = self.conn
            try:
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the copy VACUUM wrote to the WAL
            except sqlite3.OperationalError as e:
                raise _write_error(self.path, e) from None
        return True

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
        register_functions(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0])  # again, under the write lock: another process may have done it
            for v in range(version, SCHEMA_VERSION):
                for stmt in MIGRATIONS[v]:
                    if isinstance(stmt, str):
                        conn.execute(stmt)
                    else:
                        stmt(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def _migrate_for_reading(self) -> None:
        """A reader (a query) of an older catalog migrates it when it may write the folder, so an
        upgrade of mmsearch does not need an index run before the first query."""
        version = self._stored_version()
        if version is None or version >= SCHEMA_VERSION or not private.may_write(self.folder):
            return  # (another account's index is not written, not even to migrate it)
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

    def set_not_read(self, root_id: int, counts: dict[str, int]) -> None:
        """What a complete walk of a root counted of the files it does not read (replacing the last)."""
        with self.write() as c:
            c.execute("DELETE FROM not_read WHERE root_id = ?", (root_id,))
            c.executemany("INSERT INTO not_read(root_id, suffix, files) VALUES (?, ?, ?)",
                          [(root_id, suffix, n) for suffix, n in counts.items()])

    def not_read(self) -> dict[str, int]:
        """The files of types not read, by suffix, over every root; most first. A root inside another
        root (indexed on its own first, then its parent) is counted by the parent's walk already: its
        own counts are left out, or its files would count twice."""
        rows = self.conn.execute(
            "SELECT suffix, sum(files) AS n FROM not_read JOIN roots inner_root ON inner_root.id = not_read.root_id"
            " WHERE NOT EXISTS (SELECT 1 FROM roots outer_root WHERE outer_root.id != inner_root.id"
            "  AND substr(inner_root.path, 1, length(rtrim(outer_root.path, :sep)) + 1) = rtrim(outer_root.path, :sep) || :sep)"
            " GROUP BY suffix ORDER BY n DESC, suffix", {"sep": os.sep})
        return {suffix: n for suffix, n in rows}

    # -- files -------------------------------------------------------------------------------

    def files_of_root(self, root_id: int) -> Iterator[FileRow]:
        """Every file of a root, streamed (a root may hold a million)."""
        cursor = self.conn.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE root_id = ?",
            (root_id,),
        )
        for r in cursor:
            yield _file_row(r)

    def files_under(self, paths: Iterable[str]) -> Iterator[FileRow]:
        """The indexed files (under any root) that are one of `paths` or lie in a folder among them."""
        for path in paths:
            shown = db_path(path).rstrip(os.sep)
            cursor = self.conn.execute(
                f"SELECT {_FILE_COLUMNS} FROM files"
                " WHERE path = ? OR (path >= ? AND path < ?)", (shown, shown + os.sep, shown + chr(ord(os.sep) + 1)))
            for r in cursor:
                yield _file_row(r)

    def item_file(self, item_id: int) -> ItemFile | None:
        """An item with its file's row (None: no such item, or gone since)."""
        r = self.conn.execute(
            "SELECT items.id, files.id, files.path, files.path_bytes, files.kind, items.page, files.size,"
            " files.mtime_ns, files.content_hash, files.media_type, files.width, files.height, files.taken_at,"
            " files.time_s, files.status, files.ctime_ns, items.time_s FROM items JOIN files ON files.id = items.file_id"
            " WHERE items.id = ?",
            (item_id,),
        ).fetchone()
        if r is None:
            return None
        return ItemFile(r[0], r[1], r[2], from_stored(r[2], r[3]), *r[4:])

    def recent_items(self, kind: str, limit: int) -> list[ItemFile]:
        """The files of a kind, newest first by their date (the capture time where known), one item each."""
        rows = self.conn.execute(
            f"SELECT {_FIRST_ITEM} FROM files WHERE kind = ? AND status = 'indexed' ORDER BY time_s DESC, id DESC LIMIT ?",
            (kind, limit)).fetchall()
        return [item for (item_id,) in rows if item_id is not None and (item := self.item_file(item_id)) is not None]

    def opening(self, file_id: int) -> str | None:
        """The text a document opens with: its first chunk's."""
        return keyword.opening(self.conn, file_id)

    def files_by_path(self, paths: Sequence[str]) -> dict[str, FileRow]:
        """The indexed files among `paths` (as the scanner sees them), under any root."""
        out: dict[str, FileRow] = {}
        keys = [db_path(p) for p in paths]
        for lo in range(0, len(keys), 500):
            part = keys[lo : lo + 500]
            marks = ",".join("?" * len(part))
            for r in self.conn.execute(
                f"SELECT {_FILE_COLUMNS} FROM files"
                f" WHERE path IN ({marks})", part,
            ):
                row = _file_row(r)
                out[row.fs_path] = row
        return out

    def file_by_path(self, path: str) -> FileRow | None:
        r = self.conn.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE path = ?",
            (db_path(path),),
        ).fetchone()
        return None if r is None else _file_row(r)

    def file_error(self, file_id: int) -> str | None:
        row = self.conn.execute("SELECT error FROM files WHERE id = ?", (file_id,)).fetchone()
        return row[0] if row else None

    def file_vector(self, file_id: int) -> np.ndarray | None:
        """One vector for a file: an image's own (its words have none), a document's chunks' mean
        (renormalised); None for a file without any (a scan whose words are not read yet)."""
        import numpy as np
        ids = [r[0] for r in self.conn.execute("SELECT id FROM items WHERE file_id = ? AND kind != ? ORDER BY id",
                                               (file_id, OCR_KIND))]
        parts = [v for _, v in self.vectors_for(ids)]
        if not parts:
            return None
        mean = np.concatenate(parts).mean(axis=0)
        return (mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32)

    def frame_vector(self, file_id: int, at: float) -> np.ndarray | None:
        """The vector of a video's frame nearest `at` seconds (None: no frame)."""
        r = self.conn.execute("SELECT id FROM items WHERE file_id = ? AND time_s IS NOT NULL ORDER BY abs(time_s - ?), id"
                              " LIMIT 1", (file_id, at)).fetchone()
        parts = [v for _, v in self.vectors_for([r[0]])] if r else []
        return parts[0][0] if parts else None

    def put_file(self, conn: sqlite3.Connection, *, path: str, root_id: int, size: int, mtime_ns: int,
                 content_hash: str | None, kind: str, media_type: str | None = None, width: int | None = None,
                 height: int | None = None, taken_at: datetime | None = None, orientation: int | None = None,
                 status: str = "indexed", error: str | None = None, ctime_ns: int | None = None,
                 duration_s: float | None = None, done_s: float | None = None) -> tuple[int, list[int]]:
        """Insert or replace a file row; a replaced file's old items go. Returns (file id, removed item ids).
        taken_at: the EXIF capture time, naive (camera wall clock, read as local time) or aware."""
        key = db_path(path)
        row = conn.execute("SELECT id FROM files WHERE path = ?", (key,)).fetchone()
        time_s = taken_at.timestamp() if taken_at else mtime_ns / 1e9
        values = (root_id, size, mtime_ns, content_hash, kind, media_type, width, height,
                  taken_at.isoformat() if taken_at else None, time_s, orientation, status, error, now(), ctime_ns,
                  duration_s, done_s)
        removed: list[int] = []
        if row is None:
            cur = conn.execute(
                "INSERT INTO files(path, path_bytes, root_id, size, mtime_ns, content_hash, kind, media_type, width,"
                " height, taken_at, time_s, orientation, status, error, indexed_at, ctime_ns, duration_s, done_s)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, path_bytes(path), *values),
            )
            return _rowid(cur), removed
        file_id = int(row[0])
        removed = self._delete_items(conn, file_id)
        # Its items are gone, the words read in it with them: to be read again (ocr_hash NULL).
        conn.execute(
            "UPDATE files SET root_id=?, size=?, mtime_ns=?, content_hash=?, kind=?, media_type=?, width=?, height=?,"
            " taken_at=?, time_s=?, orientation=?, status=?, error=?, indexed_at=?, ctime_ns=?, duration_s=?, done_s=?,"
            " ocr_hash=NULL"
            " WHERE id = ?",
            (*values, file_id),
        )
        return file_id, removed

    def mark_unfinished(self, conn: sqlite3.Connection, file_id: int) -> None:
        """A document indexed only as far as a stopped run read it: its items stay searchable, and its
        status is 'indexing', as a video's committed in part, so the next run's plan hands it back (the
        documents step then reads it again whole)."""
        conn.execute("UPDATE files SET status = 'indexing' WHERE id = ?", (file_id,))

    def set_file_note(self, conn: sqlite3.Connection, file_id: int, note: str | None) -> None:
        """A note on an indexed file (a document indexed only so far, say): kept in its error column,
        its status stays 'indexed'. None takes it away."""
        conn.execute("UPDATE files SET error = ? WHERE id = ?", (note, file_id))

    def video_progress(self, file_id: int) -> tuple[float | None, float | None]:
        """A video committed in parts: (how far its frames are committed, in seconds, None: not in parts;
        the time of its last frame, None: none yet)."""
        r = self.conn.execute("SELECT done_s, (SELECT max(time_s) FROM items WHERE file_id = files.id)"
                              " FROM files WHERE id = ?", (file_id,)).fetchone()
        return (None, None) if r is None else (r[0], r[1])

    def set_video_progress(self, conn: sqlite3.Connection, file_id: int, done_s: float | None) -> None:
        """A video's frames committed up to `done_s` seconds (status 'indexing'); None: all of them (status
        'indexed')."""
        conn.execute("UPDATE files SET done_s = ?, status = ? WHERE id = ?",
                     (done_s, "indexed" if done_s is None else "indexing", file_id))

    # A file without an EXIF time is dated by its modification time, which these two may change.
    _MTIME_DATE = "time_s = CASE WHEN taken_at IS NULL THEN ? ELSE time_s END"

    def touch_file(self, conn: sqlite3.Connection, file_id: int, size: int, mtime_ns: int,
                   ctime_ns: int | None = None) -> None:
        conn.execute(f"UPDATE files SET size = ?, mtime_ns = ?, ctime_ns = ?, {self._MTIME_DATE} WHERE id = ?",
                     (size, mtime_ns, ctime_ns, mtime_ns / 1e9, file_id))

    def move_file(self, conn: sqlite3.Connection, file_id: int, new_path: str, root_id: int, size: int, mtime_ns: int,
                  ctime_ns: int | None = None) -> None:
        conn.execute(
            f"UPDATE files SET path = ?, path_bytes = ?, root_id = ?, size = ?, mtime_ns = ?, ctime_ns = ?,"
            f" {self._MTIME_DATE} WHERE id = ?",
            (db_path(new_path), path_bytes(new_path), root_id, size, mtime_ns, ctime_ns, mtime_ns / 1e9, file_id),
        )

    def record_ctimes(self, conn: sqlite3.Connection, ctimes: Iterable[tuple[int, int]]) -> None:
        """(file id, ctime_ns) of unchanged files indexed before their change time was recorded."""
        conn.executemany("UPDATE files SET ctime_ns = ? WHERE id = ? AND ctime_ns IS NULL",
                         [(ctime, file_id) for file_id, ctime in ctimes])

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
            conn.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))
            self._bump(conn)
        return ids

    def add_items(self, conn: sqlite3.Connection, file_id: int, kind: str, vectors: np.ndarray,
                  chunks: Sequence[tuple[int | None, int, int, str]] | None = None,
                  times: Sequence[float] | None = None) -> list[int]:
        """Items of one file with their vectors; chunks are (page, start, end, text) for documents, times
        (seconds from the start) for a video's frames."""
        import numpy as np
        ids: list[int] = []
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for i, vec in enumerate(vectors):
            page, start, end, text = chunks[i] if chunks else (None, None, None, None)
            cur = conn.execute(
                'INSERT INTO items(file_id, kind, page, start, "end", text, time_s) VALUES (?,?,?,?,?,?,?)',
                (file_id, kind, page, start, end, text, times[i] if times else None),
            )
            item_id = _rowid(cur)
            conn.execute("INSERT INTO vectors(item_id, vector) VALUES (?, ?)", (item_id, vec.tobytes()))
            ids.append(item_id)
        if ids:
            self._bump(conn)
        if chunks:
            _follow_passages(conn, file_id, chunks)
        return ids

    def add_text_items(self, conn: sqlite3.Connection, file_id: int, kind: str,
                       texts: Sequence[tuple[int | None, str]]) -> list[int]:
        """Items of one file that hold text and no vector (the words read in a picture): (page, text).
        They leave the vectors, and so the generation, as they were."""
        ids = []
        for page, text in texts:
            cur = conn.execute("INSERT INTO items(file_id, kind, page, start, \"end\", text) VALUES (?,?,?,?,?,?)",
                               (file_id, kind, page, 0, len(text), text))
            ids.append(_rowid(cur))
        _follow_passages(conn, file_id, [(page, 0, len(text), text) for page, text in texts])
        return ids

    def add_chunks(self, conn: sqlite3.Connection, file_id: int,
                   chunks: Sequence[tuple[int | None, int, int, str]]) -> list[int]:
        """A document's chunks (page, start, end, text) without their vectors: searchable by their words at
        once, their vectors computed later (pending_vectors, add_vectors). The vectors' generation stays."""
        if not chunks:
            return []
        # One executemany, not a statement a chunk. Item ids are AUTOINCREMENT (they only grow) and this
        # transaction is the only writer: the new items are the ids past the largest before, in order.
        before = conn.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0]
        conn.executemany('INSERT INTO items(file_id, kind, page, start, "end", text) VALUES (?,?,?,?,?,?)',
                         [(file_id, "document", page, start, end, text) for page, start, end, text in chunks])
        ids = [r[0] for r in conn.execute("SELECT id FROM items WHERE id > ? ORDER BY id", (before,))]
        assert len(ids) == len(chunks), "items added by another writer within this transaction"
        conn.executemany("INSERT INTO vectors_pending(item_id) VALUES (?)", [(i,) for i in ids])
        _follow_passages(conn, file_id, chunks)
        return ids

    def pending_vectors(self, limit: int | None = None) -> list[tuple[int, str]]:
        """(item id, text) of the chunks whose vectors are still to be computed, oldest first."""
        sql = ("SELECT items.id, items.text FROM vectors_pending JOIN items ON items.id = vectors_pending.item_id"
               " ORDER BY vectors_pending.item_id")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [(r[0], r[1] or "") for r in self.conn.execute(sql)]

    def vectors_pending_for(self, file_id: int) -> int:
        """How many of a file's chunks still wait for their vectors."""
        return int(self.conn.execute("SELECT count(*) FROM vectors_pending JOIN items ON items.id = vectors_pending.item_id"
                                     " WHERE items.file_id = ?", (file_id,)).fetchone()[0])

    def pending_counts(self) -> tuple[int, int]:
        """(chunks, documents) still waiting for their vectors: searchable by their words only."""
        # CROSS JOIN keeps vectors_pending the outer loop: every query asks, and left to itself SQLite
        # walked all the items to find none waiting (25 ms at 680k items; this, 0.02 ms).
        r = self.conn.execute("SELECT count(*), count(DISTINCT items.file_id) FROM vectors_pending"
                              " CROSS JOIN items ON items.id = vectors_pending.item_id").fetchone()
        return int(r[0]), int(r[1])

    def add_vectors(self, conn: sqlite3.Connection, item_ids: Sequence[int], vectors: np.ndarray) -> list[int]:
        """The vectors of chunks written by add_chunks; a chunk gone since (its file changed or left) is
        skipped. Returns the ids written, in order."""
        import numpy as np
        written = []
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for item_id, vec in zip(item_ids, vectors):
            if conn.execute("DELETE FROM vectors_pending WHERE item_id = ?", (int(item_id),)).rowcount:
                conn.execute("INSERT INTO vectors(item_id, vector) VALUES (?, ?)", (int(item_id), vec.tobytes()))
                written.append(int(item_id))
        if written:
            self._bump(conn)
        return written

    # -- OCR ---------------------------------------------------------------------------------

    def ocr_pending(self, root_ids: Iterable[int]) -> list[OcrTodo]:
        """The indexed pictures and PDFs under these roots whose words are still to be read, by path."""
        out: list[OcrTodo] = []
        for root_id in sorted(set(root_ids)):
            for r in self.conn.execute(
                "SELECT id, path, path_bytes, kind, content_hash FROM files WHERE root_id = ? AND ocr_hash IS NULL"
                " AND status = 'indexed' AND content_hash IS NOT NULL"
                " AND (kind = 'image' OR media_type = 'application/pdf')", (root_id,),
            ):
                out.append(OcrTodo(r[0], from_stored(r[1], r[2]), r[3], r[4]))
        out.sort(key=lambda t: t.path)
        return out

    def set_ocr_done(self, conn: sqlite3.Connection, file_id: int, content_hash: str) -> None:
        """The file's words are read (or it has no pictures to read), for this content."""
        conn.execute("UPDATE files SET ocr_hash = ? WHERE id = ? AND content_hash = ?", (content_hash, file_id,
                                                                                      content_hash))

    def pages_with_items(self, file_id: int) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT page FROM items WHERE file_id = ? AND page IS NOT NULL",
                                                (file_id,))}

    def ocr_text(self, file_id: int) -> str | None:
        """The words read in a picture, where it has any."""
        rows = self.conn.execute("SELECT text FROM items WHERE file_id = ? AND kind = ? ORDER BY id",
                                 (file_id, OCR_KIND)).fetchall()
        return "\n".join(r[0] for r in rows) if rows else None

    def files_by_hash(self, hashes: Iterable[str]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for h in set(hashes):
            for (fid,) in self.conn.execute("SELECT id FROM files WHERE content_hash = ? AND status = 'indexed'", (h,)):
                out.setdefault(h, []).append(fid)
        return out

    def indexed_hashes(self, hashes: Iterable[str]) -> set[str]:
        """The content hashes among `hashes` that an indexed file has (so its items exist already)."""
        out: set[str] = set()
        keys = list(set(hashes))
        for lo in range(0, len(keys), 500):
            part = keys[lo : lo + 500]
            marks = ",".join("?" * len(part))
            out.update(r[0] for r in self.conn.execute(
                f"SELECT DISTINCT content_hash FROM files WHERE status = 'indexed' AND content_hash IN ({marks})", part))
        return out

    def content_source(self, content_hash: str) -> ContentSource | None:
        """What an indexed file with these bytes holds, for a copy of it to take instead of being encoded
        again: its image fields, its note, its items' chunks and vectors (ids ascending). None if no
        indexed file has them."""
        import numpy as np
        row = self.conn.execute(
            "SELECT id, kind, width, height, taken_at, orientation, error FROM files"
            " WHERE content_hash = ? AND status = 'indexed' ORDER BY id LIMIT 1", (content_hash,)).fetchone()
        if row is None:
            return None
        items = self.conn.execute(
            'SELECT items.page, items.start, items."end", items.text, vectors.vector FROM items'
            " LEFT JOIN vectors ON vectors.item_id = items.id WHERE items.file_id = ? AND items.kind != ?"
            " ORDER BY items.id", (row[0], OCR_KIND)).fetchall()
        if not items or any(r[4] is None for r in items):
            return None  # (its vectors are still to be computed: the copy is read and encoded on its own)
        return ContentSource(kind=row[1], width=row[2], height=row[3], taken_at=row[4], orientation=row[5], note=row[6],
                             chunks=[(r[0], r[1], r[2], r[3]) for r in items],
                             vectors=np.stack([np.frombuffer(r[4], dtype=np.float32) for r in items]))

    # -- items and vectors -----------------------------------------------------------------

    def vector_count(self) -> int:
        """How many vectors the catalog holds: one per item but the words read in pictures (add_items
        writes both in one transaction, deleting an item deletes its vector), so items are counted, on
        small indexes, rather than the vector rows, which means reading every blob: 1.7 ms vs 232 ms
        at 100k items."""
        items = int(self.conn.execute("SELECT count(*) FROM items").fetchone()[0])
        pending = int(self.conn.execute("SELECT count(*) FROM vectors_pending").fetchone()[0])
        return items - pending - int(self.conn.execute("SELECT count(*) FROM items WHERE kind = ?", (OCR_KIND,)).fetchone()[0])

    def live_item_ids(self) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT item_id FROM vectors")}

    def vectors_for(self, ids: Iterable[int], batch: int = 1000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import numpy as np
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
        import numpy as np
        rows = self.conn.execute("SELECT item_id, vector FROM vectors WHERE item_id > ? ORDER BY item_id",
                                 (item_id,)).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return (np.asarray([r[0] for r in rows], dtype=np.int64),
                np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))

    def all_vectors(self, batch: int = 10000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import numpy as np
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
                "SELECT items.id, items.file_id, files.path, files.path_bytes, files.kind, items.page, items.start,"
                " items.\"end\", items.text, files.media_type, files.width, files.height, files.taken_at, files.mtime_ns,"
                " items.time_s"
                f" FROM items JOIN files ON files.id = items.file_id WHERE items.id IN ({marks})",
                part,
            ):
                out[r[0]] = ItemRow(r[0], r[1], from_stored(r[2], r[3]), *r[4:])
        return out

    def keyword_search(self, query: str, limit: int) -> list[tuple[int, float]]:
        """The passages that hold the query's words, best first: (passage id, level + bm25 squashed);
        keyword.search says how."""
        return keyword.search(self.conn, query, limit)

    def files_containing(self, query: str, limit: int = 100_000) -> list[int]:
        """The files (ids) with a passage that holds all of the query's words, at most `limit` of them."""
        return keyword.files_containing(self.conn, query, limit)

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]:
        """Passages with their file's row, by id (ids gone since are left out)."""
        return {r[0]: PassageRow(r[0], r[1], from_stored(r[2], r[3]), *r[4:]) for r in keyword.passage_rows(self.conn, ids)}

    def item_at(self, file_id: int, page: int | None, position: int) -> int | None:
        """The item of a file that a place in its text belongs to (keyword.item_at)."""
        return keyword.item_at(self.conn, file_id, page, position)

    def file_ids_matching(self, *, kind: str | None = None, under: str | None = None, after: float | None = None,
                          before: float | None = None) -> list[int]:
        """Files as item_ids_matching narrows them (None leaves a condition out)."""
        where, params = self._file_conditions(kind, under, after, before)
        return [r[0] for r in self.conn.execute(f"SELECT files.id FROM files WHERE {where}", params)]

    def file_kinds(self, file_ids: Iterable[int]) -> dict[int, str]:
        return keyword.file_kinds(self.conn, list(file_ids))

    def item_ids_matching(self, *, kind: str | None = None, under: str | None = None, after: float | None = None,
                          before: float | None = None) -> list[int]:
        """Items of files of one kind ("image" | "document": a picture's words are its items too), of
        files under a folder, dated (files.time_s) at or after / before an instant in Unix seconds;
        None leaves a condition out."""
        where, params = self._file_conditions(kind, under, after, before)
        sql = f"SELECT items.id FROM items JOIN files ON files.id = items.file_id WHERE {where}"
        return [r[0] for r in self.conn.execute(sql, params)]

    @staticmethod
    def _file_conditions(kind: str | None, under: str | None, after: float | None,
                         before: float | None) -> tuple[str, list[Any]]:
        where, params = ["1"], []  # type: tuple[list[str], list[Any]]
        if kind is not None:
            where.append("files.kind = ?")
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
        return " AND ".join(where), params

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

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last `limit` index runs, newest first, each as last_run() gives it."""
        return [{"started_at": r[0], "finished_at": r[1], "status": r[2],
                 "summary": json.loads(r[3]) if r[3] else None, "pid": r[4]}
                for r in self.conn.execute(
                    "SELECT started_at, finished_at, status, summary, pid FROM runs ORDER BY id DESC LIMIT ?", (limit,))]

    def counts(self) -> dict[str, int]:
        out = {"image": 0, "document": 0, "video": 0, "chunks": 0, "frames": 0, "errors": 0}
        for kind, n in self.conn.execute("SELECT kind, count(*) FROM files WHERE status = 'indexed' GROUP BY kind"):
            out[kind] = n
        out["chunks"] = self.conn.execute("SELECT count(*) FROM items WHERE kind = 'document'").fetchone()[0]
        out["frames"] = self.conn.execute("SELECT count(*) FROM items WHERE kind = 'video'").fetchone()[0]
        # Files indexed in part so far (a run stopped in a video or a long document): what was committed
        # is searchable, and the next run goes on with them.
        in_part = dict(self.conn.execute("SELECT kind, count(*) FROM files WHERE status = 'indexing' GROUP BY kind"))
        out["videos_in_part"], out["documents_in_part"] = in_part.get("video", 0), in_part.get("document", 0)
        out["errors"] = self.conn.execute("SELECT count(*) FROM files WHERE status = 'error'").fetchone()[0]
        # OCR: the pictures whose words were found, and the files still to be read (by a run with OCR on).
        out["pictures_with_words"] = self.conn.execute("SELECT count(DISTINCT file_id) FROM items WHERE kind = ?",
                                              (OCR_KIND,)).fetchone()[0]
        out["words_to_read"] = self.conn.execute(
            "SELECT count(*) FROM files WHERE ocr_hash IS NULL AND status = 'indexed' AND content_hash IS NOT NULL"
            " AND (kind = 'image' OR media_type = 'application/pdf')").fetchone()[0]
        out["chunks_without_vectors"], out["documents_without_vectors"] = self.pending_counts()
        return out

    def shared_contents(self) -> list[list[DuplicateRow]]:
        """The indexed files whose content another indexed file has too, grouped by content hash."""
        groups: dict[str, list[DuplicateRow]] = {}
        for r in self.conn.execute(
            f"SELECT id, path, path_bytes, kind, size, width, height, content_hash, {_FIRST_ITEM} FROM files"
            " WHERE status = 'indexed' AND content_hash IN (SELECT content_hash FROM files WHERE status = 'indexed' AND content_hash IS NOT NULL"
            " GROUP BY content_hash HAVING count(*) > 1) ORDER BY content_hash, path"
        ):
            groups.setdefault(r[7], []).append(DuplicateRow(r[0], from_stored(r[1], r[2]), *r[3:9]))
        return list(groups.values())

    def picture_vectors(self) -> tuple[list[DuplicateRow], np.ndarray]:
        """One row and its vector per distinct picture content the index holds (the first file by path
        of each content stands for its copies)."""
        import numpy as np
        rows: list[DuplicateRow] = []
        vectors: list[np.ndarray] = []
        seen: set[str] = set()
        for r in self.conn.execute(
            "SELECT files.id, files.path, files.path_bytes, files.kind, files.size, files.width, files.height,"
            f" files.content_hash, {_FIRST_ITEM}, vectors.vector FROM files JOIN items ON items.file_id = files.id"
            " JOIN vectors ON vectors.item_id = items.id WHERE files.kind = 'image' AND files.status = 'indexed'"
            " ORDER BY files.path"
        ):
            if r[7] in seen:
                continue
            seen.add(r[7])
            rows.append(DuplicateRow(r[0], from_stored(r[1], r[2]), *r[3:9]))
            vectors.append(np.frombuffer(r[9], dtype=np.float32))
        return rows, (np.stack(vectors) if vectors else np.zeros((0, 0), np.float32))

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


# -- passages: the keyword index's units (passages.py), kept in step with the chunks they are cut from ----


def _follow_passages(conn: sqlite3.Connection, file_id: int, added: Sequence[tuple[int | None, Any, Any, Any]]) -> None:
    """After chunks were added to a file (in the caller's transaction): its passages as a cut of all of
    its chunks would give them. Per page touched, the passages from the first one the new chunks can
    change (the last one, or any reaching where they start) are cut again; a passage starts on a word
    counted from the page's first, so cutting from one gives what a cut of the whole page gives."""
    first: dict[int | None, int] = {}
    for page, start, _, text in added:
        if text is not None:
            first[page] = min(first.get(page, start), start)
    for page, new_start in first.items():
        tail = conn.execute('SELECT start, "end" FROM passages WHERE file_id = ? AND page IS ? ORDER BY start DESC LIMIT 8',
                            (file_id, page)).fetchall()
        if len(tail) == 8 and tail[-1][1] >= new_start:
            tail = conn.execute('SELECT start, "end" FROM passages WHERE file_id = ? AND page IS ? ORDER BY start DESC',
                                (file_id, page)).fetchall()
        if not tail:  # a page new to the index: its chunks are all in hand, none to read back
            _insert_page_passages(conn, file_id, sorted((c for c in added if c[0] == page and c[3] is not None),
                                                        key=lambda c: c[1]), None)
            continue
        redo = None
        for start, end in tail:  # passages' ends grow with their starts: those reaching new_start are the last
            if redo is None or end >= new_start:
                redo = start
            else:
                break
        _cut_passages(conn, file_id, page, redo)


_CHUNK_REACH = 1 << 16  # characters: more than any chunk of a text tower's context spans


def _cut_passages(conn: sqlite3.Connection, file_id: int, page: int | None, redo: int | None) -> None:
    """The passages of one page of a file from `redo` (a passage's start; None: the whole page) on."""
    base = ' FROM items WHERE file_id = ? AND page IS ? AND text IS NOT NULL'
    if redo is None:
        rows = conn.execute(f'SELECT page, start, "end", text{base} ORDER BY start', (file_id, page)).fetchall()
    else:
        conn.execute("DELETE FROM passages WHERE file_id = ? AND page IS ? AND start >= ?", (file_id, page, redo))
        # The chunks that reach `redo` or start after it (a chunk is far shorter than _CHUNK_REACH).
        rows = conn.execute(f'SELECT page, start, "end", text{base} AND start >= ? AND ("end" > ? OR start >= ?)'
                            " ORDER BY start", (file_id, page, redo - _CHUNK_REACH, redo, redo)).fetchall()
    _insert_page_passages(conn, file_id, rows, redo)


def _insert_page_passages(conn: sqlite3.Connection, file_id: int, chunks: Sequence[tuple[int | None, Any, Any, Any]],
                          redo: int | None) -> None:
    """The passages cut from chunks (page, start, end, text; in order of page and start), from `redo` on
    (a position in their page; None: all of them)."""
    for number, offset, text in passages.rebuild_pages(chunks):
        if redo is not None and redo > offset:
            text, offset = text[redo - offset :], redo
        _insert_passages(conn, file_id, passages.cut(number, offset, text))


def _insert_passages(conn: sqlite3.Connection, file_id: int, cut: Iterable[passages.Passage]) -> None:
    conn.executemany('INSERT INTO passages(file_id, page, start, "end", text) VALUES (?,?,?,?,?)',
                     ((file_id, p.page, p.start, p.end, p.text) for p in cut))


def _rebuild_passages(conn: sqlite3.Connection) -> None:
    """Every file's passages from its chunks' text (the migration to schema 6): one file at a time."""
    register_functions(conn)
    conn.execute("DELETE FROM passages")
    file_ids = [r[0] for r in conn.execute("SELECT DISTINCT file_id FROM items WHERE text IS NOT NULL ORDER BY file_id")]
    for file_id in file_ids:
        rows = conn.execute('SELECT page, start, "end", text FROM items WHERE file_id = ? AND text IS NOT NULL'
                            " ORDER BY page, start", (file_id,)).fetchall()
        _insert_page_passages(conn, file_id, rows, None)
