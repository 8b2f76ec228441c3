"""`mmsearch query` without typer: its body, a plain parser for its options and its table.

A cold query's budget is a quarter of a second, and importing typer (with click) takes a fifth of it,
so the console script (mmsearch/__main__.py) answers ordinary query lines from here; anything the
parser does not understand (--help, an unknown option, a bad value) goes to the typer app in cli.py,
which calls the same run_query.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def run_query(*, text, image, index_dir, k, type_, under, after, before, mode, min_similarity, model, device, variant,
              as_json) -> None:
    """The query command's body, run by cli.query (typer) and by the console script's fast path. The
    library checks every value; its errors become one line and an exit code (see fail)."""
    if (text is None) == (image is None):
        _exit("give either TEXT or --image FILE (one of them)", 2)
    try:
        with open_indexes(index_dir, model=model, device=device, variant=variant) as idx:
            hits = idx.search(text, image=image, k=k, type=type_, under=under, after=after, before=before, mode=mode,
                              min_similarity=min_similarity)
    except Exception as e:
        fail(e)
    write_hits(hits, as_json)


def open_indexes(index_dirs: list[Path] | None, **kwargs: Any) -> Any:
    """`--index` given once or not at all: that index (or the default); given more often: those
    indexes searched as one (MultiIndex, which merges their results by score)."""
    if index_dirs is not None and len(index_dirs) > 1:
        from .multi import MultiIndex

        return MultiIndex(index_dirs, **kwargs)
    from .api import Index

    return Index(index_dirs[0] if index_dirs else None, readonly=True, **kwargs)


def fail(error: Exception) -> None:
    """An error the user can act on as one line on stderr and an exit code: 2 for a bad argument, 1 for
    anything else mmsearch raises on purpose. Anything else is a bug: raised as it is."""
    from .errors import InvalidArgument, MmsearchError

    if not isinstance(error, MmsearchError):
        raise error
    _exit(str(error), 2 if isinstance(error, InvalidArgument) else 1)


def _exit(message: str, code: int = 1) -> None:
    from .filenames import printable

    sys.stderr.write(f"Error: {printable(message, keep_newlines=True)}\n")
    raise SystemExit(code)


def write_hits(hits, as_json: bool) -> None:
    """Results as JSON, or as a plain aligned table (rich costs ~150 ms of imports, most of a cold
    query's budget); for `query` and `similar`. A query with words says how many files hold them, and
    shows the rest apart, under "Related" (found by meaning, or holding some of the words)."""
    if as_json:
        import json

        sys.stdout.write(json.dumps([h.to_dict() for h in hits], indent=2) + "\n")
        return
    from .filenames import printable, shown

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
        where = shown(h.path) + (f" (p. {h.page})" if h.page else "")
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


@dataclass(frozen=True)
class Option:
    """One command-line option, declared once: cli.py builds the typer command from it, and the fast
    path (parse_query_args) parses with it."""

    flags: tuple[str, ...]
    dest: str  # the keyword of run_query (or of the command's body)
    type: type  # str, int, float, Path or bool (a bool is a flag that takes no value)
    default: Any
    help: str
    repeatable: bool = False  # given again, it adds a value: the values come as a list (None when not given)


INDEX = Option(("--index",), "index_dir", Path, None, "Index folder [default: $MMSEARCH_HOME/index].")
# `query` and `similar` search several index folders as one when --index is repeated.
INDEXES = Option(("--index",), "index_dir", Path, None,
                 "Index folder [default: $MMSEARCH_HOME/index]; repeat it to search several as one (one model).",
                 repeatable=True)
JSON = Option(("--json",), "as_json", bool, False, "Print machine-readable JSON instead of a table.")
# The filters `query` and `similar` share.
FILTERS = (
    Option(("-k", "--top"), "k", int, 10, "How many results (files)."),
    Option(("--type",), "type_", str, "all", "image, document, video or all."),
    Option(("--under",), "under", Path, None, "Only files under this folder."),
    Option(("--after",), "after", str, None,
           "Dated (EXIF capture, else modified) at or after DATE: YYYY-MM-DD[THH:MM], local time unless a zone is given."),
    Option(("--before",), "before", str, None, "Dated before DATE (same forms as --after)."),
)
AT = Option(("--at",), "at", float, None,
            "A video: like its frame at this moment, in seconds [default: like all of its frames].")
QUERY_TEXT_HELP = "What to look for, in words."
QUERY_OPTIONS = (
    Option(("--image",), "image", Path, None, "Find what looks like this picture instead."),
    INDEXES,
    *FILTERS,
    Option(("--mode",), "mode", str, "hybrid", "For words over documents: hybrid (meaning + keywords), vector or keyword."),
    Option(("--min-similarity",), "min_similarity", float, None,
           "Leave out files found by meaning alone below this cosine [default: the model's relevance floor, "
           "for a text query in hybrid mode]."),
    Option(("--model",), "model", str, None, "Model [default: the one the index was built with]."),
    Option(("--device",), "device", str, "auto", "auto, cpu or cuda."),
    Option(("--variant",), "variant", str, None, "fp32, fp16 or int8."),
    JSON,
)


def parse_query_args(args: list[str]) -> dict | None:
    """`mmsearch query ...` parsed without typer, by QUERY_OPTIONS.
    Anything unusual (--help, an unknown option, a bad value) returns None: typer then handles it,
    with its usual messages."""
    by_flag = {flag: opt for opt in QUERY_OPTIONS for flag in opt.flags}
    out: dict = {"text": None, **{opt.dest: opt.default for opt in QUERY_OPTIONS}}
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            positional += args[i + 1 :]
            break
        if a.startswith("-") and a != "-":
            name, eq, value = a.partition("=")
            opt = by_flag.get(name)
            if opt is None:
                return None  # --help, -kN forms, unknown options: typer's job
            if opt.type is bool:
                if eq:
                    return None
                out[opt.dest] = True
            else:
                if not eq:
                    if i + 1 >= len(args):
                        return None
                    i += 1
                    value = args[i]
                try:
                    parsed = opt.type(value)
                except ValueError:
                    return None
                if opt.repeatable:
                    out[opt.dest] = [*(out[opt.dest] or []), parsed]
                else:
                    out[opt.dest] = parsed
        else:
            positional.append(a)
        i += 1
    if len(positional) > 1:
        return None
    if positional:
        out["text"] = positional[0]
    return out
