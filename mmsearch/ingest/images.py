"""Photos: read, hash and decode at draft scale on worker threads; encoded and committed in batches."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..catalog import Catalog, FileRow
from ..preprocess import DecodedImage, ImageDecodeError, ImageSpec, decode_image
from ..scanner import FoundFile, hash_bytes
from ..vectors import VectorStore
from .commit import Prepared, apply_to_vectors, write_file
from .report import IndexReport, Observer
from .workers import ordered_map

if TYPE_CHECKING:
    from .run import Encoders

ENCODE_SLICE = 8  # images per encoder call: a Ctrl-C waits for at most one slice


@dataclass
class Decoded(Prepared):
    image: DecodedImage | None = None


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def decode_one(task: tuple[int, FoundFile, FileRow | None], spec: ImageSpec) -> Decoded:
    out, data = read_one(task)
    return out if data is None else decode_read(out, data, spec)


def read_one(task: tuple[int, FoundFile, FileRow | None]) -> tuple[Decoded, bytes | None]:
    """A photo read and hashed; its bytes, or None where there is nothing to decode (unreadable, or
    touched: the same bytes as indexed)."""
    root_id, found, old = task
    out = Decoded(root_id, found, old)
    try:
        data = read(found.path)
    except FileNotFoundError:
        out.error = "vanished before it could be read"
        return out, None
    except OSError as e:
        out.error = f"cannot read ({e.strerror or e})"
        return out, None
    out.digest = hash_bytes(data)
    if old is not None and old.content_hash == out.digest and old.status == "indexed":
        out.unchanged_content = True  # touched, not changed: keep the vectors
        return out, None
    return out, data


def decode_read(out: Decoded, data: bytes, spec: ImageSpec) -> Decoded:
    """The bytes read_one gave, decoded into `out` (or its reason for failing)."""
    if not data:
        out.error = "empty file (0 bytes)"
        return out
    try:
        out.image = decode_image(io.BytesIO(data), spec)
    except ImageDecodeError as e:
        out.error = str(e)
    except MemoryError:
        out.error = "not enough memory to decode"
    return out


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


def index_images(catalog: Catalog, vectors: VectorStore, encoders: Encoders, spec: ImageSpec,
                 tasks: list[tuple[int, FoundFile, FileRow | None]], report: IndexReport, tick: Callable[[str], None],
                 cancelled: Callable[[], bool], observe: Observer, workers: int | None, batch_size: int | None) -> None:
    workers, batch_size = decode_plan(encoders.image.device, workers, batch_size)
    batch: list[Decoded] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmsearch-decode")
    try:
        for dec in ordered_map(pool, lambda t: decode_one(t, spec), tasks, window=batch_size * 3, cancelled=cancelled):
            batch.append(dec)
            tick(dec.found.path)
            if len(batch) >= batch_size:
                commit_images(catalog, vectors, encoders, batch, report, cancelled, observe)
                batch = []
            if cancelled():
                break
        if batch:
            # Cancelled or at the end: what was decoded is committed too (encoding stops early on a cancel).
            commit_images(catalog, vectors, encoders, batch, report, cancelled, observe)
    finally:
        # On a cancel, queued decodes are dropped and running ones are not waited for here.
        pool.shutdown(wait=not cancelled(), cancel_futures=True)


def commit_images(catalog: Catalog, vectors: VectorStore, encoders: Encoders, batch: list[Decoded],
                  report: IndexReport, cancelled: Callable[[], bool], observe: Observer) -> None:
    """Encode a batch's decoded images and commit the whole batch in one transaction."""
    good = [d for d in batch if d.image is not None]
    parts = []
    for i in range(0, len(good), ENCODE_SLICE):
        if cancelled():
            # Stop encoding within one slice of a Ctrl-C; what is not encoded is not committed and
            # is picked up by the next run.
            kept = {id(d) for d in good[:i]}
            batch = [d for d in batch if d.image is None or id(d) in kept]
            good = good[:i]
            break
        observe("encode")
        parts.append(encoders.image.encode(np.stack([d.image.pixels for d in good[i : i + ENCODE_SLICE]
                                                     if d.image is not None])))
    vector_of = dict(zip((id(d) for d in good), np.concatenate(parts) if parts else []))
    new_ids: list[int] = []
    new_vecs: list[np.ndarray] = []
    removed: list[int] = []
    with catalog.write() as conn:
        for d in batch:
            img = d.image
            fields = {} if img is None else dict(width=img.width, height=img.height, taken_at=img.taken_at,
                                                 orientation=img.orientation)
            file_id, gone = write_file(catalog, conn, d, report, **fields)
            removed += gone
            if file_id is not None:
                vec = vector_of[id(d)]
                new_ids += catalog.add_items(conn, file_id, "image", vec[None])
                new_vecs.append(vec)
        observe("commit")
    apply_to_vectors(vectors, removed, new_ids, np.stack(new_vecs) if new_vecs else None, report)
