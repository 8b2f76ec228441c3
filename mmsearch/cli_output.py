"""How `query` and `similar` print their results: JSON, or a plain aligned table.

It needs only the standard library: the console script's keyword queries (cli_keyword.py) print with
it without loading the library.
"""

from __future__ import annotations

import sys


def write_hits(hits, as_json: bool) -> None:
    """Results as JSON, or as a plain aligned table (rich costs ~150 ms of imports, most of a cold
    query's budget); for `query` and `similar`. A query with words says how many files hold them, and
    shows the rest apart, under "Related" (found by meaning, or holding some of the words)."""
    if as_json:
        import json

        sys.stdout.write(json.dumps([h.to_dict() for h in hits], indent=2) + "\n")
        return
    from .filenames import location, printable, shown

    words = getattr(hits, "words", None)
    lines = [] if words is None else [containing_line(hits.containing or {}, words)]
    waiting = getattr(hits, "words_only", 0)
    if waiting:
        them = "documents are searchable by words only until their" if waiting > 1 else \
            "document is searchable by words only until its"
        lines.insert(0, f"({waiting} {them} vectors are computed: `mmsearch index` again finishes them)")
    if not hits:
        sys.stdout.write("\n".join([*lines, "No results."]) + "\n")
        return
    rows = [("#", "score", "match", "kind", "path", "snippet")]
    for h in hits:
        where = shown(h.path)
        if h.page:
            at = location(h.path, h.page) or ""
            where += f" ({'p. ' + str(h.page) if at.startswith('page ') else at})"
        if getattr(h, "time_s", None) is not None:
            where += f" ({clock(h.time_s)})"
        rows.append((str(h.rank), f"{h.score:.3f}", h.match, h.kind, where,
                     printable((h.snippet or "").replace("\n", " "))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join([*(r[i].rjust(widths[i]) if i < 2 else r[i].ljust(widths[i]) for i in range(5)), r[5]]).rstrip()

    related = False
    for i, (h, r) in enumerate(zip(hits, rows[1:])):
        if words is not None and h.score < 0.5 and not related:
            related = True
            lines.append("Related:")
        if i == 0:
            lines.append(line(rows[0]))
        lines.append(line(r))
    sys.stdout.write("\n".join(lines) + "\n")


def clock(seconds: float) -> str:
    """A moment in a video as a player shows it: 1:05, or 1:02:05 past an hour."""
    whole = int(seconds)
    h, m, s = whole // 3600, whole // 60 % 60, whole % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def containing_line(counts: dict[str, int], words: str) -> str:
    """'2 documents contain "zebra"', 'No file contains "red car"', ..."""
    from .filenames import printable

    quoted = f'"{printable(words)}"'
    parts = [f"{n} {noun if n == 1 else noun + 's'}" for kind, noun in (("document", "document"), ("image", "photo"))
             if (n := counts.get(kind, 0))]
    total = sum(counts.values())
    if not parts:
        return f"No file contains {quoted}."
    return f"{' and '.join(parts)} {'contains' if total == 1 else 'contain'} {quoted}:"
