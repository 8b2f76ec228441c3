"""The words step: after the images and documents are committed (and the vector files saved, so every
picture is searchable by meaning first), the words in pictures and in the pages of PDFs that have no
text layer are read, and committed as Words records.

Pictures: worker threads read and hash each file (it must still be the content the catalog holds),
decode it as the images step does and glance at it (ocr.TextReader.worth_reading: the glance, and where
it finds boxes, their recognition: texture reads as nothing); only a picture where they read as words,
or a flat one (a screenshot, a scan), is decoded at reading size and read in full, on this thread. A
picture the images step of this run glanced at already and found worth reading is read in full at
once; most pictures never come here: the images step committed them with no words to read. Batches of pictures are committed in one
transaction each: the words as an item of the picture (kind 'ocr', no vector) and the file marked read
(files.ocr_hash), so a crash or a cancel loses at most the batch in hand, and a picture read once is
not read again until it changes.

Scanned pages: each page without a text layer is rendered (pypdfium2), read, and its text cut into
chunks for the text tower like any page; each page is committed on its own, the file marked read
with its last page. A run that resumes a document reads the pages that have no chunks yet.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import ocr
from ..catalog import OcrTodo
from ..chunking import iter_chunks
from ..preprocess import ImageDecodeError, ImageSpec, open_image
from ..scanner import hash_bytes, hash_file
from ..textfiles import DocumentError, Page, render_page, scanned_pages
from ..tokens import chunk_tokenizer, content_tokens
from .context import Run, Work
from .records import DOCUMENT_BATCH, Batch, Words
from .workers import ordered_map

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

    def words(self) -> Words:
        problems = [f"its words could not be read ({self.unreadable})"] if self.unreadable is not None else []
        return Words(self.todo.file_id, self.todo.path, "image", self.todo.content_hash, text=self.text,
                     problems=problems)


def batches(run: Run, work: Work) -> Generator[Batch, None, None]:
    """The pictures and scanned pages of the run's roots whose words are still to be read."""
    todos = run.catalog.ocr_pending(work.roots) if run.encoders.reads_words else []
    if not todos:
        return
    run.read_words = True
    run.begin(PHASE, len(todos))
    run.observe("ocr")
    reader = run.encoders.ocr
    run.report.ocr_device = reader.device
    pictures = [t for t in todos if t.kind == "image"]
    pdfs = [t for t in todos if t.kind != "image"]
    threads = run.workers or max(1, min(8, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mmsearch-ocr")
    batch: list[_Picture] = []
    since = time.monotonic()
    try:
        prepare = lambda t: _prepare(t, reader, run.image_spec, t.path in run.worth_reading)  # noqa: E731
        for pic in ordered_map(pool, prepare, pictures, window=threads * 4, cancelled=run.cancelled):
            if pic.pixels is not None:
                run.observe("ocr")
                try:
                    pic.text = ocr.joined(reader.read(pic.pixels, cancelled=run.cancelled))
                except ocr.Cancelled:
                    break  # this picture is read again by the next run
                pic.pixels = None
            batch.append(pic)
            run.tick(pic.todo.path)
            if len(batch) >= COMMIT_PICTURES or time.monotonic() - since >= COMMIT_SECONDS:
                yield [pic.words() for pic in batch if pic.left is None]
                batch, since = [], time.monotonic()
            if run.cancelled():
                break
        if batch:
            yield [pic.words() for pic in batch if pic.left is None]
    finally:
        pool.shutdown(wait=not run.cancelled(), cancel_futures=True)
    for todo in pdfs:
        if run.cancelled():
            break
        yield from _scanned_pages(run, reader, todo)
        run.tick(todo.path)


def _prepare(todo: OcrTodo, reader: ocr.TextReader, spec: ImageSpec, glanced: bool) -> _Picture:
    """On a worker thread: the picture's bytes, checked against the catalog; decoded as the images step
    decodes it and glanced at (the same look as there, so a picture gets the same answer whichever step
    glanced: TextReader.worth_reading); decoded at reading size for the full read where that is worth
    it. `glanced`: this run's images step found it worth reading already."""
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
        if not glanced:
            img, width, height, _, _ = open_image(io.BytesIO(data), spec)
            if not reader.worth_reading(ocr.look(img, (width, height), data)):
                return out
            if max(img.size) >= max(width, height):  # decoded whole (not a JPEG's draft): no second decode
                out.pixels = ocr.shrunk_for_reading(img)
                return out
        out.pixels = ocr.decode(data, ocr.READ_SIDE)
    except ImageDecodeError as e:
        out.unreadable = str(e)
    except MemoryError:
        out.unreadable = "not enough memory to decode"
    return out


def _scanned_pages(run: Run, reader: ocr.TextReader, todo: OcrTodo) -> Generator[Batch, None, None]:
    """A PDF's pages without a text layer, one batch per page (a long scan keeps what was read when it is
    stopped), chunked and encoded by the text tower like the document's other pages; the last one
    finishes the file. Nothing where the file changed since it was indexed (the next scan takes it)."""
    if hash_file(todo.path) != todo.content_hash:
        return  # vanished or changed: the next run's scan indexes it again
    problems = []
    try:
        pages = scanned_pages(Path(todo.path))
    except DocumentError as e:
        problems.append(f"its scanned pages could not be read ({e})")
        pages = []
    done = run.catalog.pages_with_items(todo.file_id)
    left = [n for n in pages if n not in done]
    if not left:
        yield [Words(todo.file_id, todo.path, "document", todo.content_hash, problems=problems)]
        return
    text = run.encoders.text
    max_tokens = content_tokens(text.bundle)
    tokenizer: Any = chunk_tokenizer(text.bundle)
    for i, number in enumerate(left):
        if run.cancelled():
            return
        run.observe("ocr")
        try:
            # A page: read whole, no glance (its print is small, see ocr.GATE_SIDE).
            page = np.asarray(render_page(Path(todo.path), number, ocr.READ_SIDE))
            words = ocr.joined(reader.read(page, cancelled=run.cancelled))
        except ocr.Cancelled:
            return
        except (DocumentError, MemoryError) as e:
            problems.append(f"page {number} could not be read ({e})")
            words = ""
        chunks = list(iter_chunks([Page(number, words)], tokenizer, max_tokens=max_tokens,
                                  overlap_tokens=max_tokens // 5))
        embeds = [text.encode([c.text for c in chunks[lo : lo + DOCUMENT_BATCH]])
                  for lo in range(0, len(chunks), DOCUMENT_BATCH)]
        yield [Words(todo.file_id, todo.path, "document", todo.content_hash, page=number,
                     chunks=[(c.page, c.start, c.end, c.text) for c in chunks],
                     vectors=np.concatenate(embeds) if embeds else None, done=i == len(left) - 1, problems=problems)]
        problems = []
