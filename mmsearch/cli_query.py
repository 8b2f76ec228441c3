"""`mmsearch query` without typer: its body, a plain parser for its options and its table.

A cold query's budget is a quarter of a second, and importing typer (with click) takes a fifth of it,
so the console script (mmsearch/__main__.py) answers ordinary query lines from here; anything the
parser does not understand (--help, an unknown option, a bad value) goes to the typer app in cli.py,
which calls the same run_query.
"""

from __future__ import annotations

import sys
from pathlib import Path


def errors() -> tuple[type[Exception], ...]:
    """Errors the user can act on: one clear message and exit code 1, not a traceback."""
    from .api import MmsearchError
    from .bundle import BundleError
    from .runtime import DeviceError

    return (MmsearchError, BundleError, DeviceError)


def run_query(*, text, image, index_dir, k, type_, under, after, before, mode, model, device, variant, as_json) -> None:
    """The query command's body, run by cli.query (typer) and by the console script's fast path."""
    from .api import Index, parse_date
    from .search import MODES, TYPES

    if (text is None) == (image is None):
        _exit("give either TEXT or --image FILE (one of them)", 2)
    if type_ not in TYPES:
        _exit(f"--type must be one of {', '.join(TYPES)}", 2)
    if mode not in MODES:
        _exit(f"--mode must be one of {', '.join(MODES)}", 2)
    try:
        with Index(index_dir, model=model, device=device, variant=variant, readonly=True) as idx:
            hits = idx.search(text, image=image, k=k, type=type_, under=str(under) if under else None,
                              after=parse_date(after), before=parse_date(before), mode=mode)
    except errors() as e:
        _exit(str(e))
    write_hits(hits, as_json)


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
    rows = [("#", "score", "kind", "path", "snippet")]
    for h in hits:
        where = f"{h.path}" + (f" (p. {h.page})" if h.page else "")
        rows.append((str(h.rank), f"{h.score:.3f}", h.kind, where, (h.snippet or "").replace("\n", " ")))
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
