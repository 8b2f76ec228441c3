"""`mmsearch index` without typer: its options, its body, its progress and its report.

Parsing an index line with typer costs ~80 ms (its coercion imports pydantic and builds a validator
for each option), a sixth of what an index run with nothing new costs. So the console script
(__main__.py) parses an ordinary `mmsearch index` line by these declarations (cli_query.parse_args) and
calls run_index; anything the parser does not understand (--help, an unknown option, a bad value)
goes to the typer command in cli.py, built from the same declarations, which calls the same run_index.
"""

from __future__ import annotations

import os
import sys

from .cli_output import clock
from .cli_query import INDEX, JSON, PATH, Option, exit_with, fail, parse_args
from .filenames import printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (mypy reads the name alike)
if TYPE_CHECKING:
    from collections.abc import Callable
    from os import PathLike

PATHS_HELP = ("Folders to index (recursively) or single files: images (jpg, png, webp, gif, bmp, tiff; heic with "
              "pillow-heif), documents (pdf, txt, md, office files, EPUB, HTML, RTF, mail, CSV/JSON, source "
              "code) and videos (mp4, mov, mkv, webm, avi, m4v).")
# What a walk takes in, the same for `index` and `watch`.
EXCLUDE = Option(("--exclude",), "exclude", str, None, "Skip paths matching this glob (repeatable).", repeatable=True)
HIDDEN = Option(("--hidden", "--include-hidden"), "hidden", bool, False, "Also index hidden files and folders.")
NO_DEFAULT_EXCLUDES = Option(
    ("--no-default-excludes",), "no_default_excludes", bool, False,
    "Also index folders skipped by default: node_modules, __pycache__, virtualenvs, .git, tools' caches (a "
    "folder holding CACHEDIR.TAG).")
OPTIONS = (
    INDEX,
    Option(("--model",), "model", str, None,
           "Model name (see `mmsearch models`) or bundle folder [default: the default for your language, pulled "
           "when none is installed: immich-vit-b-32-laion2b for English, immich-xlm-roberta-b-32 for the others]."),
    Option(("--language",), "language", str, None,
           "The language you search in (ISO 639 code: en, zh, ja, de...), which picks the default model of a new "
           "index [default: the locale's, LC_ALL, LC_MESSAGES or LANG]."),
    Option(("--device",), "device", str, "auto", "auto (CUDA when it really works, else CPU), cpu or cuda."),
    Option(("--variant",), "variant", str, None, "fp32, fp16 or int8 [default: fp16 on CUDA, int8 on CPU]."),
    EXCLUDE,
    HIDDEN,
    NO_DEFAULT_EXCLUDES,
    Option(("--workers",), "workers", int, None,
           "Decode and extract threads [default: one per core for pictures, one fewer for documents]."),
    Option(("--engine",), "engine", str, "local",
           "local (this process) or ray: decode and encode on a Ray cluster (pip install 'mmsearch[distributed]')."),
    Option(("--ray-address",), "ray_address", str, None,
           "With --engine ray: the cluster's HOST:PORT [default: RAY_ADDRESS, else a Ray started on this machine "
           "for the run]."),
    Option(("--shard-dir",), "shard_dir", PATH, None,
           "With --engine ray: where workers write their shards, a folder every node can write and this machine "
           "read [default: INDEX/shards]."),
    Option(("--shard-files",), "shard_files", int, None,
           "With --engine ray: files per shard [default: 256 photos, 16 documents]."),
    Option(("--no-wait",), "no_wait", bool, False, "Fail at once if another run is writing this index."),
    Option(("--yes", "-y"), "yes", bool, False,
           "Download the default model without asking when no model is installed (not on a terminal, it is "
           "downloaded anyway)."),
    Option(("--no-ocr",), "no_ocr", bool, False,
           "Do not read the words in pictures and scanned PDF pages (read when mmsearch[ocr] is installed, after "
           "the rest is indexed)."),
    JSON,
    Option(("--trace-steps",), "trace_steps", PATH, None, "Append the name of each step the run enters to this file.",
           hidden=True),
    Option(("--hold-steps",), "hold_steps", float, 0.0,
           "Hold each step open this many seconds (to aim a kill inside one).", hidden=True),
)


def parse_index_args(args: list[str]) -> dict[str, object] | None:
    """`mmsearch index ...` parsed without typer, by OPTIONS (cli_query.parse_args); None where typer is
    to handle the line (no path given too: typer says what is missing)."""
    parsed = parse_args(args, OPTIONS)
    if parsed is None or not parsed[0]:
        return None
    return {"paths": parsed[0], **parsed[1]}


def run_index(*, paths, index_dir, model, language, device, variant, exclude, hidden, no_default_excludes, workers,
              engine, ray_address, shard_dir, shard_files, no_wait, yes, no_ocr, as_json, trace_steps,
              hold_steps) -> None:
    """Index photos, documents and videos under PATHS; a second run only does what changed.

    Images (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC with pillow-heif), documents (PDF, text, office files, EPUB,
    HTML, RTF, mail, CSV/JSON, source code) and videos (MP4, MOV, MKV, WebM, AVI, M4V: a frame per scene).
    Unchanged files are skipped, changed ones re-encoded, deleted ones removed, moved ones keep their
    vectors. With OCR installed (mmsearch[ocr]), the words in pictures and scanned pages are read
    afterwards, once per picture. Ctrl-C stops cleanly: what was finished is kept; run the same
    command to resume.
    """
    import logging
    import signal
    import sqlite3
    import threading
    from pathlib import Path

    # Paths as typer gives them (parse_index_args keeps them as typed).
    paths = [Path(p) for p in paths]
    index_dir, shard_dir, trace_steps = (None if p is None else Path(p) for p in (index_dir, shard_dir, trace_steps))

    from . import arguments
    from .api import Index, IndexBusyError
    from .catalog import CatalogWriteError

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    try:  # before the index is opened: a typo creates nothing
        arguments.existing_paths(paths)
        arguments.at_least_one("--workers", workers)
        arguments.choice("--engine", engine, arguments.ENGINES)
        if language is not None:
            language = arguments.language(language)
        if model is None:  # a new index: the default for the language, pulled where missing (asked on a terminal)
            from . import cli_models

            model = cli_models.ensure_default_model(index_dir, yes=yes, quiet=as_json, language=language)
    except Exception as e:
        fail(e)

    stop = threading.Event()
    interrupts = [0]

    def on_sigint(signum, frame):  # first Ctrl-C: finish the batch in hand and save; second: now
        interrupts[0] += 1
        if interrupts[0] > 1:
            raise KeyboardInterrupt
        stop.set()
        _say("\nStopping: saving what is finished (Ctrl-C again to quit at once)...")

    signal.signal(signal.SIGINT, on_sigint)
    idx_path: list[str] = []
    try:
        with Index(index_dir, model=model, device=device, variant=variant) as idx:
            idx_path.append(str(idx.path))
            with _progress(disabled=as_json) as progress:
                report = idx.index(
                    paths, exclude=exclude or (), include_hidden=hidden, default_excludes=not no_default_excludes,
                    progress=progress,
                    cancel=stop.is_set, workers=workers, wait=0 if no_wait else None,
                    on_wait=lambda: _say(f"Waiting for another `mmsearch index` on {idx.path} to finish..."),
                    observe=_step_observer(trace_steps, hold_steps), ocr=False if no_ocr else None,
                    engine=engine, ray_address=ray_address,
                    shard_dir=shard_dir, shard_files=shard_files,
                )
    except IndexBusyError as e:
        exit_with(str(e), 3)
    except CatalogWriteError as e:  # disk full, read-only folder: the last committed state is still readable
        exit_with(str(e), 2)
    except (OSError, sqlite3.Error) as e:
        where = getattr(e, "filename", None) or (idx_path[0] if idx_path else "")
        exit_with(f"{where}: {getattr(e, 'strerror', None) or e}; the index keeps its last committed state. "
                  "Fix the cause, then run the same command to resume.", 2)
    except Exception as e:
        fail(e)
    if as_json:
        import json

        _print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if report.cancelled:
        _say("Stopped early. Run the same command again to resume; finished files are not redone.")
        raise SystemExit(130)


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _step_observer(trace: str | PathLike[str] | None, hold: float) -> Callable[[str], None] | None:
    """For the crash and concurrency tests, which run the real command: the steps the run enters, written
    to a file as they come, each (but the last) held open a while so a kill can be aimed inside it."""
    if trace is None and not hold:
        return None
    import time

    def observe(step: str) -> None:
        if trace is not None:
            with open(trace, "a") as f:
                f.write(step + "\n")
        if hold and step != "done":
            time.sleep(hold)

    return observe


def _progress(disabled: bool):  # -> a context manager giving an update function, or None
    """A rich progress bar (files/s, ETA) on a terminal; silent otherwise."""
    from contextlib import contextmanager

    @contextmanager
    def bar():
        if disabled or not sys.stderr.isatty():
            yield None
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn)

        from rich.console import Console
        from rich.markup import escape

        cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>7} files/s"), TimeRemainingColumn()]
        with Progress(*cols, console=Console(stderr=True), transient=False) as p:
            task = p.add_task("Scanning", total=None, rate="")
            later: dict[str, int] = {}  # the bars of the vectors and words phases, from their starts

            def update(ev):
                if ev.phase == "scanning":
                    p.update(task, description="Scanning", completed=ev.done, total=None)
                elif ev.phase in ("reading text", "computing vectors"):
                    # Phases with a bar of their own, from their start: the chunks' vectors, the words in pictures.
                    if ev.phase not in later:
                        later[ev.phase] = p.add_task("Reading text" if ev.phase == "reading text" else "Vectors",
                                                     total=ev.total, rate="")
                    speed = p.tasks[later[ev.phase]].speed
                    p.update(later[ev.phase], completed=ev.done, total=ev.total, rate=f"{speed:.1f}" if speed else "")
                else:
                    speed = p.tasks[0].speed
                    what = "Indexing" if ev.phase == "encoding" else "Saving"
                    if ev.characters is not None and ev.path:  # inside a long document (a name is no markup)
                        what += f" {escape(printable(os.path.basename(ev.path)))}: {ev.characters / 1e6:.1f}M characters"
                    if ev.video_s is not None and ev.path:  # inside a long video
                        what += (f" {escape(printable(os.path.basename(ev.path)))}: {clock(ev.video_s)}"
                                 f" of {clock(ev.duration_s or 0)}")
                    p.update(task, description=what, completed=ev.done, total=ev.total,
                             rate=f"{speed:.1f}" if speed else "")

            yield update

    return bar()


def _print_report(report) -> None:
    # Plain text: paths are the user's data (a `[red]` in a folder name is not markup), and piped
    # output is not wrapped.
    _print(
        f"added {report.added}, updated {report.updated}, moved {report.moved}, removed {report.removed}, "
        f"unchanged {report.unchanged}, errors {len(report.errors)} "
        f"({report.seconds:.1f}s{', ' + report.device if report.device else ''})"
    )
    for err in report.errors[:20]:
        _print(f"  skipped {printable(err['path'])}: {printable(err['reason'])}")
    if len(report.errors) > 20:
        _print(f"  ... and {len(report.errors) - 20} more (`mmsearch status` lists them)")
    if report.ocr_read or (report.ocr_left and report.ocr_device):
        _print(f"words: read {report.ocr_read} pictures and scanned pages, {report.ocr_with_words} with words"
               + (f"; {report.ocr_left} files left to read" if report.ocr_left else "")
               + (f" ({report.ocr_device})" if report.ocr_device else ""))
    for note in report.partial:
        _print(f"  partly indexed {printable(note['path'])}: {printable(note['reason'])}")
    if report.not_read:
        _print(f"not read: {not_read_line(report.not_read)}")


def not_read_line(counts: dict[str, int]) -> str:
    """"120 .key, 3 .pages": the files of types mmsearch does not read, most first."""
    return ", ".join(f"{n} {printable(suffix)}" for suffix, n in counts.items())
