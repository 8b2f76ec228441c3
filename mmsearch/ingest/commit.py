"""Writing what a worker made of a file: its row (touched, in error, or indexed) and, after the
transaction, the vectors it added or removed in the graph. Images and documents both come here."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog import Catalog, FileRow
from ..media import media_type
from ..scanner import FoundFile
from ..vectors import VectorStore
from .report import IndexReport


@dataclass
class Prepared:
    """One file as a worker thread left it, before its commit."""

    root_id: int
    found: FoundFile
    old: FileRow | None  # its row, where the file was indexed (or tried) before
    digest: str | None = None  # sha256 of its bytes, where they could be read
    error: str | None = None  # why it cannot be indexed
    unchanged_content: bool = False  # touched, not changed: its vectors stay


def write_file(catalog: Catalog, conn: sqlite3.Connection, item: Prepared, report: IndexReport,
               **fields: Any) -> tuple[int | None, list[int]]:
    """One file's row, in the caller's transaction. Returns the id of a row now indexed (the caller adds
    its items), else None, and the ids of the items the file had and lost. `fields`: what the kind knows
    of the file (width, height, capture time...)."""
    f = item.found
    if item.unchanged_content:
        assert item.old is not None
        catalog.touch_file(conn, item.old.id, f.size, f.mtime_ns)
        report.unchanged += 1
        return None, []
    if item.error is not None:
        _, gone = catalog.put_file(conn, path=f.path, root_id=item.root_id, size=f.size, mtime_ns=f.mtime_ns,
                                   content_hash=item.digest, kind=f.kind, media_type=media_type(f.path),
                                   status="error", error=item.error)
        report.error(f.path, item.error)
        return None, gone
    file_id, gone = catalog.put_file(conn, path=f.path, root_id=item.root_id, size=f.size, mtime_ns=f.mtime_ns,
                                     content_hash=item.digest, kind=f.kind, media_type=media_type(f.path), **fields)
    if item.old is None:
        report.added += 1
    else:
        report.updated += 1
    return file_id, gone


def apply_to_vectors(vectors: VectorStore, removed: list[int], ids: list[int], vecs: np.ndarray | None,
                     report: IndexReport) -> None:
    """After a commit: the graph follows the catalog (which restores it after a crash)."""
    vectors.remove(removed)
    if ids and vecs is not None:
        vectors.add(np.asarray(ids, np.int64), vecs)
        report.encoded_items += len(ids)
