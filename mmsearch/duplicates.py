"""Duplicates: files with the same content, and pictures that are near-identical (resized, recompressed,
slightly cropped, saved in another format), found from what the index holds (content hashes, the
pictures' stored vectors and shapes) and a look at the candidates' pixels. No model is loaded.

A pair of pictures is near-identical when three things agree:
- their vectors' cosine reaches the threshold (what the model sees: the same scene);
- their shapes (width to height, upright) agree within ASPECT_TOLERANCE: a resized, recompressed or
  re-encoded copy keeps the shape exactly, a slight crop nearly;
- their pixels agree: the two pictures shrunk to 16 x 16 grey levels correlate at PIXEL_MIN or more.
  A model maps two different photos of one scene (a step aside, a second later) close together; the
  pixels tell a copy from a second photo. Only pictures the first two checks pair up are read, at a
  reduced scale; one that cannot be read is judged by its vector alone, at STRICT_THRESHOLD.
Groups are the connected pairs (a picture and its two resized copies are one group). The thresholds
were chosen by `python -m benchmarks.duplicates` (precision and recall of the groups on generated
variants).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .filenames import json_fields

if TYPE_CHECKING:
    from .catalog import Catalog, DuplicateRow

DEFAULT_THRESHOLD = 0.9
STRICT_THRESHOLD = 0.98  # for a pair whose pixels cannot be looked at
ASPECT_TOLERANCE = 0.1  # |log(aspect a / aspect b)|: about 10%
PIXEL_MIN = 0.85
_BLOCK = 2048  # rows of the similarity matrix computed at a time: 2048 x N float32


@dataclass(frozen=True)
class DuplicateFile:
    path: str
    kind: str
    size: int
    width: int | None
    height: int | None
    item_id: int | None = None  # its first item (Index.item): what an app shows it by

    def to_dict(self) -> dict[str, Any]:
        return {**json_fields(self.path), "item_id": self.item_id, "kind": self.kind, "size": self.size,
                "width": self.width, "height": self.height}


@dataclass
class DuplicateGroup:
    """Files that hold the same thing. `files[0]` is the one to keep (the largest picture, then the
    largest file); `gain_bytes` is what removing the others would free."""

    kind: str  # "identical" (the same bytes) | "near" (near-identical pictures, copies among them)
    files: list[DuplicateFile] = field(default_factory=list)
    similarity: float = 1.0  # the lowest cosine of the pairs that joined the group (1.0 when identical)

    @property
    def gain_bytes(self) -> int:
        return sum(f.size for f in self.files[1:])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "similarity": round(self.similarity, 6), "gain_bytes": self.gain_bytes,
                "files": [f.to_dict() for f in self.files]}


def find_duplicates(catalog: Catalog, *, threshold: float = DEFAULT_THRESHOLD, near: bool = True,
                    progress: Callable[[int, int], None] | None = None) -> list[DuplicateGroup]:
    """Groups of duplicates, the most space to gain first. `near`: also near-identical pictures (cosine
    of their vectors >= threshold); `progress(done, total)` as the pictures are compared."""
    copies = catalog.shared_contents()
    by_hash = {rows[0].content_hash: rows for rows in copies}
    groups: list[DuplicateGroup] = []
    joined: set[str] = set()
    if near:
        pictures, vectors = catalog.picture_vectors()
        for members, low in _near_groups(pictures, vectors, threshold, progress):
            rows = [row for i in members for row in by_hash.get(pictures[i].content_hash, [pictures[i]])]
            joined.update(pictures[i].content_hash for i in members)
            groups.append(DuplicateGroup("near", _ordered(rows), low))
    for rows in copies:
        if rows[0].content_hash not in joined:
            groups.append(DuplicateGroup("identical", _ordered(rows)))
    groups.sort(key=lambda g: (-g.gain_bytes, g.files[0].path))
    return groups


def _ordered(rows: list[DuplicateRow]) -> list[DuplicateFile]:
    keep_first = sorted(rows, key=lambda r: (-((r.width or 0) * (r.height or 0)), -r.size, r.path))
    return [DuplicateFile(r.path, r.kind, r.size, r.width, r.height, r.item_id) for r in keep_first]


def _near_groups(pictures: list[DuplicateRow], vectors: np.ndarray, threshold: float,
                 progress: Callable[[int, int], None] | None) -> list[tuple[list[int], float]]:
    """Connected groups of pictures paired by their vectors, shapes and pixels (exact, a block of rows at
    a time), each with the lowest cosine among the pairs that joined it."""
    n = len(vectors)
    parent = list(range(n))
    low: dict[int, float] = {}
    pixels = _Pixels(pictures)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    aspects = np.array([np.log((p.width or 1) / (p.height or 1)) for p in pictures], np.float32)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12) if n else vectors
    for lo in range(0, n, _BLOCK):
        scores = unit[lo : lo + _BLOCK] @ unit.T
        alike = np.abs(aspects[lo : lo + _BLOCK, None] - aspects[None, :]) <= ASPECT_TOLERANCE
        rows, cols = np.nonzero((scores >= threshold) & alike)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i, j = lo + r, c
            if j <= i:
                continue  # each pair once, and not a picture with itself
            pair = float(scores[r, c])
            if not pixels.agree(i, j, pair):
                continue
            a, b = root(i), root(j)
            joined = min(low.get(a, 1.0), low.get(b, 1.0), pair)
            if a != b:
                parent[b] = a
            low[a] = joined
        if progress:
            progress(min(lo + _BLOCK, n), n)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    return [(m, low.get(r, 1.0)) for r, m in members.items() if len(m) > 1]


class _Pixels:
    """Each candidate picture shrunk to 16 x 16 grey levels, normalised, read once when first asked."""

    def __init__(self, pictures: list[DuplicateRow]):
        self.pictures = pictures
        self._seen: dict[int, np.ndarray | None] = {}

    def agree(self, i: int, j: int, cosine: float) -> bool:
        a, b = self._signature(i), self._signature(j)
        if a is None or b is None:
            return cosine >= STRICT_THRESHOLD
        return float(a @ b) / len(a) >= PIXEL_MIN

    def _signature(self, i: int) -> np.ndarray | None:
        if i not in self._seen:
            self._seen[i] = _signature(self.pictures[i].path)
        return self._seen[i]


def _signature(path: str) -> np.ndarray | None:
    from .preprocess import ImageDecodeError, open_image

    try:
        picture = open_image(path, fit=64)[0]
    except (ImageDecodeError, OSError):
        return None
    grey = np.asarray(picture.convert("L").resize((16, 16)), np.float32).reshape(-1)
    return (grey - grey.mean()) / (grey.std() + 1e-6)
