"""The OCR phase: after the images and documents are committed (and the vector files saved, so every
picture is searchable by meaning first), the words in pictures and in the pages of PDFs that have no
text layer are read and committed.

Pictures: worker threads read and hash each file (it must still be the content the catalog holds),
decode it small and glance at it (ocr.TextReader.glance); a picture where the glance finds boxes is
decoded at reading size and the boxes recognised (glance_reads_words); only one where they read as
words, or a flat one (a screenshot, a scan), is read in full, on this thread. Batches of pictures are
committed in one transaction each: the words as an item of the picture (kind 'ocr', no vector) and the file
marked read (files.ocr_hash), so a crash or a cancel loses at most the batch in hand, and a picture
read once is not read again until it changes.

Scanned pages: each page without a text layer is rendered (pypdfium2), read, and its text cut into
chunks for the text tower like any page; each page is committed on its own, the file marked read
with its last page. A run that resumes a document reads the pages that have no chunks yet.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..catalog import OCR_KIND, Catalog, OcrTodo
from ..filenames import display_path
from ..scanner import hash_bytes, hash_file
from ..vectors import VectorStore
from .commit import apply_to_vectors
from .report import IndexReport, Observer, Progress, ProgressFn
from .workers import ordered_map

if TYPE_CHECKING:
    from ..ocr import TextReader
    from .run import Encoders

PHASE = "reading text"  # the Progress phase the CLI's bar shows
COMMIT_PICTURES = 32  # pictures per transaction...
COMMIT_SECONDS = 5.0  # ...or fewer, when reading them takes longer than this


@dataclass
class _Picture:
    todo: OcrTodo
    pixels: np.ndarray | None = None  # at reading size, where the glance saw something
    text: str = ""
    left: str | None = None  # why it stays to be read by a later run (it vanished or changed)
    unreadable: str | None = None  # why it cannot be decoded now: read as having no words


def read_words(catalog: Catalog, vectors: VectorStore, encoders: Encoders, todos: list[OcrTodo],
               report: IndexReport, progress: ProgressFn, cancelled: Callable[[], bool], observe: Observer,
               workers: int | None) -> None:
    from .. import ocr

    total = len(todos)
    done = [0]
    finished = [0]  # files whose words are now read and committed

    def tick(path: str) -> None:
        done[0] += 1
        progress(Progress(PHASE, done[0], total, path))

    progress(Progress(PHASE, 0, total))
    observe("ocr")
    reader = encoders.ocr
    report.ocr_device = reader.device
    pictures = [t for t in todos if t.kind == "image"]
    pdfs = [t for t in todos if t.kind != "image"]
    threads = workers or max(1, min(8, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mmsearch-ocr")
    batch: list[_Picture] = []
    since = time.monotonic()
    try:
        for pic in ordered_map(pool, lambda t: _prepare(t, reader), pictures, window=threads * 4, cancelled=cancelled):
            if pic.pixels is not None:
                observe("ocr")
                try:
                    pic.text = ocr.joined(reader.read(pic.pixels, cancelled=cancelled))
                except ocr.Cancelled:
                    break  # this picture is read again by the next run
                pic.pixels = None
            batch.append(pic)
            tick(pic.todo.path)
            if len(batch) >= COMMIT_PICTURES or time.monotonic() - since >= COMMIT_SECONDS:
                finished[0] += _commit_pictures(catalog, batch, report, observe)
                batch, since = [], time.monotonic()
            if cancelled():
                break
        if batch:
            finished[0] += _commit_pictures(catalog, batch, report, observe)
    finally:
        pool.shutdown(wait=not cancelled(), cancel_futures=True)
    for todo in pdfs:
        if cancelled():
            break
        finished[0] += _read_scanned_pages(catalog, vectors, encoders, reader, todo, report, cancelled, observe)
        tick(todo.path)
    report.ocr_left = total - finished[0]


def _prepare(todo: OcrTodo, reader: TextReader) -> _Picture:
    """On a worker thread: the picture's bytes, checked against the catalog, glanced at, and decoded
    at reading size where the glance sees something; kept for the full read where one of the glance's
    boxes reads as words (or the picture is flat)."""
    from .. import ocr
    from ..preprocess import ImageDecodeError

    out = _Picture(todo)
    try:
        with open(todo.path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        out.left = "vanished"
        return out
    except OSError as e:
        out.left = f"cannot read ({e.strerror or e})"
        return out
    if hash_bytes(data) != todo.content_hash:
        out.left = "changed since it was indexed"  # the next run's scan indexes it again
        return out
    try:
        jpeg = data[:3] == b"\xff\xd8\xff"
        pixels = None if jpeg else ocr.decode(data, ocr.READ_SIDE)
        # A JPEG decodes small at a fraction of the cost: most pictures without words stop at the glance.
        small = ocr.decode(data, ocr.GATE_SIDE) if pixels is None else ocr.shrunk(pixels, ocr.GATE_SIDE)
        boxes = reader.glance(small)
        if boxes is not None and not len(boxes):
            return out
        if pixels is None:
            pixels = ocr.decode(data, ocr.READ_SIDE)
        if boxes is None or reader.glance_reads_words(pixels, small, boxes):
            out.pixels = pixels
    except ImageDecodeError as e:
        out.unreadable = str(e)
    except MemoryError:
        out.unreadable = "not enough memory to decode"
    return out


def _commit_pictures(catalog: Catalog, batch: list[_Picture], report: IndexReport, observe: Observer) -> int:
    """One transaction for the batch; returns how many pictures it marked read."""
    read = found = 0
    with catalog.write() as conn:
        for pic in batch:
            if pic.left is not None:
                continue
            if pic.text:
                catalog.add_text_items(conn, pic.todo.file_id, OCR_KIND, [(None, pic.text)])
                found += 1
            catalog.set_ocr_done(conn, pic.todo.file_id, pic.todo.content_hash)
            read += 1
        observe("commit")
    report.ocr_read += read
    report.ocr_with_words += found
    for pic in batch:
        if pic.unreadable is not None:
            report.partial.append({"path": display_path(pic.todo.path), "reason": f"its words could not be read "
                                   f"({pic.unreadable})"})
    return read


def _read_scanned_pages(catalog: Catalog, vectors: VectorStore, encoders: Encoders, reader: TextReader,
                        todo: OcrTodo, report: IndexReport, cancelled: Callable[[], bool], observe: Observer) -> int:
    """A PDF's pages without a text layer, one transaction per page (a long scan keeps what was read
    when it is stopped), chunked and encoded by the text tower like the document's other pages.
    Returns 1 when the document is finished, else 0 (stopped, or changed since it was indexed)."""
    from .. import ocr
    from ..chunking import iter_chunks
    from ..encoder import chunk_tokenizer, content_tokens
    from ..textfiles import DocumentError, Page, render_page, scanned_pages
    from .documents import DOCUMENT_BATCH

    if hash_file(todo.path) != todo.content_hash:
        return 0  # vanished or changed: the next run's scan indexes it again
    try:
        pages = scanned_pages(Path(todo.path))
    except DocumentError as e:
        report.partial.append({"path": display_path(todo.path), "reason": f"its scanned pages could not be read ({e})"})
        pages = []
    done = catalog.pages_with_items(todo.file_id)
    left = [n for n in pages if n not in done]
    tokenizer: Any = None
    max_tokens = 0
    if left:
        max_tokens = content_tokens(encoders.text.bundle)
        tokenizer = chunk_tokenizer(encoders.text.bundle)
    for i, number in enumerate(left):
        if cancelled():
            return 0
        observe("ocr")
        try:
            # A page: read whole, no glance (its print is small, see ocr.GATE_SIDE).
            page = np.asarray(render_page(Path(todo.path), number, ocr.READ_SIDE))
            words = ocr.joined(reader.read(page, cancelled=cancelled))
        except ocr.Cancelled:
            return 0
        except (DocumentError, MemoryError) as e:
            report.partial.append({"path": display_path(todo.path), "reason": f"page {number} could not be read ({e})"})
            words = ""
        chunks = list(iter_chunks([Page(number, words)], tokenizer, max_tokens=max_tokens,
                                  overlap_tokens=max_tokens // 5))
        embeds = [encoders.text.encode([c.text for c in chunks[lo : lo + DOCUMENT_BATCH]])
                  for lo in range(0, len(chunks), DOCUMENT_BATCH)]
        ids: list[int] = []
        last = i == len(left) - 1
        with catalog.write() as conn:
            if chunks:
                ids = catalog.add_items(conn, todo.file_id, "document", np.concatenate(embeds),
                                        [(c.page, c.start, c.end, c.text) for c in chunks])
            if last:
                _finish(catalog, conn, todo)
            observe("commit")
        apply_to_vectors(vectors, [], ids, np.concatenate(embeds) if embeds else None, report)
        report.ocr_read += 1
        report.ocr_with_words += bool(chunks)
    if not left:
        with catalog.write() as conn:
            _finish(catalog, conn, todo)
            observe("commit")
    return 1


def _finish(catalog: Catalog, conn: sqlite3.Connection, todo: OcrTodo) -> None:
    """The document's scanned pages are read: marked so, and the note that said they were not goes."""
    catalog.set_ocr_done(conn, todo.file_id, todo.content_hash)
    catalog.set_file_note(conn, todo.file_id, None)
