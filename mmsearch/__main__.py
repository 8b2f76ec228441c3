"""The `mmsearch` console script (and `python -m mmsearch`).

Ordinary `mmsearch query ...` and `mmsearch index ...` lines are answered without typer, whose parsing
costs a cold command tens of milliseconds (cli_query.py, cli_index.py), a plain keyword query without
loading the library either (cli_keyword.py); every other line goes to cli.app, which builds those two
commands from the same option declarations.
"""

from __future__ import annotations

import sys


def main() -> None:
    command = sys.argv[1:2]
    if command == ["query"]:
        from .cli_query import parse_query_args, run_query

        parsed = parse_query_args(sys.argv[2:])
        if parsed is not None:
            if parsed["mode"] == "keyword":
                from .cli_keyword import answer

                if answer(parsed):
                    return
            run_query(**parsed)
            return
    elif command == ["index"]:
        from .cli_index import parse_index_args, run_index

        options = parse_index_args(sys.argv[2:])
        if options is not None:
            try:
                run_index(**options)
            except KeyboardInterrupt:  # a second Ctrl-C: as click ends a command it interrupts
                sys.stderr.write("\nAborted!\n")
                raise SystemExit(1) from None
            return
    from .cli import app

    app()


if __name__ == "__main__":
    main()
