"""A query: candidates by meaning and by words, filters, one result per file (a video: per moment), and one score.

Each hit says why it is there (`match`): "words" (the file holds the query's words), "meaning" (its
vector is close to the query's), or "both". A text query over an index ranks the files that hold its
words first (the words as a phrase, then all of them) and hides the files found by meaning alone
whose similarity is below the model's relevance floor (calibration.py; `min_similarity` sets it).

`score` is in [0, 1] and means the same on every row of every output (docs/search.md):

    0.875 - 1       the file holds the query as typed (punctuation too)
    0.75  - 0.875   its words as a phrase (a one-word query: the word)
    0.5   - 0.75    all of its words
    0     - 0.5     related: found by meaning, half the meaning part (so the relevance floor is
                    0.25, and a vector equal to the query's just under 0.5); or holding at least half of the
                    query's words, a quarter of (the share of its words held + the meaning part)

Within a band of words, the place is r in [0, 1): the passage's BM25 squashed into [0, 1), averaged
with the meaning part where the query has a vector. The meaning part is calibration.meaning: 0.5 at the
floor, towards 1 far above it. `similarity` is the cosine wherever a vector took part.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import arguments, keyword
from .calibration import META_KEY, Calibration, Null, meaning
from .catalog import Catalog, ItemRow, PassageRow
from .errors import InvalidArgument
from .filenames import json_fields, location

if TYPE_CHECKING:
    # numpy and the vectors load with the first query that has a vector: a keyword query needs neither.
    import numpy as np

    from .vectors import Searcher, VectorStore

MODES = arguments.MODES
TYPES = arguments.TYPES
MATCHES = ("words", "meaning", "both")
# Files holding the query's words score in keyword.BANDS (one band for each level of keyword.search: as
# typed, as a phrase, all the words); files found by meaning (or some words) in [0, MEANING_WIDTH).
MEANING_WIDTH = keyword.SOME_WIDTH
_BELOW_ONE = 0.9999  # keeps each band of words below the next
# A video is a result once per moment that matches: its frames that match less well within this many
# seconds of one that matches better are that moment (a long scene keeps a frame every 10 s).
MOMENT_S = 5.0
# The kind of item whose calibration a video's frames take: they are pictures, encoded as photos are.
_CALIBRATED_AS = {"video": "image"}


@dataclass(frozen=True)
class Filters:
    type: str = "all"  # "all" | "image" | "document" | "video"
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

    def _conditions(self) -> dict[str, Any]:
        return {"kind": None if self.type == "all" else self.type, "under": self.under,
                "after": self.after.timestamp() if self.after else None,
                "before": self.before.timestamp() if self.before else None}

    def item_ids(self, catalog: Catalog) -> set[int] | None:
        """The items these filters allow (None: all of them)."""
        if self.type == "all" and not self.narrows:
            return None
        return set(catalog.item_ids_matching(**self._conditions()))

    def file_ids(self, catalog: Catalog) -> set[int] | None:
        """The files these filters allow (None: all of them)."""
        if self.type == "all" and not self.narrows:
            return None
        return set(catalog.file_ids_matching(**self._conditions()))


@dataclass(frozen=True)
class SearchResult:
    rank: int
    path: str  # opens the file (for a name that is not UTF-8, a str with surrogate escapes)
    kind: str  # "image" | "document" | "video"
    score: float  # relevance in [0, 1], the same scale everywhere (see the module's docstring)
    match: str  # why it is here: "words", "meaning" or "both"
    similarity: float | None  # cosine similarity of the file's item to the query vector, where there is one
    snippet: str | None  # the passage with the query's words, or the chunk found by meaning, or the words read in a picture
    page: int | None
    item_id: int
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    time_s: float | None = None  # a video's moment: its frame's time, in seconds from the start

    def to_dict(self) -> dict[str, Any]:
        """As `--json` prints it: the path as filenames.json_fields writes it, and the page as a
        `location` a person reads ("slide 3" in a .pptx; filenames.location)."""
        out = asdict(self)
        out["location"] = location(self.path, self.page)
        out.update(json_fields(self.path))
        return out


class Results(list):  # list[SearchResult]
    """The hits, best first, and for a query with words how many files hold them all."""

    containing: dict[str, int] | None = None  # files by kind ("image", "document") that hold the query's words
    words: str | None = None  # the query's words, where it had any
    words_only: int = 0  # documents searchable by their words only for now (their vectors are still to come)

    @property
    def contain_count(self) -> int:
        return sum((self.containing or {}).values())


Hits = list[tuple[int, float]]  # (item or passage id, score), best first


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
    query_kind: str = "text",
    min_similarity: float | None = None,
) -> Results:
    """The k best files for a query vector and/or its words, best first: k files whenever k match.

    Documents have many chunks and passages, so each side asks for more until it holds k distinct
    files or has nothing more to give."""
    return rank_many([(catalog, vectors, exclude_file)], query_vector=query_vector, query_text=query_text, k=k,
                     filters=filters, mode=mode, query_kind=query_kind, min_similarity=min_similarity)


Shard = tuple[Catalog, "VectorStore | None", "int | None"]  # (catalog, vectors, a file id to leave out)


@dataclass
class _Found:
    """One file as one side found it (at its best item or passage)."""

    path: str
    shard: int
    row: ItemRow | PassageRow
    cosine: float | None = None  # vector side: its best item's; words side: its passage's chunk's
    level: int = -1  # words side: keyword.search's level
    fraction: float = 0.0  # words side: BM25 within the level, in [0, 1)
    item_id: int | None = None
    at: tuple[int, int] | None = None  # (position, length) of the words in the row's text
    share: float = 0.0  # words side: the share of the query's words the passage holds

    @property
    def key(self) -> str | tuple[str, float]:
        """What one result stands for: a file, or a video's moment."""
        t = getattr(self.row, "time_s", None)
        return self.path if t is None else (self.path, t)


def rank_many(shards: Sequence[Shard], *, query_vector: np.ndarray | None, query_text: str | None, k: int,
              filters: Filters, mode: str = "hybrid", query_kind: str = "text",
              min_similarity: float | None = None) -> Results:
    """The k best files over several indexes of one model (rank() is the case of one).

    Each side is ranked across all indexes before the two are put together: cosines of one model compare
    as they are, keyword hits by their level first (BM25 within a level uses each index's own word
    statistics, as a sharded search engine does without a global pass). A file found in two indexes
    (the same path) counts once, at its best. `query_kind`: "text", "image" or "document" (a
    document's vector, `similar`), which picks the calibration of its cosines."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    use_vectors = query_vector is not None and mode != "keyword"
    use_words = bool(query_text) and mode != "vector"
    out = Results()
    if not (use_vectors or use_words):
        return out
    mode = "hybrid" if use_vectors and use_words else "vector" if use_vectors else "keyword"
    q = None
    if query_vector is not None:
        import numpy as np

        q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    vec_sides: list[list[_Found]] = []
    key_sides: list[list[_Found]] = []
    calibrations: list[Calibration | None] = []
    for s, (catalog, vectors, exclude_file) in enumerate(shards):
        calibrations.append(Calibration.from_json(catalog.meta(META_KEY)) if q is not None else None)
        if use_vectors:
            assert q is not None and vectors is not None
            allowed = _Lazy(functools.partial(filters.item_ids, catalog))
            rows: dict[int, ItemRow] = {}
            groups = _top_files(_vector_search(catalog, vectors.searcher(), q, filters, allowed), k, catalog.items,
                                rows, exclude_file)
            vec_sides.append([_Found(rows[i].path, s, rows[i], cosine=score, item_id=i) for _, i, score in groups])
        if use_words:
            assert query_text is not None
            files = _Lazy(functools.partial(filters.file_ids, catalog))
            prows: dict[int, PassageRow] = {}
            groups = _top_files(_keyword_search(catalog, query_text, files, prows), k, catalog.passages, prows,
                                exclude_file)
            key_sides.append([_Found(prows[p].path, s, prows[p], level=int(score), fraction=score - int(score))
                              for _, p, score in groups])
            _count_containing(out, catalog, query_text, files(), exclude_file)
    vec = _merged(vec_sides, lambda f: f.cosine or 0.0)
    key = _merged(key_sides, lambda f: f.level + f.fraction)
    for found in key:
        _place_words(found, shards[found.shard][0], query_text or "")
    if q is not None:
        _cosines_of(key, vec, shards, q)
    query_kind = _CALIBRATED_AS.get(query_kind, query_kind)
    nulls = {(s, kind): (c.null(query_kind, _CALIBRATED_AS.get(kind, kind)) if c else None)
             for s, c in enumerate(calibrations) for kind in ("image", "document", "video")}
    ranked = _ranked(mode, vec, key, nulls, min_similarity)
    for score, match, found in ranked[:k]:
        row = found.row
        assert found.item_id is not None
        out.append(SearchResult(
            rank=len(out) + 1, path=row.path, kind=row.kind, score=round(float(score), 6), match=match,
            similarity=None if found.cosine is None else float(found.cosine),
            snippet=keyword.snippet(_shown_text(found, shards[found.shard][0], query_text), query_text, found.at),
            page=row.page, item_id=found.item_id, width=row.width, height=row.height, taken_at=row.taken_at,
            time_s=getattr(row, "time_s", None),
        ))
    if use_words:
        out.words = query_text
    out.words_only = sum(catalog.pending_counts()[1] for catalog, _, _ in shards)
    return out


def _shown_text(found: _Found, catalog: Catalog, query_text: str | None) -> str | None:
    """The text a hit's snippet is cut from: its passage, chunk or words read. A document whose chunk
    holds none of the query's words (found by meaning alone) shows the document's opening instead: a
    passage that only looks like a match would mislead."""
    row = found.row
    if (row.kind == "document" and row.text is not None and found.at is None
            and keyword.find(row.text, query_text) is None):
        return catalog.opening(row.file_id) or row.text
    return row.text


def _ranked(mode: str, vec: list[_Found], key: list[_Found], nulls: dict[tuple[int, str], Null | None],
            min_similarity: float | None) -> list[tuple[float, str, _Found]]:
    """(score, match, found), best first."""

    def part(found: _Found) -> float | None:
        if found.cosine is None:
            return None
        return min(meaning(nulls.get((found.shard, found.row.kind)), found.cosine), _BELOW_ONE)

    def above_floor(found: _Found) -> bool | None:
        """Whether its cosine reaches the floor (None: no floor known, none given)."""
        if found.cosine is None:
            return False
        if min_similarity is not None:
            return found.cosine >= min_similarity
        null = nulls.get((found.shard, found.row.kind))
        return None if null is None else found.cosine >= null.floor

    out: list[tuple[float, str, _Found]] = []
    if mode == "keyword":
        for found in key:
            out.append((keyword.score(found.level, found.fraction), "words", found))
    elif mode == "vector":
        for found in vec:
            if min_similarity is None or above_floor(found):
                out.append((MEANING_WIDTH * (part(found) or 0.0), "meaning", found))
    else:
        by_vector = {f.key for f in vec}
        holding = set()
        for found in key:
            m = part(found)
            passes = above_floor(found)
            if found.level >= 1:  # holds all the query's words
                holding.add(found.key)
                base, width = keyword.BANDS[found.level]
                r = found.fraction if m is None else (found.fraction + m) / 2
                agrees = passes if passes is not None else found.key in by_vector
                out.append((base + width * min(r, _BELOW_ONE), "both" if agrees else "words", found))
        for found in key:  # some of the words: related, where they are at least half of them
            if found.level < 1 and found.share >= 0.5:
                holding.add(found.key)
                passes = above_floor(found)
                score = MEANING_WIDTH / 2 * (min(found.share, _BELOW_ONE) + (part(found) or 0.0))
                out.append((score, "both" if passes else "words", found))
        for found in [*vec, *(f for f in key if f.level < 1)]:
            if found.key in holding:
                continue
            if above_floor(found) is not False:
                holding.add(found.key)
                out.append((MEANING_WIDTH * (part(found) or 0.0), "meaning", found))
    out.sort(key=lambda t: -t[0])  # stable: each side's order within equal scores
    return out


def _merged(sides: list[list[_Found]], score: Callable[[_Found], float]) -> list[_Found]:
    """One ranking from each index's (best first): by score, ties in index order; a path (or a video's
    moment) met twice (two indexes that hold the same file) keeps its first, best, entry."""
    if len(sides) <= 1:
        return sides[0] if sides else []
    merged = sorted((f for side in sides for f in side), key=lambda f: -score(f))  # stable
    seen: set[str | tuple[str, float]] = set()
    out = []
    for f in merged:
        if f.key not in seen:
            seen.add(f.key)
            out.append(f)
    return out


def _place_words(found: _Found, catalog: Catalog, query: str) -> None:
    """Where the query's words are in a passage, and the item (chunk) that holds that place."""
    row = found.row
    assert isinstance(row, PassageRow)
    found.at = keyword.find(row.text, query)
    if found.level < 1:
        found.share = keyword.share_held(row.text, query)
    found.item_id = catalog.item_at(row.file_id, row.page, row.start + (found.at[0] if found.at else 0))


def _cosines_of(key: list[_Found], vec: list[_Found], shards: Sequence[Shard], q: np.ndarray) -> None:
    """The cosine of each file the words side found: the vector side's where it found the file too (its
    best item), else that of the chunk holding the words."""
    best = {f.key: f for f in vec}
    missing: dict[int, dict[int, list[_Found]]] = {}
    for found in key:
        other = best.get(found.key)
        if other is not None:
            found.cosine = other.cosine
        elif found.item_id is not None:
            missing.setdefault(found.shard, {}).setdefault(found.item_id, []).append(found)
    for s, wanted in missing.items():
        for ids, vecs in shards[s][0].vectors_for(list(wanted)):
            for i, v in zip(ids.tolist(), vecs @ q):
                for found in wanted[int(i)]:
                    found.cosine = float(v)


def _count_containing(out: Results, catalog: Catalog, query: str, allowed: set[int] | None,
                      exclude_file: int | None) -> None:
    """Add the files of this index that hold all of the query's words to out.containing, by kind."""
    ids = [i for i in catalog.files_containing(query) if (allowed is None or i in allowed) and i != exclude_file]
    counts = out.containing if out.containing is not None else {"image": 0, "document": 0}
    for kind in catalog.file_kinds(ids).values():
        counts[kind] = counts.get(kind, 0) + 1
    out.containing = counts


class _Lazy:
    """A value computed on first use (the allowed items cost a query; many searches never need them)."""

    def __init__(self, make):
        self._make, self._done, self._value = make, False, None

    def __call__(self):
        if not self._done:
            self._value, self._done = self._make(), True
        return self._value


def _top_files(fetch, k: int, rows_of, rows: dict, exclude_file: int | None) -> list[tuple[int, int, float]]:
    """At least k files from `fetch(n)` (the n best items or passages), asking for more while those of
    the same files crowd them out; fewer only when fetch has no more to give."""
    want = 4 * k + 4
    while True:
        hits = fetch(want)
        rows.update(rows_of([i for i, _ in hits if i not in rows]))
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


def _keyword_search(catalog: Catalog, text: str, allowed: _Lazy, rows: dict[int, PassageRow]):
    """fetch(n) -> the n best passages for the words in files the filters allow."""

    def fetch(n: int) -> Hits:
        hits = catalog.keyword_search(text, n)
        files = allowed()
        if files is None:
            return hits
        # Filtering after the limit can leave fewer than n: look further while more exist.
        limit = n
        while True:
            rows.update(catalog.passages([i for i, _ in hits if i not in rows]))
            kept = [h for h in hits if h[0] in rows and rows[h[0]].file_id in files]
            if len(kept) >= n or len(hits) < limit:
                return kept[:n]
            limit *= 4
            hits = catalog.keyword_search(text, limit)

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


def _group(hits: Hits, rows: dict) -> list[tuple[int, int, float]]:
    """One entry per file, its best item or passage first seen (hits are best first): (file id, id, score);
    a video one per moment (its frames within MOMENT_S of a better one's are that one)."""
    seen: set[int] = set()
    moments: dict[int, list[float]] = {}  # a video's file id -> the times of the frames kept for it
    out = []
    for item_id, score in hits:
        row = rows.get(item_id)
        if row is None or row.file_id in seen:  # gone from the catalog since the ANN file was saved
            continue
        t = getattr(row, "time_s", None)
        if t is not None:
            kept = moments.setdefault(row.file_id, [])
            if any(abs(t - other) < MOMENT_S for other in kept):
                continue
            kept.append(t)
        else:
            seen.add(row.file_id)
        out.append((row.file_id, item_id, score))
    return out
