"""How a query's words meet the text: folding, the FTS5 expressions, the search over passages, where
the words are in a text, and the snippet around them.

The catalog's keyword index (catalog.py: `passages_fts`, over the passages of passages.py) is read
here, through a plain sqlite3 connection, and search.py ranks with it. It needs nothing but the
standard library's `re`: a keyword query from the command line (cli_keyword.py) runs on this module
without loading the rest of the library.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Sequence

# Scripts written without spaces between words: Han (with its iteration marks and radicals), kana, and
# Hangul, whose words carry their particles. The keyword index takes each character as a word of its
# own (fts_text), and so do passages.
CJK_RANGES = (
    "\u1100-\u11ff\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3040-\u30ff\u3131-\u318e"
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)


@functools.cache
def cjk() -> re.Pattern[str]:
    """One CJK character (2-6 ms to compile: not at import, and never for an ASCII query)."""
    return re.compile(f"[{CJK_RANGES}]")


# -- the text the index holds, and a query's expressions ---------------------------------------------
# Scripts written without spaces between words, whose runs FTS5's unicode61 tokenizer would make one
# token each: each character becomes a token of its own; a query's run of them becomes a phrase, which
# matches exactly that run (measured against trigram and bigrams: benchmarks/documents.py cjk).


def fts_text(text: str) -> str:
    """The text passages_fts indexes for a passage (and a query is cut like it): CJK characters spaced apart."""
    if text.isascii():
        return text
    return cjk().sub(r" \g<0> ", text)


def fold(text: str) -> str:
    """Lower case without accents, one character for one (positions in the result are positions in
    `text`): how keyword search compares a query with a chunk as typed, and where a snippet finds it."""
    if text.isascii():
        return text.lower()
    return text.translate(_FOLDED)


class _Folded(dict):
    """str.translate's table for fold, each character folded the first time it is met (a character at a
    time in Python cost a query's snippets 10 ms on a page of accented text)."""

    def __missing__(self, code: int) -> str:
        import unicodedata

        ch = chr(code)
        folded = ch.lower() if ch.isascii() else unicodedata.normalize("NFD", ch)[0].lower()[0]
        self[code] = folded
        return folded


_FOLDED = _Folded()


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the FTS triggers call; every connection that may write items needs them."""
    conn.create_function("mmsearch_fts_text", 1, fts_text, deterministic=True)


def _phrase(text: str) -> str:
    # Inside double quotes FTS5 hands everything to the tokenizer: no operator, column or syntax surprises.
    return '"' + " ".join(fts_text(text).split()).replace('"', '""') + '"'


def fts_queries(text: str) -> list[str]:
    """A user's words as FTS5 queries, strongest first: the words as one phrase, all of them, any of them.
    A word is what the user separated by spaces (`Keep-Alive` is one: the phrase `keep alive`); one
    word gives one query."""
    words = [w for w in text.split() if any(c.isalnum() for c in w)]  # what unicode61 makes tokens of
    if not words:
        return []
    each = [_phrase(w) for w in words]
    if len(each) == 1:
        return each
    return [_phrase(" ".join(words)), " AND ".join(each), " OR ".join(each)]


def fts_query(text: str) -> str:
    """The loosest of fts_queries (any of the words), for callers that want one expression."""
    queries = fts_queries(text)
    return queries[-1] if queries else ""


# -- reading the index ---------------------------------------------------------------------------


def search(conn: sqlite3.Connection, query: str, limit: int) -> list[tuple[int, float]]:
    """FTS5 over the passages of documents and of the words read in pictures: (passage id, score),
    best first. A user who types several words means them together: first come the passages that hold
    the query as typed (punctuation too; case, accents and spacing aside), then those holding its words
    as a phrase, then all of its words, then any. The score's integer part says which (3, 2, 1, 0; a
    one-word query has only 3 and 2), its fraction is bm25 within that (squashed into [0, 1), higher is
    better)."""
    out: list[tuple[int, float]] = []
    seen: set[int] = set()
    for i, match in enumerate(fts_queries(query)):
        if len(out) >= limit:
            break
        try:
            # Each tier's matches include the stronger tiers' (a phrase holds all its words), so
            # `limit` rows always hold enough new ones.
            rows = conn.execute(
                "SELECT rowid, -bm25(passages_fts) FROM passages_fts WHERE passages_fts MATCH ?"
                " ORDER BY bm25(passages_fts) LIMIT ?", (match, limit),
            ).fetchall()
        except sqlite3.OperationalError:
            return out
        levels = {passage_id: 2 - i for passage_id, _ in rows}
        if i == 0 and rows:
            # The phrase ignores punctuation ("4.19.0, 18 August" matches "4.19.0 (18 August"): the
            # passages with the query as typed go first.
            typed = fold(" ".join(query.split()))
            marks = ",".join("?" * len(rows))
            for passage_id, text in conn.execute(f"SELECT id, text FROM passages WHERE id IN ({marks})",
                                                 [r[0] for r in rows]):
                if typed in fold(" ".join(text.split())):
                    levels[passage_id] = 3
            rows.sort(key=lambda r: -levels[r[0]])  # stable: bm25 order within each level
        for passage_id, relevance in rows:
            if passage_id not in seen and len(out) < limit:
                seen.add(passage_id)
                relevance = max(float(relevance), 0.0)
                out.append((int(passage_id), levels[passage_id] + relevance / (1.0 + relevance)))
    return out


def files_containing(conn: sqlite3.Connection, query: str, limit: int = 100_000) -> list[int]:
    """The files (ids) with a passage that holds all of the query's words (as search matches them), at
    most `limit` of them."""
    tiers = fts_queries(query)
    if not tiers:
        return []
    match = tiers[0] if len(tiers) == 1 else tiers[1]
    try:
        return [r[0] for r in conn.execute(
            "SELECT DISTINCT passages.file_id FROM passages_fts JOIN passages ON passages.id = passages_fts.rowid"
            " WHERE passages_fts MATCH ? LIMIT ?", (match, limit))]
    except sqlite3.OperationalError:
        return []


# A passage with its file's fields (catalog.PassageRow is made of these, path decoded by filenames.from_stored).
PASSAGE_COLUMNS = ('passages.id, passages.file_id, files.path, files.path_bytes, files.kind, passages.page,'
                   ' passages.start, passages."end", passages.text, files.media_type, files.width, files.height,'
                   ' files.taken_at, files.mtime_ns')


def passage_rows(conn: sqlite3.Connection, ids: Sequence[int]) -> list[tuple]:
    """The rows of PASSAGE_COLUMNS of these passages (ids gone since are left out), in no order."""
    out: list[tuple] = []
    for i in range(0, len(ids), 900):
        part = list(ids[i : i + 900])
        marks = ",".join("?" * len(part))
        out += conn.execute(f"SELECT {PASSAGE_COLUMNS} FROM passages JOIN files ON files.id = passages.file_id"
                            f" WHERE passages.id IN ({marks})", part).fetchall()
    return out


def item_at(conn: sqlite3.Connection, file_id: int, page: int | None, position: int) -> int | None:
    """The item of a file that a place in its text belongs to: the chunk of that page holding the
    position (the last to start at or before it), else the file's first item with a vector (a
    picture's own, for the words read in it: items of kind 'ocr' hold words and no vector)."""
    row = conn.execute(
        "SELECT id FROM items WHERE file_id = ? AND page IS ? AND start <= ? AND kind != 'ocr' ORDER BY start DESC"
        " LIMIT 1", (file_id, page, position)).fetchone()
    if row is None:
        row = conn.execute("SELECT id FROM items WHERE file_id = ? ORDER BY kind = 'ocr', id LIMIT 1",
                           (file_id,)).fetchone()
    return None if row is None else int(row[0])


def file_kinds(conn: sqlite3.Connection, file_ids: Sequence[int]) -> dict[int, str]:
    """The kind of each of these files ("image", "document"...), by id."""
    out: dict[int, str] = {}
    for lo in range(0, len(file_ids), 900):
        part = list(file_ids[lo : lo + 900])
        out.update(conn.execute(f"SELECT id, kind FROM files WHERE id IN ({','.join('?' * len(part))})", part).fetchall())
    return out


def documents_words_only(conn: sqlite3.Connection) -> int:
    """How many documents are searchable by their words only for now: those with chunks still waiting
    for their vectors (Catalog.pending_counts counts the chunks too)."""
    return int(conn.execute("SELECT count(DISTINCT items.file_id) FROM vectors_pending"
                            " CROSS JOIN items ON items.id = vectors_pending.item_id").fetchone()[0])


def opening(conn: sqlite3.Connection, file_id: int) -> str | None:
    """The text a document opens with (its first chunk's): what a document shows when the passage that
    was found does not show the query's words."""
    r = conn.execute("SELECT text FROM items WHERE file_id = ? AND text IS NOT NULL AND kind = 'document'"
                     " ORDER BY page, start LIMIT 1", (file_id,)).fetchone()
    return r[0] if r else None


# -- scores ----------------------------------------------------------------------------------------
# (base, width) of the score band of each level of search(): as typed, as a phrase, all the words;
# what holds only some of them scores in [0, SOME_WIDTH) (search.py: the band of what is related).
BANDS = {3: (0.875, 0.125), 2: (0.75, 0.125), 1: (0.5, 0.25)}
SOME_WIDTH = 0.5


def score(level: int, fraction: float) -> float:
    """A keyword-mode score in [0, 1]: the band of the level, the place within it."""
    base, width = BANDS.get(level, (0.0, SOME_WIDTH))
    return base + width * fraction


# -- where the words are -----------------------------------------------------------------------------

SNIPPET_CHARS = 240


def find(text: str, query: str | None) -> tuple[int, int] | None:
    """(position, length) in `text` of the query as typed (case, accents and spacing aside), else of its
    words as a phrase (punctuation between them aside, as the keyword index matches them), else of its
    longest word that occurs on its own."""
    if not query:
        return None
    folded = fold(text)
    words = query.split()
    if not words:
        return None
    patterns = [r"\s+".join(re.escape(fold(w)) for w in words)]
    query_tokens = tokens(query)
    if len(query_tokens) > 1:
        patterns.append(r"[\W_]*".join(re.escape(t) for t in query_tokens))
    for pattern in patterns:
        m = re.search(pattern, folded)
        if m:
            return m.start(), m.end() - m.start()
    for token in sorted(set(query_tokens), key=len, reverse=True):
        if len(token) < 2 and token.isascii():
            continue  # one Latin letter would match anywhere; one CJK character is a word
        m = re.search(whole(token), folded)
        if m:
            return m.start(), m.end() - m.start()
    return None


def share_held(text: str, query: str) -> float:
    """The share of the query's words (as the index cuts them) that `text` holds as words."""
    wanted = set(tokens(query))
    folded = fold(text)
    return sum(1 for t in wanted if re.search(whole(t), folded)) / max(len(wanted), 1)


def tokens(query: str) -> list[str]:
    """The query's words as the keyword index cuts them (each CJK character one), folded."""
    return re.findall(r"[^\W_]+", fold(fts_text(query)))


def whole(token: str) -> str:
    """A pattern for a folded token standing as a word of its own (a CJK character always does)."""
    return rf"(?<![^\W_]){re.escape(token)}(?![^\W_])" if token.isascii() else re.escape(token)


def snippet(text: str | None, query: str | None, at: tuple[int, int] | None = None) -> str | None:
    """About SNIPPET_CHARS of `text` centred on the query's words (at `at`, else where find() finds
    them), opening and closing on word boundaries (a CJK character is a word), whitespace made single
    spaces."""
    if text is None:
        return None
    if len(text) <= SNIPPET_CHARS:
        return " ".join(text.split())
    found = at if at is not None else find(text, query)
    start, first, last = 0, SNIPPET_CHARS, 0  # the window, and the match's span it must keep
    if found is not None:
        first, length = found
        last = first + length
        if length > SNIPPET_CHARS:
            start = first  # a long match: its start
        else:
            start = max(0, min(first + length // 2 - SNIPPET_CHARS // 2, len(text) - SNIPPET_CHARS))
    end = min(len(text), start + SNIPPET_CHARS)
    if start > 0 and not _boundary(text, start):
        start = next((i for i in range(start + 1, min(first, end) + 1) if _boundary(text, i)), start)
    if end < len(text) and not _boundary(text, end):
        end = next((i for i in range(end - 1, max(last, start), -1) if _boundary(text, i)), end)
    piece = " ".join(text[start:end].split())
    return ("…" if start > 0 else "") + piece + ("…" if end < len(text) else "")


def _boundary(text: str, i: int) -> bool:
    """Whether a word boundary lies before text[i]."""
    a, b = text[i - 1], text[i]
    if a.isspace() or b.isspace():
        return True
    return bool(cjk().match(a) or cjk().match(b))
