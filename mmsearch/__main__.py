"""The `mmsearch` console script (and `python -m mmsearch`).

An ordinary `mmsearch query ...` line is answered without loading the typer app (see cli_query.py), a
plain keyword query without loading the library either (cli_keyword.py); every other command goes to
cli.app.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["query"]:
        from .cli_query import parse_query_args, run_query

        parsed = parse_query_args(sys.argv[2:])
        if parsed is not None:
            if parsed["mode"] == "keyword":
                from .cli_keyword import answer

                if answer(parsed):
                    return
            run_query(**parsed)
            return
    from .cli import app

    app()


if __name__ == "__main__":
    main()
