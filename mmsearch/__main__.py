"""The `mmsearch` console script (and `python -m mmsearch`).

An ordinary `mmsearch query ...` line is answered without loading the typer app (see cli_query.py);
every other command goes to cli.app.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["query"]:
        from .cli_query import parse_query_args, run_query

        parsed = parse_query_args(sys.argv[2:])
        if parsed is not None:
            run_query(**parsed)
            return
    from .cli import app

    app()


if __name__ == "__main__":
    main()
