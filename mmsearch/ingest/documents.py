"""Documents: text extracted and the first chunks cut on worker threads; each document then encoded
batch by batch as the rest of its chunks are cut, and committed in one transaction."""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..catalog import Catalog, FileRow
from ..chunking import Chunk, iter_chunks
from ..filenames import display_path
from ..scanner import FoundFile, hash_file
from ..textfiles import DocumentError, Page, has_text_layer, iter_pages
from ..vectors import VectorStore
from .commit import Prepared, apply_to_vectors, write_file
from .report import IndexReport, Observer
from .workers import ordered_map

if TYPE_CHECKING:
    from .run import Encoders

# Text indexed per document, in characters: a book of 1,500 pages; past it, the file is indexed that
# far and the run's report (`partial`) and the file's row say so. Memory does not need the bound (a
# document streams); time and the vector index do: a 50 MB log file would be ~180,000 chunks, ten
# minutes of a ViT-B/32 text tower on two cores, and its vectors would crowd every query's candidates.
MAX_DOCUMENT_CHARS = 4_000_000
DOCUMENT_BATCH = 64  # chunks per text-encoder call: a Ctrl-C waits for at most one
READ_AHEAD = 256  # chunks an extracting thread cuts ahead; the rest are cut as the document is encoded
KEEP_VECTORS = 4096  # a document's vectors kept for the graph; past that, read back from the catalog


class _Capped:
    """A document's pages up to MAX_DOCUMENT_CHARS characters; `cut` tells whether text was left out."""

    def __init__(self, pages: Iterable[Page], limit: int):
        self.pages, self.limit = pages, limit
        self.total, self.cut = 0, False
        self.last_page: int | None = None
        self.scanned: list[int] = []  # PDF pages without a text layer, for the OCR phase

    def __iter__(self) -> Iterator[Page]:
        for page in self.pages:
            if page.number is not None and not has_text_layer(page.text):
                self.scanned.append(page.number)
            room = self.limit - self.total
            if room <= 0:
                self.cut = True
                return
            if len(page.text) > room:
                self.cut = True
                page = Page(page.number, page.text[:room], page.offset)
            self.total += len(page.text)
            self.last_page = page.number
            yield page
            if self.cut:
                return

    def note(self, size: int) -> str:
        where = (f"pages 1 to {self.last_page}" if self.last_page is not None
                 else f"about the first {min(99, max(1, round(100 * self.total / max(size, 1))))}% of the file")
        return (f"only the first {self.total:,} characters of its text are indexed ({where}); mmsearch indexes at "
                f"most {self.limit:,} characters of a document")


@dataclass
class Extracted(Prepared):
    head: list[Chunk] = field(default_factory=list)  # chunks cut by the extracting thread
    rest: Iterator[Chunk] | None = None  # the rest, cut while the document is encoded
    capped: _Capped | None = None


def extract_one(task: tuple[int, FoundFile, FileRow | None], tokenizer: Any, max_tokens: int,
                digest: str | None = None) -> Extracted:
    """`digest`: the file's content hash where the caller has it already (else it is hashed here)."""
    root_id, found, old = task
    out = Extracted(root_id, found, old)
    try:
        out.digest = digest or hash_file(found.path)
        if out.digest is None:
            raise FileNotFoundError(found.path) if not os.path.exists(found.path) else PermissionError(found.path)
        if old is not None and old.content_hash == out.digest and old.status == "indexed":
            out.unchanged_content = True
            return out
        out.capped = _Capped(iter_pages(Path(found.path)), MAX_DOCUMENT_CHARS)
        chunks = iter_chunks(out.capped, tokenizer, max_tokens=max_tokens, overlap_tokens=max_tokens // 5)
        out.head = list(itertools.islice(chunks, READ_AHEAD))
        out.rest = chunks if len(out.head) == READ_AHEAD else None
        if not out.head and not out.capped.scanned:
            out.error = "no text found"  # (a scan's pages are read by the OCR phase)
    except (DocumentError, OSError, MemoryError) as e:
        out.error = _reason(e, found.path)
    return out


def _reason(e: BaseException, path: str) -> str:
    """Why a document could not be read, for the report and the file's row."""
    if isinstance(e, DocumentError):
        return _strip_path(str(e), path)
    if isinstance(e, FileNotFoundError):
        return "vanished before it could be read"
    if isinstance(e, PermissionError):
        return "cannot read (permission denied)"
    if isinstance(e, OSError):
        return f"cannot read ({e.strerror or e})"
    return "not enough memory to read"


def _strip_path(message: str, path: str) -> str:
    """DocumentError names the file; the report already does, so keep just the reason."""
    for prefix in (f"{path}: ", f"{display_path(path)}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def index_documents(catalog: Catalog, vectors: VectorStore, encoders: Encoders,
                    tasks: list[tuple[int, FoundFile, FileRow | None]], report: IndexReport,
                    tick: Callable[[str], None], cancelled: Callable[[], bool], observe: Observer, workers: int) -> None:
    from ..encoder import chunk_tokenizer, content_tokens

    text = encoders.text
    max_tokens = content_tokens(text.bundle)
    tokenizer = chunk_tokenizer(text.bundle)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmsearch-extract")
    try:
        fn = lambda t: extract_one(t, tokenizer, max_tokens)  # noqa: E731
        for ext in ordered_map(pool, fn, tasks, window=workers * 2, cancelled=cancelled):
            commit_document(catalog, vectors, encoders, ext, report, cancelled, observe)
            tick(ext.found.path)
            if cancelled():
                break
    finally:
        pool.shutdown(wait=not cancelled(), cancel_futures=True)


class _Cancelled(Exception):
    pass


def commit_document(catalog: Catalog, vectors: VectorStore, encoders: Encoders, ext: Extracted,
                    report: IndexReport, cancelled: Callable[[], bool], observe: Observer) -> None:
    """One document in one transaction, encoded batch by batch as its chunks are cut: a cancel (seen
    between batches) or a crash leaves the previous state, and the next run does the document whole."""
    if ext.error is None and not ext.unchanged_content:
        try:
            gone, ids, kept, note = _write_document(catalog, encoders, ext, report, cancelled, observe)
        except _Cancelled:
            return
        except (DocumentError, OSError, MemoryError) as e:  # a page or segment further on
            ext.error = _reason(e, ext.found.path)
        else:
            if kept is not None or not ids:
                apply_to_vectors(vectors, gone, ids, kept, report)
            else:  # a long document: its vectors come back from the catalog a batch at a time
                apply_to_vectors(vectors, gone, [], None, report)
                for batch_ids, batch_vectors in catalog.vectors_for(ids):
                    apply_to_vectors(vectors, [], batch_ids.tolist(), batch_vectors, report)
            if note:
                report.partial.append({"path": display_path(ext.found.path), "reason": note})
            return
    with catalog.write() as conn:  # touched only, or in error
        _, gone = write_file(catalog, conn, ext, report)
        observe("commit")
    apply_to_vectors(vectors, gone, [], None, report)


def _write_document(catalog: Catalog, encoders: Encoders, ext: Extracted, report: IndexReport,
                    cancelled: Callable[[], bool], observe: Observer
                    ) -> tuple[list[int], list[int], np.ndarray | None, str | None]:
    """(item ids removed, item ids added, their vectors or None when too many to keep, the partial note).
    The report counts the file only once the transaction commits."""
    ids: list[int] = []
    kept: list[np.ndarray] = []
    note = None
    chunks = itertools.chain(ext.head, ext.rest or ())
    counted = IndexReport()
    with catalog.write() as conn:
        file_id, gone = write_file(catalog, conn, ext, counted)
        assert file_id is not None
        while batch := list(itertools.islice(chunks, DOCUMENT_BATCH)):
            if cancelled():
                raise _Cancelled
            observe("encode")
            embeds = encoders.text.encode([c.text for c in batch])
            ids += catalog.add_items(conn, file_id, "document", embeds, [(c.page, c.start, c.end, c.text) for c in batch])
            if len(ids) <= KEEP_VECTORS:
                kept.append(embeds)
        if ext.capped is not None and ext.capped.cut:
            note = ext.capped.note(ext.found.size)
            catalog.set_file_note(conn, file_id, note)
        if ext.capped is not None:
            assert ext.digest is not None
            note = settle_scanned_pages(catalog, conn, file_id, ext.digest, ext.capped.scanned, encoders.ocr_off) or note
        observe("commit")
    report.added += counted.added
    report.updated += counted.updated
    return gone, ids, np.concatenate(kept) if kept and len(ids) <= KEEP_VECTORS else None, note


def settle_scanned_pages(catalog: Catalog, conn: sqlite3.Connection, file_id: int, digest: str,
                         scanned: list[int], ocr_off: str | None) -> str | None:
    """In the transaction that commits a document: what its pages without a text layer leave to the
    OCR phase. None: the document is marked read (nothing for the phase). Else, with OCR off, a note
    that says so, set on the file and returned; with OCR on, the phase reads them after the commits."""
    if not scanned:
        catalog.set_ocr_done(conn, file_id, digest)
        return None
    if ocr_off is None:
        return None
    note = f"{_page_list(scanned)} no text layer (scanned): their words were not read ({ocr_off})"
    catalog.set_file_note(conn, file_id, note)
    return note


def _page_list(numbers: list[int]) -> str:
    """'page 3 has', 'pages 1-4, 9 have'."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
    return f"page {text} has" if len(numbers) == 1 else f"pages {text} have"
