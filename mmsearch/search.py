"""A query: ANN and keyword candidates, filters, fusion, and grouping into one result per file."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from .catalog import Catalog, ItemRow, db_path, fold
from .vectors import SavedVectors, VectorIndex

MODES = ("vector", "keyword", "hybrid")
TYPES = ("all", "image", "document")
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.); robust without score calibration
EXACT_LIMIT = 50_000  # a filter leaving at most this many items is searched exactly, not through the ANN
SNIPPET_CHARS = 240


@dataclass(frozen=True)
class Filters:
    type: str = "all"  # "all" | "image" | "document"
    under: str | None = None  # only files under this folder
    after: datetime | None = None  # EXIF capture time, else file mtime
    before: datetime | None = None

    def sql(self) -> tuple[str, list[Any]]:
        where: list[str] = ["1"]
        params: list[object] = []
        if self.type != "all":
            where.append("items.kind = ?")
            params.append(self.type)
        if self.under:
            prefix = db_path(os.path.abspath(self.under)).rstrip(os.sep) + os.sep
            where.append("substr(files.path, 1, ?) = ?")
            params += [len(prefix), prefix]
        when = "coalesce(files.taken_at, datetime(files.mtime_ns / 1000000000, 'unixepoch'))"
        if self.after:
            where.append(f"{when} >= ?")
            params.append(self.after.isoformat(sep="T" if self.after.tzinfo else " "))
        if self.before:
            where.append(f"{when} < ?")
            params.append(self.before.isoformat(sep="T" if self.before.tzinfo else " "))
        return " AND ".join(where), params

    @property
    def narrows(self) -> bool:
        return bool(self.under or self.after or self.before)


@dataclass(frozen=True)
class SearchResult:
    rank: int
    path: str
    kind: str  # "image" | "document"
    score: float  # cosine similarity (vector), keyword score (Catalog.keyword_search) or fused RRF score (hybrid)
    similarity: float | None  # cosine similarity of the best item, where the vector side found it
    snippet: str | None  # the best chunk of a document
    page: int | None
    item_id: int
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank(
    catalog: Catalog,
    vectors: VectorIndex | SavedVectors | None,
    *,
    query_vector: np.ndarray | None,
    query_text: str | None,
    k: int,
    filters: Filters,
    mode: str = "hybrid",
    exclude_item: int | None = None,
) -> list[SearchResult]:
    """The k best files for a query vector (and/or its words), best first."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    want = k * 4 + (1 if exclude_item else 0)  # documents have several chunks: ask for more, group after
    use_vectors = query_vector is not None and mode != "keyword"
    allowed: set[int] | None = None
    vector_hits: list[tuple[int, float]] | None = None
    if use_vectors and isinstance(vectors, SavedVectors) and filters.type != "all" and not filters.narrows:
        # A kind filter over an exact scan: rank everything, keep that kind among the best, instead of
        # reading every item id of the kind first (~60 ms on 100k items). A rare kind falls through.
        vector_hits = _kind_candidates(catalog, vectors, query_vector, want, filters.type)
    if vector_hits is None:
        allowed = _allowed_items(catalog, filters)
        vector_hits = _vector_candidates(catalog, vectors, query_vector, want, allowed, filters) if use_vectors else []
    if exclude_item is not None:
        vector_hits = [h for h in vector_hits if h[0] != exclude_item]
    keyword_hits: list[tuple[int, float]] = []
    if query_text and mode != "vector" and filters.type != "image":
        keyword_hits = catalog.keyword_search(query_text, want * 2)
        if allowed is not None:
            keyword_hits = [h for h in keyword_hits if h[0] in allowed]
        elif filters.type == "document":
            pass  # FTS holds document chunks only
    rows = catalog.items([i for i, _ in vector_hits] + [i for i, _ in keyword_hits])
    vec_groups = _group(vector_hits, rows)
    key_groups = _group(keyword_hits, rows)
    fused: list[tuple[int, int, float, float | None]]
    if mode == "vector" or not key_groups:
        fused = [(fid, item, score, score) for fid, item, score in vec_groups]
    elif mode == "keyword" or not vec_groups:
        sims = {fid: s for fid, _, s in vec_groups}
        fused = [(fid, item, score, sims.get(fid)) for fid, item, score in key_groups]
    else:
        fused = _rrf(vec_groups, key_groups)
    results: list[SearchResult] = []
    for fid, item_id, score, sim in fused[:k]:
        row = rows[item_id]
        results.append(SearchResult(
            rank=len(results) + 1, path=row.path, kind=row.kind, score=float(score),
            similarity=None if sim is None else float(sim), snippet=_snippet(row, query_text),
            page=row.page, item_id=item_id, width=row.width, height=row.height, taken_at=row.taken_at,
        ))
    return results


def _kind_candidates(catalog: Catalog, vectors: SavedVectors, query_vector, want: int,
                     kind: str) -> list[tuple[int, float]] | None:
    """The best `want` items of one kind from an exact scan, or None when the kind is too rare for
    the first few hundred hits to hold them (the caller then filters by id)."""
    q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    pool = want * 16
    hits = vectors.search(q, pool)
    rows = catalog.items([i for i, _ in hits])
    kept = [h for h in hits if h[0] in rows and rows[h[0]].kind == kind]
    if len(kept) >= want or len(hits) < pool:
        return kept[:want]
    return None


def _allowed_items(catalog: Catalog, filters: Filters) -> set[int] | None:
    if filters.type == "all" and not filters.narrows:
        return None
    where, params = filters.sql()
    return set(catalog.item_ids_where(where, params))


def _vector_candidates(catalog, vectors, query_vector, want, allowed, filters) -> list[tuple[int, float]]:
    q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    if isinstance(vectors, SavedVectors):  # exact over the memory-mapped file: a filter is a mask
        return vectors.search(q, want, allowed=allowed)
    if allowed is not None and len(allowed) <= EXACT_LIMIT:
        # A narrow filter: exact search over the stored vectors beats an ANN walk that rejects most nodes.
        ids, sims = [], []
        for batch_ids, batch_vecs in catalog.vectors_for(sorted(allowed)):
            ids.append(batch_ids)
            sims.append(batch_vecs @ q)
        if not ids:
            return []
        all_ids, all_sims = np.concatenate(ids), np.concatenate(sims)
        top = np.argsort(-all_sims)[:want]
        return [(int(all_ids[i]), float(all_sims[i])) for i in top]
    if allowed is not None:
        return vectors.search(q, want, filter=lambda label: label in allowed)
    return vectors.search(q, want)


def _group(hits: list[tuple[int, float]], rows: dict[int, ItemRow]) -> list[tuple[int, int, float]]:
    """One entry per file, its best item first seen (hits are best first): (file id, item id, score)."""
    seen: set[int] = set()
    out = []
    for item_id, score in hits:
        row = rows.get(item_id)
        if row is None or row.file_id in seen:  # gone from the catalog since the ANN file was saved
            continue
        seen.add(row.file_id)
        out.append((row.file_id, item_id, score))
    return out


def _rrf(vec_groups, key_groups) -> list[tuple[int, int, float, float | None]]:
    scores: dict[int, float] = {}
    best_item: dict[int, int] = {}
    sims = {fid: s for fid, _, s in vec_groups}
    for groups in (key_groups, vec_groups):  # keyword first: its chunk holds the words, the better snippet
        for r, (fid, item, _) in enumerate(groups):
            scores[fid] = scores.get(fid, 0.0) + 1.0 / (RRF_K + r + 1)
            best_item.setdefault(fid, item)
    order = sorted(scores, key=lambda f: -scores[f])
    return [(fid, best_item[fid], scores[fid], sims.get(fid)) for fid in order]


def _snippet(row: ItemRow, query_text: str | None) -> str | None:
    """The chunk's text, or for a long one the passage around the query's words: the whole query where it
    occurs, else its longest word found (compared as the keyword search compares: case and accents folded)."""
    if row.text is None:
        return None
    text = " ".join(row.text.split())
    if len(text) <= SNIPPET_CHARS:
        return text
    start = 0
    found = _find_query(text, query_text) if query_text else None
    if found is not None:
        at, length = found
        start = max(0, at - SNIPPET_CHARS // 3)
        if at + length > start + SNIPPET_CHARS:  # a long match: show its start
            start = at
        space = text.find(" ", start, at)
        if start and space >= 0:
            start = space + 1  # open on a word
    piece = text[start : start + SNIPPET_CHARS]
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


def _find_query(text: str, query: str) -> tuple[int, int] | None:
    """(position, length) in `text` of the whole query, else of its longest word that occurs."""
    folded = fold(text)
    words = query.split()
    candidates = [" ".join(words)] + sorted(words, key=len, reverse=True)
    for candidate in candidates:
        # One-letter Latin words would match anywhere; one Chinese or Japanese character is a word.
        if len(candidate) < 2 and candidate.isascii():
            continue
        at = folded.find(fold(candidate))
        if at >= 0:
            return at, len(candidate)
    return None
