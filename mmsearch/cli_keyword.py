"""`mmsearch query --mode keyword WORDS`, answered from the catalog with the standard library alone.

A keyword query needs no model and no vector, and people compare its start with a desktop search
engine's (Recoll answers in about 6 ms). Loading the library costs more than that several times over
(dataclasses, typing, pathlib, logging and the modules built on them: ~30 ms), so the console script
answers the plain keyword line here: one index, `-k`, `--json`, no filter. It reads the catalog through
keyword.py, the functions search.py ranks a query's words with, and takes the same steps as
search.rank_many in keyword mode: the best passages, one per file, asking for more until k files;
where the words are; the score of their band; the snippet; how many files hold all the words.
Anything else, and anything unexpected (no index there, another schema, a locked or unreadable
catalog), goes to the library, which answers it or says what is wrong. tests/test_cli_keyword.py holds
the two to the same output, byte for byte.
"""

from __future__ import annotations

import os
import sqlite3

from . import keyword
from .cli_output import write_hits
from .filenames import from_stored, json_fields, location

# The catalog schema the SQL here and in keyword.py reads (catalog.SCHEMA_VERSION; a test holds them
# equal, so a new schema comes here to be checked).
SCHEMA_VERSION = 9
# Index(readonly=True).search's defaults: a line that sets any other value goes to the library, which
# checks it (a model to check against the index, a device, filters).
_LIBRARY_DEFAULTS = {"image": None, "type_": "all", "under": None, "after": None, "before": None,
                     "min_similarity": None, "model": None, "device": "auto", "variant": None}


def answer(options: dict[str, object]) -> bool:
    """Print the results of a parsed query line (cli_query.parse_query_args) and return True; or
    return False, having printed nothing, where the library is to answer it."""
    text, k, index_dirs = options["text"], options["k"], options["index_dir"]
    if (options["mode"] != "keyword" or not isinstance(text, str) or not text.strip()
            or not isinstance(k, int) or k < 1 or (isinstance(index_dirs, list) and len(index_dirs) > 1)
            or any(options[name] != value for name, value in _LIBRARY_DEFAULTS.items())):
        return False
    folder = index_dirs[0] if isinstance(index_dirs, list) else _default_index()
    if folder is None:
        return False
    catalog = os.path.join(os.path.abspath(os.path.expanduser(folder)), "catalog.db")
    if not os.path.isfile(catalog) or any(c in catalog for c in "?#%"):  # (a URI's specials: the library opens those)
        return False
    try:
        conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() != (str(SCHEMA_VERSION),):
                return False
            hits = _ranked(conn, text, k)
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    write_hits(hits, bool(options["as_json"]))
    return True


def _default_index() -> str | None:
    """paths.default_index_dir(): $MMSEARCH_HOME/index, else the platform's user data folder's."""
    home = os.environ.get("MMSEARCH_HOME")
    if not home:
        try:
            from platformdirs import user_data_dir
        except ImportError:
            return None
        home = user_data_dir("mmsearch", appauthor=False)
    return os.path.join(os.path.expanduser(home), "index")


class Hit:
    """A result as search.SearchResult holds it (the fields a keyword hit has; the others None)."""

    def __init__(self, rank: int, path: str, kind: str, score: float, snippet: str | None, page: int | None,
                 item_id: int | None, width: int | None, height: int | None, taken_at: str | None):
        self.rank, self.path, self.kind, self.score, self.match = rank, path, kind, score, "words"
        self.similarity, self.snippet, self.page, self.item_id = None, snippet, page, item_id
        self.width, self.height, self.taken_at, self.time_s = width, height, taken_at, None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {name: getattr(self, name) for name in (
            "rank", "path", "kind", "score", "match", "similarity", "snippet", "page", "item_id", "width", "height",
            "taken_at", "time_s")}
        out["location"] = location(self.path, self.page)
        out.update(json_fields(self.path))
        return out


class Hits(list):
    """search.Results as cli_output.write_hits reads it."""

    containing: dict[str, int] | None = None
    words: str | None = None
    words_only: int = 0


def _ranked(conn: sqlite3.Connection, text: str, k: int) -> Hits:
    rows: dict[int, tuple] = {}  # passage id -> keyword.PASSAGE_COLUMNS
    want = 4 * k + 4
    while True:  # search._top_files: ask for more while passages of the same files crowd others out
        found = keyword.search(conn, text, want)
        rows.update((r[0], r) for r in keyword.passage_rows(conn, [i for i, _ in found if i not in rows]))
        best: dict[int, tuple[tuple, float]] = {}  # file id -> its best passage and its score
        for passage_id, score in found:
            row = rows.get(passage_id)
            if row is not None and row[1] not in best:
                best[row[1]] = (row, score)
        if len(best) >= k or len(found) < want:
            break
        want *= 4
    placed = []
    for row, score in best.values():  # search._place_words, search._ranked's keyword mode
        passage_id, file_id, path, path_bytes, kind, page, start, _end, passage = row[:9]
        at = keyword.find(passage, text)
        item_id = keyword.item_at(conn, file_id, page, start + (at[0] if at else 0))
        placed.append((keyword.score(int(score), score - int(score)), row, at, item_id))
    placed.sort(key=lambda p: -p[0])  # stable, as search._ranked
    out = Hits()
    for rank, (score, row, at, item_id) in enumerate(placed[:k], 1):
        passage_id, file_id, path, path_bytes, kind, page, start, _end, passage, _media, width, height, taken_at = row[:13]
        shown = passage  # search._shown_text: a passage without the words shows the document's opening
        if kind == "document" and at is None:
            shown = keyword.opening(conn, file_id) or passage
        out.append(Hit(rank, from_stored(path, path_bytes), kind, round(float(score), 6),
                       keyword.snippet(shown, text, at), page, item_id, width, height, taken_at))
    counts = {"image": 0, "document": 0}  # search._count_containing
    for kind in keyword.file_kinds(conn, keyword.files_containing(conn, text)).values():
        counts[kind] = counts.get(kind, 0) + 1
    out.containing, out.words = counts, text
    out.words_only = keyword.documents_words_only(conn)  # search.rank_many: Catalog.pending_counts
    return out
