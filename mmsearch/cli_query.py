"""`mmsearch query` without typer: its body, its options and a plain parser for them.

A cold query's budget is a quarter of a second, and importing typer (with click) takes a fifth of it,
so the console script (mmsearch/__main__.py) answers ordinary query lines from here; anything the
parser does not understand (--help, an unknown option, a bad value) goes to the typer app in cli.py,
which calls the same run_query. Parsing a line imports nothing beyond the standard library's `sys`
(not even pathlib or dataclasses): a keyword query is answered in a few tens of milliseconds
(cli_keyword.py), and they would be a fifth of that.
"""

from __future__ import annotations

import sys

from .cli_output import write_hits

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (mypy reads the name alike)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from os import PathLike

    from .api import Index
    from .multi import MultiIndex


def run_query(*, text, image, index_dir, k, type_, under, after, before, mode, min_similarity, model, device, variant,
              as_json) -> None:
    """The query command's body, run by cli.query (typer) and by the console script's fast path. The
    library checks every value; its errors become one line and an exit code (see fail)."""
    if (text is None) == (image is None):
        exit_with("give either TEXT or --image FILE (one of them)", 2)
    try:
        with open_indexes(index_dir, model=model, device=device, variant=variant) as idx:
            hits = idx.search(text, image=image, k=k, type=type_, under=under, after=after, before=before, mode=mode,
                              min_similarity=min_similarity)
    except Exception as e:
        fail(e)
    write_hits(hits, as_json)


def open_indexes(index_dirs: Sequence[str | PathLike[str]] | None, **kwargs: object) -> Index | MultiIndex:
    """`--index` given once or not at all: that index (or the default); given more often: those
    indexes searched as one (MultiIndex, which merges their results by score)."""
    if index_dirs is not None and len(index_dirs) > 1:
        from .multi import MultiIndex

        return MultiIndex(index_dirs, **kwargs)  # type: ignore[arg-type]
    from .api import Index

    return Index(index_dirs[0] if index_dirs else None, readonly=True, **kwargs)  # type: ignore[arg-type]


def fail(error: Exception) -> None:
    """An error the user can act on as one line on stderr and an exit code: 2 for a bad argument, 1 for
    anything else mmsearch raises on purpose. Anything else is a bug: raised as it is."""
    from .errors import InvalidArgument, MmsearchError

    if not isinstance(error, MmsearchError):
        raise error
    exit_with(str(error), 2 if isinstance(error, InvalidArgument) else 1)


def exit_with(message: str, code: int = 1) -> None:
    """The message as one "Error: ..." line on stderr, and the exit code."""
    from .filenames import printable

    sys.stderr.write(f"Error: {printable(message, keep_newlines=True)}\n")
    raise SystemExit(code)


class Option:
    """One command-line option, declared once: cli.py builds the typer command from it, and the fast
    path (parse_query_args) parses with it."""

    __slots__ = ("flags", "dest", "type", "default", "help", "repeatable", "hidden")

    def __init__(self, flags: tuple[str, ...], dest: str, type: type, default: object, help: str,
                 repeatable: bool = False, hidden: bool = False):
        self.flags = flags
        self.dest = dest  # the keyword of run_query (or of the command's body)
        # str, int, float, PATH or bool (a bool is a flag that takes no value). A PATH comes to the
        # command's body as a pathlib.Path from typer, as text from parse_query_args: both open alike.
        self.type = type
        self.default = default
        self.help = help
        self.repeatable = repeatable  # given again, it adds a value: the values come as a list (None when not given)
        self.hidden = hidden  # left out of --help (the crash tests' hooks)


class PATH(str):
    """The type of an option that names a file or folder (typer makes it a pathlib.Path)."""


INDEX = Option(("--index",), "index_dir", PATH, None, "Index folder [default: $MMSEARCH_HOME/index].")
# `query` and `similar` search several index folders as one when --index is repeated.
INDEXES = Option(("--index",), "index_dir", PATH, None,
                 "Index folder [default: $MMSEARCH_HOME/index]; repeat it to search several as one (one model).",
                 repeatable=True)
JSON = Option(("--json",), "as_json", bool, False, "Print machine-readable JSON instead of a table.")
# The filters `query` and `similar` share.
FILTERS = (
    Option(("-k", "--top"), "k", int, 10, "How many results (files)."),
    Option(("--type",), "type_", str, "all", "image, document, video or all."),
    Option(("--under",), "under", PATH, None, "Only files under this folder."),
    Option(("--after",), "after", str, None,
           "Dated (EXIF capture, else modified) at or after DATE: YYYY-MM-DD[THH:MM], local time unless a zone is given."),
    Option(("--before",), "before", str, None, "Dated before DATE (same forms as --after)."),
)
AT = Option(("--at",), "at", float, None,
            "A video: like its frame at this moment, in seconds [default: like all of its frames].")
QUERY_TEXT_HELP = "What to look for, in words."
QUERY_OPTIONS = (
    Option(("--image",), "image", PATH, None, "Find what looks like this picture instead."),
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


def parse_query_args(args: list[str]) -> dict[str, object] | None:
    """`mmsearch query ...` parsed without typer, by QUERY_OPTIONS (see parse_args)."""
    parsed = parse_args(args, QUERY_OPTIONS)
    if parsed is None or len(parsed[0]) > 1:
        return None
    positional, out = parsed
    return {"text": positional[0] if positional else None, **out}


def parse_args(args: list[str], options: tuple[Option, ...]) -> tuple[list[str], dict[str, object]] | None:
    """A command line parsed without typer by its Option declarations: (the positional arguments, each
    option's value by `dest`, defaults included). Anything unusual (--help, an unknown option, a bad
    value) returns None: typer then handles it, with its usual messages."""
    by_flag = {flag: opt for opt in options for flag in opt.flags}
    out: dict[str, object] = {opt.dest: opt.default for opt in options}
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
                    parsed = str(value) if opt.type is PATH else opt.type(value)
                except ValueError:
                    return None
                if opt.repeatable:
                    out[opt.dest] = [*(out[opt.dest] or []), parsed]  # type: ignore[misc]
                else:
                    out[opt.dest] = parsed
        else:
            positional.append(a)
        i += 1
    return positional, out
