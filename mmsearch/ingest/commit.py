"""The one place a run writes the index: a batch of records (images, documents, shards' rows, the words
read in pictures and scanned pages, documents' vectors computed after their words) in one transaction,
then the graph in memory follows the catalog.

A record is written only where the catalog still holds its file as it was planned: a shard committed
twice, a stale one, or a file planned under two nested roots changes nothing the second time. The
report counts what a batch did only once its transaction has committed."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ..catalog import OCR_KIND, FileRow
from ..filenames import display_path
from ..media import media_type
from .context import Run
from .records import Batch, ItemsFailed, Record, Vectors, Words
from .report import IndexReport

# A transaction's vectors kept in memory for the graph; past that (a long document) they are read back
# from the catalog a batch at a time once it commits.
KEEP_VECTORS = 4096


def commit(run: Run, records: Batch) -> None:
    """Write the records in one transaction (the observer sees "commit" inside it, before it commits),
    then apply what it added and removed to the graph. A record whose items fail part-way (a document's
    page further on) is written as a file in error instead, the batch again from the start; a document
    whose reading a cancel stopped (Record.unfinished) is written as far as it was read."""
    while True:
        try:
            done = _write(run, records)
        except _Failed as e:
            e.record.status, e.record.error, e.record.stream = "error", e.reason, None
            e.record.vectors, e.record.chunks, e.record.note = None, [], None
            continue
        break
    counted, removed, ids, kept = done
    run.report.add(counted)
    run.vectors.remove(removed)
    if kept is not None:
        _add(run, ids, kept)
    else:  # too many to keep: back from the catalog
        for batch_ids, batch_vectors in run.catalog.vectors_for(ids):
            _add(run, batch_ids.tolist(), batch_vectors)


def _add(run: Run, ids: list[int], vectors: np.ndarray | None) -> None:
    if ids and vectors is not None:
        run.vectors.add(np.asarray(ids, np.int64), vectors)


class _Failed(Exception):
    def __init__(self, record: Record, reason: str):
        self.record, self.reason = record, reason


@dataclass
class _Transaction:
    counted: IndexReport = field(default_factory=IndexReport)
    removed: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    kept: list[np.ndarray] = field(default_factory=list)

    def added(self, ids: list[int], vectors: np.ndarray, encoded: bool) -> None:
        self.ids += ids
        if len(self.ids) <= KEEP_VECTORS:
            self.kept.append(vectors)
        if encoded:
            self.counted.encoded_items += len(ids)


def _write(run: Run, records: Batch) -> tuple[IndexReport, list[int], list[int], np.ndarray | None]:
    t = _Transaction()
    files = [r for r in records if isinstance(r, Record)]
    with run.catalog.write() as conn:
        current = run.catalog.files_by_path([r.path for r in files]) if files else {}
        roots = {rid for rid, _ in run.catalog.roots()} if files else set()
        for r in records:
            if isinstance(r, Words):
                _write_words(run, conn, r, t)
            elif isinstance(r, Vectors):
                written = run.catalog.add_vectors(conn, r.item_ids, r.vectors)
                at = {item_id: i for i, item_id in enumerate(r.item_ids)}
                if written:
                    t.added(written, r.vectors[[at[i] for i in written]], True)
            else:
                r.committed = r.root_id in roots and _as_planned(current.get(r.path), r.planned)
                if r.committed:  # else committed already, or the catalog moved on: the next scan judges the file
                    _write_file(run, conn, r, current.get(r.path), t)
        run.observe("commit")
    kept = np.concatenate(t.kept) if t.kept and len(t.ids) <= KEEP_VECTORS else None
    return t.counted, t.removed, t.ids, kept


def _as_planned(row: FileRow | None, planned: tuple[int, int, str | None, str] | None) -> bool:
    if planned is None:
        return row is None
    return row is not None and (row.size, row.mtime_ns, row.content_hash, row.status) == planned


def _write_file(run: Run, conn: sqlite3.Connection, r: Record, row: FileRow | None, t: _Transaction) -> None:
    catalog = run.catalog
    copied = False
    if r.status == "copy":
        # Content the index holds already: its items are copied, not encoded again. Gone since (deleted by
        # this run): left out, so the next run indexes the file.
        source = catalog.content_source(r.digest or "")
        if source is None or source.kind != r.kind:
            r.committed = False
            return
        r.width, r.height, r.orientation, r.taken_at = source.width, source.height, source.orientation, source.taken_at
        r.vectors, r.note, r.status = source.vectors, source.note, "indexed"
        r.chunks = [c for c in source.chunks if c[3] is not None]  # type: ignore[misc]
        copied = True
    if r.status == "touched":
        assert row is not None
        catalog.touch_file(conn, row.id, r.size, r.mtime_ns, r.ctime_ns)
        t.counted.unchanged += 1
        return
    if r.status == "error":
        assert r.error is not None
        _, gone = catalog.put_file(conn, path=r.path, root_id=r.root_id, size=r.size, mtime_ns=r.mtime_ns,
                                   content_hash=r.digest, kind=r.kind, media_type=media_type(r.path), status="error",
                                   error=r.error, ctime_ns=r.ctime_ns)
        t.removed += gone
        t.counted.error(r.path, r.error)
        return
    if r.kind == "video":
        _write_video_part(run, conn, r, row, t)
        return
    fields: dict[str, Any] = {}
    if r.kind == "image":
        fields = dict(width=r.width, height=r.height, orientation=r.orientation,
                      taken_at=datetime.fromisoformat(r.taken_at) if r.taken_at else None)
    file_id, gone = catalog.put_file(conn, path=r.path, root_id=r.root_id, size=r.size, mtime_ns=r.mtime_ns,
                                     content_hash=r.digest, kind=r.kind, media_type=media_type(r.path),
                                     ctime_ns=r.ctime_ns, **fields)
    t.removed += gone
    if r.vectors is not None:
        t.added(catalog.add_items(conn, file_id, r.kind, r.vectors, r.chunks if r.kind == "document" else None),
                r.vectors, not copied)
    if r.stream is not None:  # a document's words now, its vectors in the vectors step
        try:
            for chunks in r.stream:
                catalog.add_chunks(conn, file_id, chunks)
        except ItemsFailed as e:
            raise _Failed(r, str(e)) from None
    if r.unfinished:
        catalog.mark_unfinished(conn, file_id)
    note = r.note
    if note:
        catalog.set_file_note(conn, file_id, note)
    if r.kind == "document" and r.scanned is not None and r.digest:
        note = _settle_scanned_pages(run, conn, file_id, r.digest, r.scanned) or note
    if r.no_words and r.digest:  # looked at as it was decoded: its words are read, and there are none
        catalog.set_ocr_done(conn, file_id, r.digest)
        t.counted.ocr_read += 1
    if note:
        t.counted.partial.append({"path": display_path(r.path), "reason": note})
    if row is None:
        t.counted.added += 1
    else:
        t.counted.updated += 1


def _write_video_part(run: Run, conn: sqlite3.Connection, r: Record, row: FileRow | None, t: _Transaction) -> None:
    """A part of a video: the first replaces the file's row (status 'indexing' until the last part
    commits), each one after adds its frames to it and moves how far they go."""
    catalog = run.catalog
    if r.resumes:
        assert row is not None
        file_id = row.id
        catalog.touch_file(conn, file_id, r.size, r.mtime_ns, r.ctime_ns)
        catalog.set_video_progress(conn, file_id, r.done_s)
    else:
        file_id, gone = catalog.put_file(
            conn, path=r.path, root_id=r.root_id, size=r.size, mtime_ns=r.mtime_ns, content_hash=r.digest,
            kind="video", media_type=media_type(r.path), ctime_ns=r.ctime_ns, width=r.width, height=r.height,
            taken_at=datetime.fromisoformat(r.taken_at) if r.taken_at else None, duration_s=r.duration_s,
            status="indexed" if r.done_s is None else "indexing", done_s=r.done_s)
        t.removed += gone
    if r.vectors is not None and len(r.vectors):
        t.added(catalog.add_items(conn, file_id, "video", r.vectors, times=r.times), r.vectors, True)
    if r.done_s is None:  # the last part: the video is whole
        if r.new_file:
            t.counted.added += 1
        else:
            t.counted.updated += 1


def _settle_scanned_pages(run: Run, conn: sqlite3.Connection, file_id: int, digest: str,
                          scanned: list[int]) -> str | None:
    """What a document's pages without a text layer leave to the words step. None: the document is marked
    read (nothing for the step). Else, with OCR off, a note that says so, set on the file and returned;
    with OCR on, the words step reads them after the commits."""
    if not scanned:
        run.catalog.set_ocr_done(conn, file_id, digest)
        return None
    ocr_off = run.encoders.ocr_off
    if ocr_off is None:
        return None
    note = f"{_page_list(scanned)} no text layer (scanned): their words were not read ({ocr_off})"
    run.catalog.set_file_note(conn, file_id, note)
    return note


def _page_list(numbers: Sequence[int]) -> str:
    """'page 3 has', 'pages 1-4, 9 have'."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
    return f"page {text} has" if len(numbers) == 1 else f"pages {text} have"


def _write_words(run: Run, conn: sqlite3.Connection, w: Words, t: _Transaction) -> None:
    catalog = run.catalog
    if w.text:
        catalog.add_text_items(conn, w.file_id, OCR_KIND, [(None, w.text)])
    if w.chunks and w.vectors is not None:
        t.added(catalog.add_items(conn, w.file_id, "document", w.vectors, w.chunks), w.vectors, True)
    if w.done:
        catalog.set_ocr_done(conn, w.file_id, w.content_hash)
        if w.kind == "document":
            catalog.set_file_note(conn, w.file_id, None)  # the note that said its pages were not read
    if w.counted:
        t.counted.ocr_read += 1
        t.counted.ocr_with_words += bool(w.text or w.chunks)
    t.counted.partial += [{"path": display_path(w.path), "reason": p} for p in w.problems]
