"""Several index folders searched as one: one per machine or per collection, built with one model.

    from mmsearch import MultiIndex
    with MultiIndex(["/data/index-a", "/data/index-b"]) as shards:
        for hit in shards.search("red car", k=5):
            print(hit.score, hit.path)

The query is encoded once; each index ranks its own candidates (search.rank_many), and the results are
merged by score: cosines compare as they are (one model), keyword scores by their tier, and hybrid
queries fuse the two merged rankings by reciprocal rank, as one index holding everything would.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from . import arguments
from .api import Index
from .errors import InvalidArgument, MmsearchError
from .filenames import shown
from .search import Filters, Results, rank_many

__all__ = ["MultiIndex"]


class MultiIndex:
    """Index folders opened read-only and searched together. They must share one model (the same
    manifest): vectors of different models do not compare."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], *, model: str | os.PathLike[str] | None = None,
                 device: str = "auto", variant: str | None = None):
        folders = list(paths)
        if not folders:
            raise InvalidArgument("give at least one index folder")
        self.indexes: list[Index] = []
        try:
            for folder in folders:
                idx = Index(folder, model=model, device=device, variant=variant, readonly=True)
                self.indexes.append(idx)
                if any(other.path.resolve() == idx.path.resolve() for other in self.indexes[:-1]):
                    raise InvalidArgument(f"{idx.path}: given twice")
            self._check_one_model()
        except BaseException:
            self.close()
            raise

    def _check_one_model(self) -> None:
        first = self.indexes[0]
        first_hash = _manifest(first)
        for idx in self.indexes[1:]:
            if _manifest(idx) != first_hash:
                a, b = first.model_record(), idx.model_record()
                raise MmsearchError(
                    f"{idx.path} was built with model '{b.name if b else idx.bundle.name}' (manifest "
                    f"{_manifest(idx)[:12]}) and {first.path} with '{a.name if a else first.bundle.name}' (manifest "
                    f"{first_hash[:12]}): vectors of different models do not compare, so these indexes cannot be "
                    "searched together. Query each on its own, or index both collections with one model."
                )

    def __enter__(self) -> "MultiIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for idx in self.indexes:
            idx.close()

    def search(self, text: str | None = None, *, image: str | os.PathLike[str] | None = None, k: int = 10,
               type: str = "all", under: str | os.PathLike[str] | None = None, after: datetime | str | None = None,
               before: datetime | str | None = None, mode: str = "hybrid",
               min_similarity: float | None = None) -> Results:
        """As Index.search, over every index: the k best files of them all."""
        text, mode = arguments.query(text, image, mode)
        filters = Filters.checked(k, type, under, after, before)
        min_similarity = arguments.similarity("min_similarity", min_similarity)
        vector, mode = self.indexes[0].encode_query(text, image, mode)
        shards = [idx.shard(vectors=vector is not None) for idx in self.indexes]
        return rank_many(shards, query_vector=vector, query_text=text, k=k, filters=filters, mode=mode,
                         query_kind="text" if text is not None else "image", min_similarity=min_similarity)

    def similar(self, path: str | os.PathLike[str], *, k: int = 10, type: str = "all",
                under: str | os.PathLike[str] | None = None, after: datetime | str | None = None,
                before: datetime | str | None = None, at: float | None = None) -> Results:
        """As Index.similar, over every index: the file's stored vector is taken from the index that holds
        it (the first, where several do), and the file itself is left out of each."""
        target = arguments.user_path(path)
        filters = Filters.checked(k, type, under, after, before)
        found = [(idx, idx.stored_vector(target, at=at)) for idx in self.indexes]
        held = [(idx, f) for idx, f in found if f is not None]
        if not held:
            raise MmsearchError(
                f"{shown(target)}: in none of these indexes. Index it first, or search by its content: "
                "`mmsearch query --image FILE` (library: MultiIndex.search(image=...))"
            )
        (idx, (file_id, vector)) = held[0]
        shards = [idx.shard(exclude_file=f[0] if f is not None else None) for idx, f in found]
        return rank_many(shards, query_vector=vector, query_text=None, k=k, filters=filters, mode="vector",
                         query_kind=idx.file_kind(file_id))


def _manifest(idx: Index) -> str:
    record = idx.model_record()
    return record.manifest_sha256 if record is not None else idx.bundle.manifest_sha256
