"""A query: ANN and keyword candidates, filters, fusion, and grouping into one result per file."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from . import arguments
from .catalog import Catalog, ItemRow, fold
from .errors import InvalidArgument
from .filenames import json_fields
from .vectors import Searcher, VectorStore

MODES = arguments.MODES
TYPES = arguments.TYPES
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.); robust without score calibration
SNIPPET_CHARS = 240
# What `score` means, one scale per output, fixed by the query (never by what it happens to find):
SCORE_KINDS = {
    "vector": "cosine",  # cosine similarity of the file's best item to the query, -1..1
    # The best chunk's match (Catalog.keyword_search): the integer part says how closely, 3 the query as
    # typed, 2 its words as a phrase, 1 all its words, 0 any; the fraction is BM25 within that, in [0, 1).
    "keyword": "keyword",
    "hybrid": "rrf",  # reciprocal rank fusion of the two rankings: sum of 1 / (60 + rank), at most 2/61
}


@dataclass(frozen=True)
class Filters:
    type: str = "all"  # "all" | "image" | "document"
    under: str | None = None  # only files under this folder
    after: datetime | None = None  # aware; compared with each file's date (EXIF capture time, else mtime)
    before: datetime | None = None

    @classmethod
    def checked(cls, k: int, type: str, under: str | os.PathLike[str] | None, after: datetime | str | None,
                before: datetime | str | None) -> Filters:
        """A search's filters, checked and normalised (k too, which every search takes)."""
        arguments.at_least_one("k", k)
        after_, before_ = arguments.when("after", after), arguments.when("before", before)
        if after_ is not None and before_ is not None and after_ >= before_:
            raise InvalidArgument(f"after {after_.isoformat()} is not earlier than before {before_.isoformat()}: "
                                  "no date is both")
        return cls(type=arguments.choice("type", type, arguments.TYPES),
                   under=arguments.user_path(under) if under is not None else None, after=after_, before=before_)

    @property
    def narrows(self) -> bool:
        return bool(self.under or self.after or self.before)

    def item_ids(self, catalog: Catalog) -> set[int] | None:
        """The items these filters allow (None: all of them)."""
        if self.type == "all" and not self.narrows:
            return None
        return set(catalog.item_ids_matching(
            kind=None if self.type == "all" else self.type, under=self.under,
            after=self.after.timestamp() if self.after else None,
            before=self.before.timestamp() if self.before else None,
        ))


@dataclass(frozen=True)
class SearchResult:
    rank: int
    path: str  # opens the file (for a name that is not UTF-8, a str with surrogate escapes)
    kind: str  # "image" | "document"
    score: float  # what the results are ordered by, on the scale `score_kind` names (SCORE_KINDS)
    score_kind: str  # "cosine" | "keyword" | "rrf"
    similarity: float | None  # cosine similarity of the file's best item to the query vector, if any
    snippet: str | None  # the best chunk of a document, or the words read in a picture
    page: int | None
    item_id: int
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As `--json` prints it: the path as filenames.json_fields writes it."""
        out = asdict(self)
        out.update(json_fields(self.path))
        return out


Hits = list[tuple[int, float]]  # (item id, score), best first


def rank(
    catalog: Catalog,
    vectors: VectorStore | None,
    *,
    query_vector: np.ndarray | None,
    query_text: str | None,
    k: int,
    filters: Filters,
    mode: str = "hybrid",
    exclude_file: int | None = None,
) -> list[SearchResult]:
    """The k best files for a query vector and/or its words, best first: k files whenever k match.

    Documents have many items (chunks), so each side asks for more items until it holds k distinct
    files or has nothing more to give."""
    return rank_many([(catalog, vectors, exclude_file)], query_vector=query_vector, query_text=query_text, k=k,
                     filters=filters, mode=mode)


Shard = tuple[Catalog, "VectorStore | None", "int | None"]  # (catalog, vectors, a file id to leave out)
# (the file's path, (index, item id), score), best first: a file is its path, so one held by two
# indexes is one file on both sides of a hybrid search
Group = tuple[str, tuple[int, int], float]


def rank_many(shards: Sequence[Shard], *, query_vector: np.ndarray | None, query_text: str | None, k: int,
              filters: Filters, mode: str = "hybrid") -> list[SearchResult]:
    """The k best files over several indexes of one model (rank() is the case of one).

    Each side is ranked across all indexes before fusion: cosines of one model compare as they are, and
    keyword scores by their tier first (the BM25 fraction within a tier uses each index's own word
    statistics, as a sharded search engine does without a global pass); hybrid then fuses the two
    merged rankings by reciprocal rank, so a file's RRF score is what it would be in one index holding
    them all (up to those statistics). A file found in two indexes (the same path) counts once, at its best."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    use_vectors = query_vector is not None and mode != "keyword"
    use_words = bool(query_text) and mode != "vector"
    if not (use_vectors or use_words):
        return []
    mode = "hybrid" if use_vectors and use_words else "vector" if use_vectors else "keyword"
    rows: list[dict[int, ItemRow]] = []
    vec_sides: list[list[Group]] = []
    key_sides: list[list[Group]] = []
    for s, (catalog, vectors, exclude_file) in enumerate(shards):
        allowed = _Lazy(functools.partial(filters.item_ids, catalog))
        shard_rows: dict[int, ItemRow] = {}
        rows.append(shard_rows)
        if use_vectors:
            assert query_vector is not None and vectors is not None
            q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
            groups = _top_files(_vector_search(catalog, vectors.searcher(), q, filters, allowed), k, catalog,
                                shard_rows, exclude_file)
            vec_sides.append([(shard_rows[item].path, (s, item), score) for _, item, score in groups])
        if use_words:
            assert query_text is not None
            groups = _top_files(_keyword_search(catalog, query_text, allowed), k, catalog, shard_rows, exclude_file)
            key_sides.append([(shard_rows[item].path, (s, item), score) for _, item, score in groups])
    vec_groups = _merged(vec_sides)
    key_groups = _merged(key_sides)
    sims = {key: score for key, _, score in vec_groups}
    if mode == "vector":
        fused = vec_groups
    elif mode == "keyword":
        fused = key_groups
    else:
        fused = _rrf(vec_groups, key_groups)
    fused = fused[:k]
    if query_vector is not None:  # the cosine of files the vector side did not reach
        q = np.asarray(query_vector, np.float32)
        for s, (catalog, _, _) in enumerate(shards):
            missing = {item[1]: key for key, item, _ in fused if key not in sims and item[0] == s}
            for ids, vecs in catalog.vectors_for(list(missing)):
                sims.update({missing[int(i)]: float(v) for i, v in zip(ids, vecs @ q)})
    results: list[SearchResult] = []
    for key, (s, item_id), score in fused:
        row = rows[s][item_id]
        sim = sims.get(key)
        results.append(SearchResult(
            rank=len(results) + 1, path=row.path, kind=row.kind, score=float(score), score_kind=SCORE_KINDS[mode],
            similarity=None if sim is None else float(sim),
            snippet=_snippet(row, query_text, shards[s][0].opening),
            page=row.page, item_id=item_id, width=row.width, height=row.height, taken_at=row.taken_at,
        ))
    return results


def _merged(sides: list[list[Group]]) -> list[Group]:
    """One ranking from each index's (best first): by score, ties in index order; a path met twice (two
    indexes that hold the same file) keeps its first, best, entry."""
    if len(sides) <= 1:
        return sides[0] if sides else []
    merged = sorted((g for side in sides for g in side), key=lambda g: -g[2])  # stable: ties keep index order
    seen: set[str] = set()
    out = []
    for g in merged:
        if g[0] not in seen:
            seen.add(g[0])
            out.append(g)
    return out


class _Lazy:
    """A value computed on first use (the allowed items cost a query; many searches never need them)."""

    def __init__(self, make):
        self._make, self._done, self._value = make, False, None

    def __call__(self):
        if not self._done:
            self._value, self._done = self._make(), True
        return self._value


def _top_files(fetch, k: int, catalog: Catalog, rows: dict[int, ItemRow],
               exclude_file: int | None) -> list[tuple[int, int, float]]:
    """At least k files from `fetch(n)` (the n best items), asking for more while items of the same
    files crowd them out; fewer only when fetch has no more to give."""
    want = 4 * k + 4
    while True:
        hits = fetch(want)
        rows.update(catalog.items([i for i, _ in hits if i not in rows]))
        groups = [g for g in _group(hits, rows) if g[0] != exclude_file]
        if len(groups) >= k or len(hits) < want:
            return groups
        want *= 4


def _vector_search(catalog: Catalog, vectors: Searcher, q: np.ndarray, filters: Filters, allowed: _Lazy):
    """fetch(n) -> the n best items by cosine that the filters allow."""
    rare = [False]

    def fetch(n: int) -> Hits:
        if filters.type != "all" and not filters.narrows and not rare[0]:
            # A kind filter alone: take the best of all kinds and keep that kind among them, instead of
            # reading every item id of the kind first (~40-60 ms on 100k items, a graph search 0.3 ms). A
            # kind too rare among the best falls through to the id filter.
            hits = _kind_candidates(catalog, vectors, q, n, filters.type)
            if hits is not None:
                return hits
            rare[0] = True
        return vectors.search(q, n, allowed=allowed())

    return fetch


def _keyword_search(catalog: Catalog, text: str, allowed: _Lazy):
    """fetch(n) -> the n best chunks (or pictures' words) for the words that the filters allow."""

    def fetch(n: int) -> Hits:
        hits = catalog.keyword_search(text, n)
        ids = allowed()
        if ids is None:
            return hits
        # Filtering after the limit can leave fewer than n: look further while more exist.
        kept = [h for h in hits if h[0] in ids]
        limit = n
        while len(kept) < n and len(hits) == limit:
            limit *= 4
            hits = catalog.keyword_search(text, limit)
            kept = [h for h in hits if h[0] in ids]
        return kept[:n]

    return fetch


def _kind_candidates(catalog: Catalog, vectors: Searcher, q: np.ndarray, want: int,
                     kind: str) -> Hits | None:
    """The best `want` items of one kind among the best of all kinds, or None when the kind is too rare
    for them to hold enough (the caller then filters by id). A scan costs the same however many hits
    it keeps, so it looks deeper than a graph walk, whose cost grows with them (at 100k items: a photo
    filter 106 -> 29 ms a query with the graph; an absent kind 27 -> 37 ms, the walk wasted)."""
    pool = want * (16 if vectors.scans_exactly else 4)
    hits = vectors.search(q, pool)
    rows = catalog.items([i for i, _ in hits])
    kept = [h for h in hits if h[0] in rows and rows[h[0]].kind == kind]
    if len(kept) >= want or len(hits) < pool:
        return kept[:want]
    return None


def _group(hits: Hits, rows: dict[int, ItemRow]) -> list[tuple[int, int, float]]:
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


def _rrf(vec_groups: list[Group], key_groups: list[Group]) -> list[Group]:
    scores: dict[str, float] = {}
    best_item: dict[str, tuple[int, int]] = {}
    for groups in (key_groups, vec_groups):  # keyword first: its chunk holds the words, the better snippet
        for r, (fid, item, _) in enumerate(groups):
            scores[fid] = scores.get(fid, 0.0) + 1.0 / (RRF_K + r + 1)
            best_item.setdefault(fid, item)
    order = sorted(scores, key=lambda f: -scores[f])
    return [(fid, best_item[fid], scores[fid]) for fid in order]


def _snippet(row: ItemRow, query_text: str | None, opening: Callable[[int], str | None] | None = None) -> str | None:
    """About SNIPPET_CHARS of the chunk's text around the query's words (the whole query where it occurs,
    else its longest word found, compared as the keyword search compares: case and accents folded),
    opening and closing on word boundaries (a Chinese, Japanese or Korean character is a word). A
    document chunk that holds none of the words (a hit by meaning) shows the document's opening
    instead, from `opening(file_id)`: a passage that only looks like a match would mislead."""
    if row.text is None:
        return None
    text = row.text
    found = _find_query(text, query_text) if query_text else None
    if found is None and opening is not None and row.kind == "document":
        text = opening(row.file_id) or text
    if len(text) <= SNIPPET_CHARS:
        return " ".join(text.split())
    start, first, last = 0, SNIPPET_CHARS, 0  # the window, and the match's span it must keep
    if found is not None:
        first, length = found
        last = first + length
        start = first if length > SNIPPET_CHARS else max(0, min(first - SNIPPET_CHARS // 3, len(text) - SNIPPET_CHARS))
    end = min(len(text), start + SNIPPET_CHARS)
    if start > 0 and not _boundary(text, start):  # forward to the next word, never past the match
        start = next((i for i in range(start + 1, min(first, end) + 1) if _boundary(text, i)), start)
    if end < len(text) and not _boundary(text, end):  # back to the last whole word, never into the match
        end = next((i for i in range(end - 1, max(last, start), -1) if _boundary(text, i)), end)
    piece = " ".join(text[start:end].split())
    return ("…" if start > 0 else "") + piece + ("…" if end < len(text) else "")


def _boundary(text: str, i: int) -> bool:
    """Whether a word boundary lies before text[i]: a space, punctuation, or a CJK character either side."""
    a, b = text[i - 1], text[i]
    return not (a.isalnum() and b.isalnum()) or _cjk(a) or _cjk(b)


def _cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF


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
