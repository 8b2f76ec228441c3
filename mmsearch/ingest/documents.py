"""The documents' steps on this machine. Words first: text extracted and the first chunks cut on worker
threads; each document is then one record whose chunks the commit writes as the rest are cut (one
transaction a document), searchable by their words at once. Vectors after: the vectors step encodes the
chunks still without one, in batches, each committed as it is made; a run stopped or killed in between
leaves the rest to the next run's vectors step."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..chunking import Chunk, iter_chunks
from ..filenames import display_path
from ..scanner import hash_file
from ..settings import DEFAULT_MAX_DOCUMENT_CHARS
from ..textfiles import DocumentError, Page, has_text_layer, iter_pages
from ..tokens import chunk_tokenizer, content_tokens
from .context import Run, Work
from .records import DOCUMENT_BATCH, Batch, ItemsFailed, Record, Task, Vectors
from .workers import ordered_map

# Text indexed per document by default, in characters: a book of 1,500 pages (MMSEARCH_MAX_DOCUMENT_CHARS
# or Index.index(max_document_chars=) change it). Past it, the file is indexed that far and the run's
# report (`partial`) and the file's row say so. Memory does not need the bound (a document streams); time
# and the vector index do: a 50 MB log file would be ~180,000 chunks, ten minutes of a ViT-B/32 text tower
# on two cores, and its vectors would crowd every query's candidates.
MAX_DOCUMENT_CHARS = DEFAULT_MAX_DOCUMENT_CHARS
BIG_DOCUMENT_CHARS = 1_000_000  # past this, a document's progress is told as its chunks are written
READ_AHEAD = 256  # chunks an extracting thread cuts ahead; the rest are cut as the document is written
WRITE_BATCH = 1024  # chunks written at a time (a document's transaction holds them all)


class _Capped:
    """A document's pages up to `limit` characters (None: all); `cut` tells whether text was left out."""

    def __init__(self, pages: Iterable[Page], limit: int | None):
        self.pages, self.limit = pages, limit
        self.total, self.cut = 0, False
        self.last_page: int | None = None
        self.scanned: list[int] = []  # PDF pages without a text layer, for the OCR phase

    def __iter__(self) -> Iterator[Page]:
        for page in self.pages:
            if page.drawn and page.number is not None and not has_text_layer(page.text):
                self.scanned.append(page.number)
            if self.limit is None:
                self.total += len(page.text)
                self.last_page = page.number
                yield page
                continue
            room = self.limit - self.total
            if room <= 0:
                self.cut = True
                return
            if len(page.text) > room:
                self.cut = True
                page = dataclasses.replace(page, text=page.text[:room])
            self.total += len(page.text)
            self.last_page = page.number
            yield page
            if self.cut:
                return

    def note(self, size: int) -> str:
        where = (f"pages 1 to {self.last_page}" if self.last_page is not None
                 else f"about the first {min(99, max(1, round(100 * self.total / max(size, 1))))}% of the file")
        return (f"only the first {self.total:,} characters of its text are indexed ({where}); mmsearch indexes at "
                f"most {self.limit or 0:,} characters of a document (MMSEARCH_MAX_DOCUMENT_CHARS)")


@dataclass
class Extracted:
    """A document as a worker left it: its record, and its chunks."""

    record: Record
    head: list[Chunk] = field(default_factory=list)  # chunks cut by the extracting thread
    rest: Iterator[Chunk] | None = None  # the rest, cut while the document is encoded
    capped: _Capped | None = None


def chunk_overlap(max_tokens: int) -> int:
    """Tokens consecutive chunks share: a fifth of a chunk."""
    return max_tokens // 5


def extract_one(task: Task, tokenizer: Any, max_tokens: int, digest: str | None = None,
                limit: int | None = MAX_DOCUMENT_CHARS) -> Extracted:
    """`digest`: the file's content hash where the caller has it already (else it is hashed here);
    `limit`: the characters of its text indexed at most (None: all)."""
    out = Extracted(Record.of(task))
    r = out.record
    try:
        r.digest = digest or hash_file(r.path)
        if r.digest is None:
            raise FileNotFoundError(r.path) if not os.path.exists(r.path) else PermissionError(r.path)
        if r.unchanged_content:
            r.status = "touched"
            return out
        out.capped = _Capped(iter_pages(Path(r.path), max_chars=limit), limit)
        chunks = iter_chunks(out.capped, tokenizer, max_tokens=max_tokens, overlap_tokens=chunk_overlap(max_tokens))
        out.head = list(itertools.islice(chunks, READ_AHEAD))
        out.rest = chunks if len(out.head) == READ_AHEAD else None
        if not out.head and not out.capped.scanned:
            r.status, r.error = "error", "no text found"  # (a scan's pages are read by the words step)
    except (DocumentError, OSError, MemoryError) as e:
        r.status, r.error = "error", reason(e, r.path)
    return out


def reason(e: BaseException, path: str) -> str:
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


def batches(run: Run, work: Work) -> Generator[Batch, None, None]:
    """The documents of the plan, one record each: the commit encodes its chunks as it writes them."""
    if not work.documents:
        return
    bundle = run.bundle or run.encoders.text.bundle  # words first: no text tower needed to cut chunks
    max_tokens = content_tokens(bundle)
    tokenizer = chunk_tokenizer(bundle)
    # A core is left to this thread, which commits every chunk and passage as the extract threads
    # read: on 2 cores, 1 extract thread took 6% less CPU and 4% less time than 2 (the real corpus,
    # benchmarks.documents; reading and chunking hold the GIL more than they release it).
    workers = run.workers or max(1, min(8, os.cpu_count() or 1) - 1)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmsearch-extract")
    try:
        fn = lambda t: extract_one(t, tokenizer, max_tokens, limit=run.max_document_chars)  # noqa: E731
        for ext in ordered_map(pool, fn, work.documents, window=workers * 2, cancelled=run.cancelled):
            yield [with_stream(run, ext)]
            run.tick(ext.record.path)
            if run.cancelled():
                break
    finally:
        pool.shutdown(wait=not run.cancelled(), cancel_futures=True)


def with_stream(run: Run, ext: Extracted) -> Record:
    """The document's record, its items to be encoded as the commit writes them; its note (cut at the
    limit) and its scanned pages are known once they are."""
    r = ext.record
    if r.status == "indexed" and ext.capped is not None:
        r.scanned = ext.capped.scanned
        r.stream = _chunked(run, ext)
    return r


def _chunked(run: Run, ext: Extracted) -> Iterator[list[tuple[int | None, int, int, str]]]:
    chunks = itertools.chain(ext.head, ext.rest or ())
    last: Chunk | None = None
    try:
        while batch := list(itertools.islice(chunks, WRITE_BATCH)):
            if run.cancelled():
                # Keep what was read (a big file's minutes of work): it commits, and the next run reads
                # the file again whole.
                ext.record.unfinished, ext.record.note = True, _stopped_note(last)
                return
            yield [(c.page, c.start, c.end, c.text) for c in batch]
            last = batch[-1]
            if ext.capped is not None and ext.capped.total >= BIG_DOCUMENT_CHARS:
                run.within(ext.record.path, ext.capped.total)
    except (DocumentError, OSError, MemoryError) as e:  # a page or segment further on
        raise ItemsFailed(reason(e, ext.record.path)) from None
    capped = ext.capped
    if capped is not None and capped.cut:
        ext.record.note = capped.note(ext.record.size)


def _stopped_note(last: Chunk | None) -> str:
    """The note on a document whose reading a cancel stopped after the chunk `last` (None: before any)."""
    if last is None:
        read = "none of its text was read"
    elif last.page is not None:
        read = f"its text up to page {last.page} is searchable"
    else:
        read = f"its first {last.end:,} characters are searchable"
    return f"the run was stopped while it read this file: {read}; the next `mmsearch index` reads it whole"


def vector_batches(run: Run, work: Work) -> Generator[Batch, None, None]:
    """The vectors of every chunk still without one, whatever run wrote it (a stopped or killed run's
    too), DOCUMENT_BATCH texts at a time, each batch committed before the next is encoded. Chunks of the
    same text are encoded once: a copy of a file, a version of a document (chunks end at paragraph
    breaks, so an edit leaves the others' text as it was), a header repeated on every page; the text
    tower is nearly all of this step's time."""
    pending = run.catalog.pending_vectors()
    if not pending:
        return
    run.begin("computing vectors", len(pending))  # counted in chunks
    by_text: dict[str, list[int]] = {}
    for item_id, t in pending:
        by_text.setdefault(t, []).append(item_id)
    texts = list(by_text)
    text = run.encoders.text
    for lo in range(0, len(texts), DOCUMENT_BATCH):
        if run.cancelled():
            return
        part = texts[lo : lo + DOCUMENT_BATCH]
        run.observe("encode")
        vectors = text.encode(part)
        ids = [item_id for t in part for item_id in by_text[t]]
        yield [Vectors(ids, np.repeat(vectors, [len(by_text[t]) for t in part], axis=0))]
        run.advance(len(ids))
