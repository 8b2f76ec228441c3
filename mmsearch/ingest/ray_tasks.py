"""What runs on the cluster's workers in a distributed run (distributed.py builds the pipeline).

CPU tasks read, hash and decode photos (`preprocess.decode_image`, as a local run does, so the pixels
are the same) or extract and chunk documents (`textfiles`, `chunking`); an actor pool holds one
encoder per actor (the model loaded once per actor) and writes each batch it encodes as one shard
(shards.py). No Ray import here: these are plain functions and classes that Ray Data calls with
batches (dicts of NumPy arrays), so they are also tested without a cluster.

Batch columns in: path (bytes), root_id, size, mtime_ns, and the catalog row the file was planned
against (planned_size -1 for a new file, planned_mtime_ns, planned_hash, planned_status). Strings
absent are "" and integers absent -1 between stages (NumPy columns carry no None).
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import numpy as np

from ..catalog import FileRow
from ..scanner import FoundFile
from .records import DOCUMENT_BATCH, ENCODE_SLICE, Record, Task
from .shards import write_shard

Batch = dict[str, np.ndarray]


def _task(batch: Batch, i: int, kind: str) -> Task:
    path = os.fsdecode(batch["path"][i])
    old = None
    if int(batch["planned_size"][i]) >= 0:
        old = FileRow(-1, path, path, int(batch["planned_size"][i]), int(batch["planned_mtime_ns"][i]),
                      str(batch["planned_hash"][i]) or None, kind, str(batch["planned_status"][i]))
    return int(batch["root_id"][i]), FoundFile(path, int(batch["size"][i]), int(batch["mtime_ns"][i]), kind), old


class KnownContent:
    """Which content hashes the index holds already: one actor on the driver's node, reading its catalog."""

    def __init__(self, index_folder: str):
        from pathlib import Path

        from ..catalog import Catalog

        self.catalog = Catalog(Path(index_folder), readonly=True)

    def known(self, digests: list[str]) -> list[str]:
        return sorted(self.catalog.indexed_hashes(digests))


def _known(lookup: Any, digests: list[str | None]) -> set[str]:
    """Those of these content hashes the index holds already: one question to the driver's node. A file
    with such content is a `copy`: its vectors are taken from the catalog at commit, not made again."""
    asked = [d for d in digests if d]
    if lookup is None or not asked:
        return set()
    import ray

    return set(ray.get(lookup.known.remote(asked)))


def _copy(batch: Batch, i: int, kind: str, digest: str | None, known: set[str]) -> bool:
    """Whether file i is a copy of indexed content (a touched file is its own content: not a copy)."""
    if digest is None or digest not in known:
        return False
    _, _, old = _task(batch, i, kind)
    return not (old is not None and old.content_hash == digest and old.status == "indexed")


READ_GROUP = 16  # photos read before the index is asked about their contents: ~40 MB at 12 MP


def prepare_images(batch: Batch, spec: Any, lookup: Any = None) -> Batch:
    """Read, hash and decode each photo (a CPU task). A file whose bytes hash as the catalog has them
    is `touched` and not decoded: its vectors stay; one whose bytes another indexed file has is a
    `copy`, not decoded either. `lookup`: a KnownContent actor (None: no copies are looked for)."""
    from .images import decode_read, read_one

    n = len(batch["path"])
    out: dict[str, list[Any]] = {k: [] for k in ("status", "digest", "error", "width", "height", "orientation",
                                                  "taken_at")}
    pixels = np.zeros((n, 3, *spec.size), np.float32)  # rows in error, touched or copies stay zero
    group: list[tuple[int, Record, bytes | None]] = []
    for i in range(n):
        group.append((i, *read_one(_task(batch, i, "image"))))  # each file read once
        if len(group) < READ_GROUP and i < n - 1:
            continue
        known = _known(lookup, [r.digest for _, r, data in group if data is not None])
        for j, r, data in group:  # in order: row j's outputs are appended j-th
            copy = data is not None and _copy(batch, j, "image", r.digest, known)
            img = decode_read(r, data, spec) if data is not None and not copy else None
            out["status"].append("copy" if copy else r.status)
            out["digest"].append(r.digest or "")
            out["error"].append(r.error or "")
            out["width"].append(r.width if img else -1)
            out["height"].append(r.height if img else -1)
            out["orientation"].append(r.orientation if img and r.orientation is not None else -1)
            out["taken_at"].append(r.taken_at if img and r.taken_at else "")
            if img is not None:
                pixels[j] = img.pixels
        group = []
    return {**batch, **{k: np.asarray(v, dtype=object if isinstance(v[0], str) else np.int64) for k, v in out.items()},
            "pixels": pixels} if n else batch


def prepare_documents(batch: Batch, bundle_path: str, manifest_sha256: str, lookup: Any = None,
                      max_chars: int | None = 4_000_000) -> Batch:
    """Hash, extract and chunk each document (a CPU task), as a local run cuts it, to `max_chars` characters
    at most (None: all); a copy of indexed content is not extracted (see prepare_images)."""
    from ..textfiles import DocumentError
    from ..tokens import chunk_tokenizer, content_tokens
    from .documents import Extracted, extract_one, reason

    bundle = _bundle(bundle_path, manifest_sha256)
    tokenizer, max_tokens = chunk_tokenizer(bundle), content_tokens(bundle)
    n = len(batch["path"])
    out: dict[str, list[str]] = {k: [] for k in ("status", "digest", "error", "note", "chunks", "scanned")}
    from ..scanner import hash_file

    digests = [hash_file(os.fsdecode(p)) for p in batch["path"]]
    known = _known(lookup, list(digests))
    for i in range(n):
        if _copy(batch, i, "document", digests[i], known):
            out["status"].append("copy")
            out["digest"].append(digests[i] or "")
            for k in ("error", "note", "chunks", "scanned"):
                out[k].append("")
            continue
        ext: Extracted = extract_one(_task(batch, i, "document"), tokenizer, max_tokens, digests[i], max_chars)
        r = ext.record
        chunks = []
        if r.status == "indexed":
            try:
                chunks = [(c.page, c.start, c.end, c.text) for c in itertools.chain(ext.head, ext.rest or ())]
            except (DocumentError, OSError, MemoryError) as e:  # a page or segment further on
                r.status, r.error = "error", reason(e, r.path)
        out["status"].append(r.status)
        out["digest"].append(r.digest or "")
        out["error"].append(r.error or "")
        capped = ext.capped
        out["note"].append(capped.note(r.size) if capped is not None and capped.cut and not r.error else "")
        out["chunks"].append(json.dumps(chunks) if chunks else "")
        out["scanned"].append(json.dumps(capped.scanned if capped is not None else []))
    return {**batch, **{k: np.asarray(v, dtype=object) for k, v in out.items()}} if n else batch


def _bundle(path: str, manifest_sha256: str) -> Any:
    """The bundle at the driver's path, refused where this node holds another model there."""
    from ..bundle import load_bundle
    from ..errors import MmsearchError

    bundle = load_bundle(path)
    if bundle.manifest_sha256 != manifest_sha256:
        raise MmsearchError(f"{path} on this node is another model (manifest {bundle.manifest_sha256[:12]}, the index's "
                            f"is {manifest_sha256[:12]}): every node needs the same bundle at the same path")
    return bundle


def _none(value: Any) -> Any:
    """Back from the NumPy columns' stand-ins for None."""
    if isinstance(value, str):
        return value or None
    value = int(value)
    return None if value < 0 else value


def _row(batch: Batch, i: int, kind: str) -> Record:
    planned = None
    if int(batch["planned_size"][i]) >= 0:
        planned = (int(batch["planned_size"][i]), int(batch["planned_mtime_ns"][i]),
                   str(batch["planned_hash"][i]) or None, str(batch["planned_status"][i]))
    return Record(path=os.fsdecode(batch["path"][i]), root_id=int(batch["root_id"][i]), kind=kind,
                    size=int(batch["size"][i]), mtime_ns=int(batch["mtime_ns"][i]), planned=planned,
                    status=str(batch["status"][i]), digest=_none(str(batch["digest"][i])),
                    error=_none(str(batch["error"][i])))


class _Encode:
    """One actor: a tower loaded once (`_tower`), each batch encoded and written as one shard."""

    def __init__(self, bundle_path: str, manifest_sha256: str, variant: str | None, device: str, threads: int,
                 folder: str):
        bundle = _bundle(bundle_path, manifest_sha256)
        # device "auto": CUDA where Ray gave this actor a GPU, else the CPU
        self.encoder = self._tower(bundle, variant=variant, device=device, threads=threads)
        self.dim, self.manifest, self.folder = bundle.embedding_dim, manifest_sha256, folder

    @staticmethod
    def _tower(bundle: Any, **options: Any) -> Any:
        raise NotImplementedError

    def _written(self, kind: str, rows: list[Record]) -> Batch:
        """One output row per shard: its name, how many files it holds, and where it was encoded."""
        if not rows:
            return {"shard": np.asarray([], dtype=object), "files": np.asarray([], np.int64),
                    "device": np.asarray([], dtype=object)}
        name = write_shard(self.folder, kind, rows, self.dim, self.manifest)
        return {"shard": np.asarray([name], dtype=object), "files": np.asarray([len(rows)], np.int64),
                "device": np.asarray([self.encoder.device], dtype=object)}


class EncodeImages(_Encode):
    """The image tower's actor."""

    @staticmethod
    def _tower(bundle: Any, **options: Any) -> Any:
        from ..encoder import ImageEncoder

        return ImageEncoder(bundle, **options)

    def __call__(self, batch: Batch) -> Batch:
        n = len(batch["path"])
        rows = [_row(batch, i, "image") for i in range(n)]
        good = [i for i in range(n) if rows[i].status == "indexed"]
        for lo in range(0, len(good), ENCODE_SLICE):
            part = good[lo : lo + ENCODE_SLICE]
            vectors = self.encoder.encode(np.ascontiguousarray(batch["pixels"][part], np.float32))
            for i, vec in zip(part, vectors):
                rows[i].vectors = vec[None]
        for i in good:
            r = rows[i]
            r.width, r.height = _none(batch["width"][i]), _none(batch["height"][i])
            r.orientation, r.taken_at = _none(batch["orientation"][i]), _none(str(batch["taken_at"][i]))
        return self._written("image", rows)


class EncodeDocuments(_Encode):
    """The text tower's actor: each batch's chunks encoded."""

    @staticmethod
    def _tower(bundle: Any, **options: Any) -> Any:
        from ..encoder import TextEncoder

        return TextEncoder(bundle, **options)

    def __call__(self, batch: Batch) -> Batch:
        rows = [_row(batch, i, "document") for i in range(len(batch["path"]))]
        for i, r in enumerate(rows):
            if r.status != "indexed":
                continue
            chunks = str(batch["chunks"][i])  # none: a scan, its pages left to the OCR phase
            r.chunks = [tuple(c) for c in json.loads(chunks)] if chunks else []  # type: ignore[misc]
            r.note = _none(str(batch["note"][i]))
            r.scanned = json.loads(str(batch["scanned"][i]))
            parts = [self.encoder.encode([c[3] for c in r.chunks[lo : lo + DOCUMENT_BATCH]])
                     for lo in range(0, len(r.chunks), DOCUMENT_BATCH)]
            r.vectors = np.concatenate(parts) if parts else None
        return self._written("document", rows)
