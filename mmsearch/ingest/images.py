"""The images step on this machine: photos read, hashed and decoded at draft scale on worker threads,
encoded in batches; each batch one list of records for the commit.

Where the run reads words (OCR), each worker also glances at the photo it just decoded, at the draft
scale the tower needed (ocr.TextReader.worth_reading: no second read or decode): a photo without words
is committed with its words read (none), so the words step only looks at the pictures that may hold
some."""

from __future__ import annotations

import io
import os
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from typing import TYPE_CHECKING

from ..preprocess import DecodedImage, ImageDecodeError, ImageSpec, decode_image
from ..scanner import hash_bytes
from .context import Run, Work
from .records import ENCODE_SLICE, Batch, Record, Task
from .workers import ordered_map

if TYPE_CHECKING:
    from ..ocr import TextReader


@dataclass
class Decoded:
    """A photo as a worker left it: its record, the tower's input where it decoded, and whether it is
    worth reading in full (None: not glanced at)."""

    record: Record
    pixels: np.ndarray | None = None
    worth_reading: bool | None = None


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def decode_one(task: Task, spec: ImageSpec, reader: TextReader | None = None) -> Decoded:
    """A photo read, hashed and decoded; with `reader`, glanced at too (on the decoded picture)."""
    record, data = read_one(task)
    img = None if data is None else decode_read(record, data, spec, keep_picture=reader is not None)
    out = Decoded(record, None if img is None else img.pixels)
    if reader is not None and data is not None and img is not None and img.picture is not None:
        from .. import ocr

        try:
            out.worth_reading = reader.worth_reading(ocr.look(img.picture, (img.width, img.height), data))
        except (ImageDecodeError, MemoryError):
            out.worth_reading = True  # left to the words step, which says why it cannot be read
        record.no_words = not out.worth_reading
    return out


def read_one(task: Task) -> tuple[Record, bytes | None]:
    """A photo read and hashed; its bytes, or None where there is nothing to decode (unreadable, or
    touched: the same bytes as indexed)."""
    record = Record.of(task)
    try:
        data = read(record.path)
    except FileNotFoundError:
        record.status, record.error = "error", "vanished before it could be read"
        return record, None
    except OSError as e:
        record.status, record.error = "error", f"cannot read ({e.strerror or e})"
        return record, None
    record.digest = hash_bytes(data)
    if record.unchanged_content:
        record.status = "touched"  # touched, not changed: keep the vectors
        return record, None
    return record, data


def decode_read(record: Record, data: bytes, spec: ImageSpec, keep_picture: bool = False) -> DecodedImage | None:
    """The bytes read_one gave, decoded: the tower's input, with the header's facts in the record (or
    the record in error, with the reason)."""
    if not data:
        record.status, record.error = "error", "empty file (0 bytes)"
        return None
    try:
        img = decode_image(io.BytesIO(data), spec, keep_picture=keep_picture)
    except ImageDecodeError as e:
        record.status, record.error = "error", str(e)
        return None
    except MemoryError:
        record.status, record.error = "error", "not enough memory to decode"
        return None
    record.width, record.height, record.orientation = img.width, img.height, img.orientation
    record.taken_at = img.taken_at.isoformat() if img.taken_at else None
    return img


def decode_plan(device: str, workers: int | None, batch_size: int | None) -> tuple[int, int]:
    """Decode threads and images per encoder batch, unless given.

    CPU: one decode thread per core (8 at most) beside the encoder's threads, batches of 32: on 2
    cores that split was measured best (benchmarks/ingest.py --configs). CUDA: the encoder no longer
    needs the cores, so decoding takes all of them, and batches of 128 keep the GPU's per-call
    overhead small (at 26,000 images/s a batch is 5 ms); 3 batches in flight hold ~230 MB.
    The CUDA choice is not measured yet."""
    cores = os.cpu_count() or 1
    if device == "cuda":
        return workers or cores, batch_size or 128
    return workers or max(1, min(8, cores)), batch_size or 32


def batches(run: Run, work: Work) -> Generator[Batch, None, None]:
    """The photos of the plan, a batch of records at a time (what is decoded when a cancel comes is
    committed too; encoding stops early on it)."""
    if not work.images:
        return
    workers, batch_size = decode_plan(run.encoders.image.device, run.workers, run.batch_size)
    spec = run.image_spec
    reader = _glancer(run)
    batch: list[Decoded] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmsearch-decode")
    try:
        for dec in ordered_map(pool, lambda t: decode_one(t, spec, reader), work.images, window=batch_size * 3,
                               cancelled=run.cancelled):
            batch.append(dec)
            if dec.worth_reading:
                run.worth_reading.add(dec.record.path)
            run.tick(dec.record.path)
            if len(batch) >= batch_size:
                yield encoded(run, batch)
                batch = []
            if run.cancelled():
                break
        if batch:
            yield encoded(run, batch)
    finally:
        # On a cancel, queued decodes are dropped and running ones are not waited for here.
        pool.shutdown(wait=not run.cancelled(), cancel_futures=True)
        if reader is not None:
            run.encoders.let_go_of_ocr()


def _glancer(run: Run) -> TextReader | None:
    """The OCR models where the run reads words; None where it does not, or where they cannot be loaded
    (the words step then says why, after the vectors are committed and saved)."""
    if not run.encoders.reads_words:
        return None
    from ..ocr import OcrError

    try:
        reader = run.encoders.ocr
    except OcrError:
        return None
    run.report.ocr_device = reader.device
    return reader


def encoded(run: Run, batch: list[Decoded]) -> Batch:
    """The batch's records, its decoded photos encoded (a cancel stops within one slice: what is not
    encoded is left out, and the next run picks it up)."""
    good = [d for d in batch if d.pixels is not None]
    for i in range(0, len(good), ENCODE_SLICE):
        if run.cancelled():
            dropped = {id(d) for d in good[i:]}
            batch = [d for d in batch if id(d) not in dropped]
            break
        run.observe("encode")
        part = good[i : i + ENCODE_SLICE]
        vectors = run.encoders.image.encode(np.stack([d.pixels for d in part if d.pixels is not None]))
        for d, vec in zip(part, vectors):
            d.record.vectors = vec[None]
    return [d.record for d in batch]
