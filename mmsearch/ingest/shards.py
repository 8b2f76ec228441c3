"""Embedding shards: what a distributed run's workers make of a batch of files, as one Parquet file
that the index's writer then commits (distributed.py). pyarrow only; no Ray.

One row per file, a Record (records.py) as a local run makes it: its path (bytes, so any file name
survives), the root it was found under, its size and mtime as scanned, the catalog row it was planned
against (a commit skips a row whose file the catalog has changed since), its content hash, what became
of it (`indexed`, `error` with the reason, `touched`: same content, vectors kept, or `copy`: content
another indexed file has, whose items the commit copies), what the image header told (size in pixels,
orientation, EXIF time), and its vectors: one for a photo, one per chunk for a document, with the
chunks' page, span and text, and a document's pages without a text layer. The schema's metadata names
the model (its manifest hash) and the vectors' dimension.

A shard is written to a hidden temporary name and renamed into place, so a reader never sees half a
shard; its name is a digest of the files it holds, so a batch that a lost worker makes again replaces
its first copy instead of adding a second one.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import private
from ..errors import MmsearchError
from .records import Record

FORMAT = "2"  # 2: scanned_pages
SUFFIX = ".parquet"
_TMP_PREFIX = ".tmp-"


class ShardError(MmsearchError):
    pass


def schema(dim: int, manifest_sha256: str) -> pa.Schema:
    return pa.schema([
        ("path", pa.binary()),
        ("root_id", pa.int64()),
        ("kind", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("planned_size", pa.int64()),  # null: a new file
        ("planned_mtime_ns", pa.int64()),
        ("planned_hash", pa.string()),
        ("planned_status", pa.string()),
        ("status", pa.string()),
        ("digest", pa.string()),
        ("error", pa.string()),
        ("note", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("orientation", pa.int64()),
        ("taken_at", pa.string()),
        ("vectors", pa.list_(pa.list_(pa.float32(), dim))),
        ("chunk_page", pa.list_(pa.int64())),
        ("chunk_start", pa.list_(pa.int64())),
        ("chunk_end", pa.list_(pa.int64())),
        ("chunk_text", pa.list_(pa.string())),
        ("scanned_pages", pa.list_(pa.int64())),
    ], metadata={"mmsearch_shard": FORMAT, "manifest_sha256": manifest_sha256, "dim": str(dim)})


def shard_name(kind: str, rows: Sequence[Record]) -> str:
    """The same files as scanned give the same name, whichever worker makes the shard."""
    digest = hashlib.sha256()
    for r in sorted(rows, key=lambda r: os.fsencode(r.path)):
        digest.update(os.fsencode(r.path) + b"\0" + f"{r.size}:{r.mtime_ns}".encode() + b"\0")
    return f"{kind}-{digest.hexdigest()[:24]}{SUFFIX}"


def write_shard(folder: str | os.PathLike[str], kind: str, rows: Sequence[Record], dim: int,
                manifest_sha256: str) -> str:
    """Write rows as one shard in `folder`, atomically; returns its file name."""
    folder = Path(folder)
    name = shard_name(kind, rows)
    table = _table(rows, dim, manifest_sha256)
    tmp = folder / f"{_TMP_PREFIX}{uuid.uuid4().hex}-{name}"
    try:
        with private.open_file(tmp, "wb") as f:  # 0600 whatever the worker's umask
            pq.write_table(table, f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())  # on disk before it has its name: a crash leaves no empty shard
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    return name


def _table(rows: Sequence[Record], dim: int, manifest_sha256: str) -> pa.Table:
    def col(name: str) -> list:
        return [getattr(r, name) for r in rows]

    def vectors(r: Record) -> list[list[float]] | None:
        if r.vectors is None:
            return None
        v = np.asarray(r.vectors, np.float32).reshape(-1, dim)
        return list(v)

    cols = {
        "path": [os.fsencode(r.path) for r in rows],
        "root_id": col("root_id"),
        "kind": col("kind"),
        "size": col("size"),
        "mtime_ns": col("mtime_ns"),
        "planned_size": [r.planned[0] if r.planned else None for r in rows],
        "planned_mtime_ns": [r.planned[1] if r.planned else None for r in rows],
        "planned_hash": [r.planned[2] if r.planned else None for r in rows],
        "planned_status": [r.planned[3] if r.planned else None for r in rows],
        "status": col("status"),
        "digest": col("digest"),
        "error": col("error"),
        "note": col("note"),
        "width": col("width"),
        "height": col("height"),
        "orientation": col("orientation"),
        "taken_at": col("taken_at"),
        "vectors": [vectors(r) for r in rows],
        "chunk_page": [[c[0] for c in r.chunks] for r in rows],
        "chunk_start": [[c[1] for c in r.chunks] for r in rows],
        "chunk_end": [[c[2] for c in r.chunks] for r in rows],
        "chunk_text": [[c[3] for c in r.chunks] for r in rows],
        "scanned_pages": col("scanned"),
    }
    return pa.table(cols, schema=schema(dim, manifest_sha256))


def read_shard(path: str | os.PathLike[str], dim: int, manifest_sha256: str) -> list[Record]:
    """A shard's rows; ShardError where it is not a shard of this model."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise ShardError(f"{path}: not a readable shard ({e})") from None
    meta = table.schema.metadata or {}
    if meta.get(b"mmsearch_shard") != FORMAT.encode():
        raise ShardError(f"{path}: not an mmsearch shard of format {FORMAT}")
    if meta.get(b"manifest_sha256") != manifest_sha256.encode() or meta.get(b"dim") != str(dim).encode():
        raise ShardError(f"{path}: made with another model (manifest {meta.get(b'manifest_sha256', b'?')[:12]!r})")
    data = table.to_pydict()
    rows = []
    for i in range(table.num_rows):
        planned = None
        if data["planned_size"][i] is not None:
            planned = (data["planned_size"][i], data["planned_mtime_ns"][i], data["planned_hash"][i],
                       data["planned_status"][i])
        vecs = data["vectors"][i]
        rows.append(Record(
            path=os.fsdecode(data["path"][i]), root_id=data["root_id"][i], kind=data["kind"][i], size=data["size"][i],
            mtime_ns=data["mtime_ns"][i], planned=planned, status=data["status"][i], digest=data["digest"][i],
            error=data["error"][i], note=data["note"][i], width=data["width"][i], height=data["height"][i],
            orientation=data["orientation"][i], taken_at=data["taken_at"][i],
            vectors=None if vecs is None else np.asarray(vecs, np.float32).reshape(-1, dim),
            chunks=list(zip(data["chunk_page"][i], data["chunk_start"][i], data["chunk_end"][i], data["chunk_text"][i])),
            scanned=data["scanned_pages"][i],
        ))
    return rows


def pending(folder: str | os.PathLike[str]) -> list[Path]:
    """The finished shards in a folder, oldest first (temporary files of a writer that died are not shards)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def remove_temporaries(folder: str | os.PathLike[str]) -> None:
    """Half-written shards of workers that died (no run is writing: the caller holds the index lock)."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(_TMP_PREFIX):
                p.unlink(missing_ok=True)
