"""`mmsearch query` without typer: its body, a plain parser for its options and its table.

A cold query's budget is a quarter of a second, and importing typer (with click) takes a fifth of it,
so the console script (mmsearch/__main__.py) answers ordinary query lines from here; anything the
parser does not understand (--help, an unknown option, a bad value) goes to the typer app in cli.py,
which calls the same run_query.
"""

from __future__ import annotations

import sys
from pathlib import Path


def run_query(*, text, image, index_dir, k, type_, under, after, before, mode, model, device, variant, as_json) -> None:
    """The query command's body, run by cli.query (typer) and by the console script's fast path. The
    library checks every value; its errors become one line and an exit code (see fail)."""
    from .api import Index

    if (text is None) == (image is None):
        _exit("give either TEXT or --image FILE (one of them)", 2)
    try:
        with Index(index_dir, model=model, device=device, variant=variant, readonly=True) as idx:
            hits = idx.search(text, image=image, k=k, type=type_, under=under, after=after, before=before, mode=mode)
    except Exception as e:
        fail(e)
    write_hits(hits, as_json)


def fail(error: Exception) -> None:
    """An error the user can act on as one line on stderr and an exit code: 2 for a bad argument, 1 for
    anything else mmsearch raises on purpose. Anything else is a bug: raised as it is."""
    from .errors import InvalidArgument, MmsearchError

    if not isinstance(error, MmsearchError):
        raise error
    _exit(str(error), 2 if isinstance(error, InvalidArgument) else 1)


def _exit(message: str, code: int = 1) -> None:
    sys.stderr.write(f"Error: {message}\n")
    raise SystemExit(code)


def write_hits(hits, as_json: bool) -> None:
    """Results as JSON, or as a plain aligned table (rich costs ~150 ms of imports, most of a cold
    query's budget); for `query` and `similar`."""
    if as_json:
        import json

        sys.stdout.write(json.dumps([h.to_dict() for h in hits], indent=2) + "\n")
        return
    if not hits:
        sys.stdout.write("No results.\n")
        return
    from .filenames import display_path

    rows = [("#", hits[0].score_kind, "kind", "path", "snippet")]  # one scale per output: its name heads the column
    for h in hits:
        where = display_path(h.path) + (f" (p. {h.page})" if h.page else "")
        rows.append((str(h.rank), f"{h.score:.4g}", h.kind, where, (h.snippet or "").replace("\n", " ")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join([*(r[i].rjust(widths[i]) if i < 2 else r[i].ljust(widths[i]) for i in range(4)), r[4]]).rstrip()
             for r in rows]
    sys.stdout.write("\n".join(lines) + "\n")


QUERY_VALUE_OPTIONS = {  # option -> run_query keyword (kept equal to cli.query's options; a test checks)
    "--image": "image", "--index": "index_dir", "-k": "k", "--top": "k", "--type": "type_", "--under": "under",
    "--after": "after", "--before": "before", "--mode": "mode", "--model": "model", "--device": "device",
    "--variant": "variant",
}


def parse_query_args(args: list[str]) -> dict | None:
    """`mmsearch query ...` parsed without typer.
    Anything unusual (--help, an unknown option, a bad value) returns None: typer then handles it,
    with its usual messages."""
    out: dict = dict(text=None, image=None, index_dir=None, k=10, type_="all", under=None, after=None, before=None,
                     mode="hybrid", model=None, device="auto", variant=None, as_json=False)
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            positional += args[i + 1 :]
            break
        if a.startswith("-") and a != "-":
            name, eq, value = a.partition("=")
            if name == "--json" and not eq:
                out["as_json"] = True
            elif name in QUERY_VALUE_OPTIONS:
                if not eq:
                    if i + 1 >= len(args):
                        return None
                    i += 1
                    value = args[i]
                out[QUERY_VALUE_OPTIONS[name]] = value
            else:
                return None  # --help, -kN forms, unknown options: typer's job
        else:
            positional.append(a)
        i += 1
    if len(positional) > 1:
        return None
    if positional:
        out["text"] = positional[0]
    try:
        out["k"] = int(out["k"])
    except ValueError:
        return None
    for key in ("image", "index_dir", "under"):
        if out[key] is not None:
            out[key] = Path(out[key])
    return out
