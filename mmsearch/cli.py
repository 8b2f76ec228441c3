"""The `mmsearch` command: each command is a few lines over mmsearch.api."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import cli_index, cli_models, cli_output, cli_query
from .cli_query import exit_with as _fail
from .cli_query import fail as _fail_with
from .filenames import display_path, printable

app = typer.Typer(
    help="Find your photos and documents by meaning. Index folders once, then query them with words or a picture.\n\n"
    "  mmsearch index ~/photos\n\n  mmsearch query \"red car\"\n\n  mmsearch query --image ~/photos/cat.jpg",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

IndexOpt = Annotated[Optional[Path], typer.Option("--index", help=cli_query.INDEX.help)]
JsonOpt = Annotated[bool, typer.Option("--json", help=cli_query.JSON.help)]
# What a walk takes in, the same for `index` and `watch`.
ExcludeOpt = Annotated[Optional[list[str]], typer.Option(*cli_index.EXCLUDE.flags, help=cli_index.EXCLUDE.help)]
HiddenOpt = Annotated[bool, typer.Option(*cli_index.HIDDEN.flags, help=cli_index.HIDDEN.help)]
NoDefaultExcludesOpt = Annotated[bool, typer.Option(*cli_index.NO_DEFAULT_EXCLUDES.flags,
                                                    help=cli_index.NO_DEFAULT_EXCLUDES.help)]

app.add_typer(cli_models.app, name="models")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"mmsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                   help="Print the version and exit.")] = False) -> None:
    pass


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


def _declared(name: str, body: Any, options: tuple[cli_query.Option, ...],
              argument: tuple[str, type, Any, str] | None = None) -> Any:
    """A typer command made from Option declarations (cli_query.py): the same declarations the fast
    query path parses with, so the two cannot drift. `argument`: (name, type, default, help)."""
    import inspect

    params = []
    if argument is not None:
        arg_name, arg_type, arg_default, arg_help = argument
        annotation = Optional[arg_type] if arg_default is None else arg_type
        params.append(inspect.Parameter(arg_name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=arg_default,
                                        annotation=Annotated[annotation, typer.Argument(help=arg_help)]))
    for opt in options:
        of = Path if opt.type is cli_query.PATH else opt.type
        kind = of if of is bool or opt.default is not None else Optional[of]
        if opt.repeatable:
            kind = Optional[list[of]]  # type: ignore[valid-type]
        params.append(inspect.Parameter(opt.dest, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=opt.default,
                                        annotation=Annotated[kind, typer.Option(*opt.flags, help=opt.help,
                                                                                hidden=opt.hidden)]))

    def command(**kwargs: Any) -> None:
        body(**kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__, command.__doc__ = name, body.__doc__
    return app.command(name)(command)


def _query(**kwargs: Any) -> None:
    """Search the index with words or a picture; prints rank, score, kind, path and a snippet."""
    cli_query.run_query(**kwargs)


def _similar(*, path: Path, index_dir: Optional[list[Path]], k: int, type_: str, under: Optional[Path],
             after: Optional[str], before: Optional[str], at: Optional[float], as_json: bool) -> None:
    """Files like an indexed file, from its stored vector: no model is loaded, the file itself is left out."""
    try:
        with cli_query.open_indexes(index_dir) as idx:
            hits = idx.similar(path, k=k, type=type_, under=under, after=after, before=before, at=at)
    except Exception as e:
        _fail_with(e)
    cli_output.write_hits(hits, as_json)


def _index(**kwargs: Any) -> None:
    cli_index.run_index(**kwargs)


_index.__doc__ = cli_index.run_index.__doc__  # the command's help
index = _declared("index", _index, cli_index.OPTIONS, ("paths", list[Path], ..., cli_index.PATHS_HELP))
query = _declared("query", _query, cli_query.QUERY_OPTIONS, ("text", str, None, cli_query.QUERY_TEXT_HELP))
similar = _declared("similar", _similar, (cli_query.INDEXES, *cli_query.FILTERS, cli_query.AT, cli_query.JSON),
                    ("path", Path, ..., "An indexed file (photo, document or video)."))


@app.command()
def status(index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """What an index holds: roots, counts, model, size on disk, last run and files in error."""
    from .api import Index

    try:
        with Index(index_dir, readonly=True) as idx:
            info = idx.status()
    except Exception as e:
        _fail_with(e)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    c = info["counts"]
    typer.echo(f"index:   {printable(info['index'])} ({info['size_bytes'] / 1e6:.1f} MB)")
    typer.echo(f"model:   {printable(str(info['model']))}")
    if info.get("newer_default"):
        typer.echo("  " + info["newer_default"]["note"].replace("\n", "\n  "))
    typer.echo("roots:   " + (", ".join(printable(r) for r in info["roots"]) or "none"))
    videos = ""
    if c.get("video") or c.get("videos_in_part"):
        videos = f", {c['video']} videos ({c['frames']} frames)"
        if c["videos_in_part"]:
            videos += f" and {c['videos_in_part']} indexed in part (`mmsearch index` goes on with them)"
    documents = f"{c['document']} documents ({c['chunks']} chunks)"
    if c.get("documents_in_part"):
        documents += f" and {c['documents_in_part']} read in part (`mmsearch index` reads them whole)"
    typer.echo(f"files:   {c['image']} images, {documents}{videos}, {c['errors']} in error")
    if info["not_read"]:
        typer.echo(f"not read: {cli_index.not_read_line(info['not_read'])}")
    from . import ocr

    left = f"; {c['words_to_read']} files still to read" if c["words_to_read"] else ""
    if c["words_to_read"] and not ocr.installed():
        left += f" (OCR is not installed: {ocr.INSTALL_HINT})"
    typer.echo(f"words:   found in {c['pictures_with_words']} pictures{left}")
    if c["chunks_without_vectors"]:
        typer.echo(f"vectors: {c['chunks_without_vectors']:,} chunks of {c['documents_without_vectors']} documents still "
                   "to compute (searchable by their words meanwhile; `mmsearch index` finishes them)")
    typer.echo(f"access:  {info['access']['summary']}")
    if info["watch"]:
        w = info["watch"]
        typer.echo(f"watch:   running since {w['since']} (pid {w['pid']}): "
                   + ", ".join(printable(str(r)) for r in w["roots"]))
    if info["last_run"]:
        r = info["last_run"]
        typer.echo(f"last run: {r['started_at']} ({r['status']})")
        for note in (r.get("summary") or {}).get("partial", []):
            typer.echo(f"  partly indexed: {printable(note['path'])}: {printable(note['reason'])}")
    for err in info["errors"]:
        typer.echo(f"  error: {printable(err['path'])}: {printable(err['reason'])}")


@app.command()
def serve(
    index_dir: IndexOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but this machine's own needs "
                                                    "--allow-remote.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free one).")] = 8765,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Allow a --host that other machines can reach; every request then needs the "
                               "access token printed at start.")] = False,
    allow_host: Annotated[Optional[list[str]], typer.Option(
        "--allow-host", help="Also answer to this host name (a name other machines reach this one by; "
                             "repeatable).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model [default: the one the index was built with].")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest image to search by.")] = 20,
    thumbnail_cache_mb: Annotated[float, typer.Option(
        "--thumbnail-cache-mb", help="Bound of the thumbnail cache in the index folder.")] = 512,
    tls_cert: Annotated[Optional[Path], typer.Option(
        "--tls-cert", help="Serve HTTPS with this certificate (PEM, its chain); with --tls-key. Without them the "
                           "server speaks plain HTTP, which other machines on the network can read.")] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key", help="The certificate's private key (PEM).")] = None,
) -> None:
    """Search in your browser: a local web app over the index, with thumbnails, the index's status and
    "index now" (needs `pip install 'mmsearch[web]'`)."""
    try:
        from .web.server import serve as run_server
    except ImportError as e:
        _fail(f"the web app needs its extra ({e}). Install it with:\n  pip install 'mmsearch[web]'")
    try:
        run_server(index_dir=index_dir, host=host, port=port, open_browser=open_browser, allow_remote=allow_remote,
                   allow_hosts=tuple(allow_host or ()), model=model, max_upload_mb=max_upload_mb,
                   thumbnail_cache_mb=thumbnail_cache_mb, tls_cert=tls_cert and tls_cert.expanduser(),
                   tls_key=tls_key and tls_key.expanduser(), echo=typer.echo)
    except KeyboardInterrupt:
        pass
    except Exception as e:
        _fail_with(e)


@app.command()
def watch(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="Folders to keep current [default: the index's folders]; new ones are indexed first.")] = None,
    index_dir: IndexOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model, for a new index [default: as `index`].")] = None,
    exclude: ExcludeOpt = None,
    hidden: HiddenOpt = False,
    no_default_excludes: NoDefaultExcludesOpt = False,
    settle: Annotated[float, typer.Option("--settle", help="Seconds a changed file must stay unchanged before it is "
                                                           "indexed (a copy or a save in progress).")] = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Keep the index current while files change: index PATHS now, then every file added, saved, moved or
    deleted under them, a few seconds after it settles. Runs until Ctrl-C. A moved file keeps its
    vectors; a burst of new files is one run; `mmsearch status` shows that a watch runs."""
    _setup_logging()
    import time

    from . import arguments
    from .api import Index

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def say(event) -> None:
        if as_json:
            typer.echo(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **event.to_dict()}))
            return
        when = time.strftime("%H:%M:%S")
        if event.report is not None:
            r = event.report
            what = f"{event.paths} changes" if event.kind == "indexed" else "the folders checked"
            typer.echo(f"{when} {what}: added {r.added}, updated {r.updated}, moved {r.moved}, removed {r.removed}, "
                       f"errors {len(r.errors)} ({r.seconds:.1f}s)")
        elif event.kind == "error":
            typer.echo(f"{when} error: {printable(event.error or '')}", err=True)
        else:
            typer.echo(f"{when} {event.kind}", err=True)

    try:
        if paths:
            arguments.existing_paths(paths)
        if model is None and paths:
            model = cli_models.ensure_default_model(index_dir, yes=True, quiet=as_json)
        with Index(index_dir, model=model) as idx:
            running = idx.watch(paths or None, on_event=say, settle=settle, exclude=exclude or (),
                                include_hidden=hidden, default_excludes=not no_default_excludes)
            if not as_json:
                typer.echo(f"Watching {', '.join(printable(str(r)) for r in running.roots)} for {printable(str(idx.path))} "
                           "(Ctrl-C to stop)", err=True)
            while running.running and not stop.is_set():
                stop.wait(0.5)
            running.stop()
    except Exception as e:
        _fail_with(e)


@app.command()
def forget(path: Annotated[Path, typer.Argument(help="An indexed root (a folder or a file).")], index_dir: IndexOpt = None,
           as_json: JsonOpt = False) -> None:
    """Drop an indexed root and everything under it from the index (files on disk are not touched)."""
    from . import paths
    from .api import Index

    folder = index_dir.expanduser() if index_dir else paths.default_index_dir()
    if not (folder / "catalog.db").exists():
        _fail(f"{folder}: no index here, nothing to forget")
    try:
        with Index(index_dir) as idx:
            dropped = idx.forget(path)
    except Exception as e:
        _fail_with(e)
    typer.echo(json.dumps({"forgotten": str(path), "files": dropped}) if as_json
               else f"Forgot {printable(str(path))}: {dropped} files.")


@app.command()
def compact(index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Give the room of removed files back to the disk now: the catalog rewritten without its free pages,
    the vector graph without the slots of removed vectors. Runs and forgets do this by themselves once
    that room passes a quarter of the index; safe to stop at any point."""
    from . import paths
    from .api import Index

    folder = index_dir.expanduser() if index_dir else paths.default_index_dir()
    if not (folder / "catalog.db").exists():
        _fail(f"{folder}: no index here, nothing to compact")
    try:
        with Index(index_dir) as idx:
            sizes = idx.compact()
    except Exception as e:
        _fail_with(e)
    if as_json:
        typer.echo(json.dumps(sizes))
    else:
        typer.echo(f"{sizes['before_bytes'] / 1e6:.1f} MB -> {sizes['after_bytes'] / 1e6:.1f} MB")


@app.command()
def duplicates(
    index_dir: IndexOpt = None,
    threshold: Annotated[Optional[float], typer.Option(
        "--threshold", help="How alike two pictures' vectors must be (a cosine) to be compared pixel by pixel "
                            "[default: 0.9].")] = None,
    identical: Annotated[bool, typer.Option("--identical", help="Only files with the same bytes.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Files you have twice: the same bytes, and near-identical pictures (resized, recompressed, slightly
    cropped, saved in another format), the most space to gain first. The first file of each group is the
    one to keep (the largest picture); nothing is deleted."""
    from .api import Index

    try:
        with Index(index_dir, readonly=True) as idx:
            groups = idx.duplicates(threshold=threshold, near=not identical)
    except Exception as e:
        _fail_with(e)
    if as_json:
        typer.echo(json.dumps([g.to_dict() for g in groups], indent=2))
        return
    if not groups:
        typer.echo("No duplicates.")
        return
    total = sum(g.gain_bytes for g in groups)
    typer.echo(f"{len(groups)} groups; {total / 1e6:.1f} MB to gain by keeping the first of each")
    for g in groups:
        what = "same bytes" if g.kind == "identical" else f"near-identical, cosine >= {g.similarity:.3f}"
        typer.echo(f"\n{g.gain_bytes / 1e6:.2f} MB, {len(g.files)} files ({what})")
        for n, f in enumerate(g.files):
            size = f"{f.width}x{f.height}, " if f.width else ""
            typer.echo(f"  {'keep' if n == 0 else '    '} {printable(display_path(f.path))} ({size}{f.size / 1e3:.0f} KB)")


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="A Hugging Face checkpoint folder, or a hub id such as openai/clip-vit-base-patch32.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Bundle folder to write [default: $MMSEARCH_HOME/models/NAME].")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name [default: the source's last path component].")] = None,
    variants: Annotated[str, typer.Option("--variants", help="Comma-separated: fp32,fp16,int8.")] = "fp32,fp16,int8",
) -> None:
    """Turn a CLIP-family checkpoint into a validated ONNX bundle (needs `pip install 'mmsearch[export]'`)."""
    try:
        from mmsearch_export import ExportError, export_bundle
    except ImportError as e:
        _fail(f"the export step needs torch and transformers ({e}). Install them with:\n"
              "  pip install torch==2.13.0 && pip install 'mmsearch[export]'")
    from . import paths

    name = name or source.rstrip("/").split("/")[-1]
    target = out or paths.models_dir() / name
    try:
        path = export_bundle(source, target, name=name, variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
                             progress=lambda msg: typer.echo(msg, err=True))
    except ExportError as e:
        _fail(str(e))
    typer.echo(f"Wrote {path}")


@app.command()
def doctor(index_dir: Annotated[Optional[Path], typer.Option(
               "--index", help="The index folder whose permissions to check [default: the default index].")] = None,
           as_json: JsonOpt = False) -> None:
    """What this machine can do: onnxruntime providers, CUDA, HEIC support, OCR, installed models,
    whether each model's int8 towers passed their check on this CPU, and whether the index and the
    caches are private to you."""
    from .doctor import diagnose
    from .errors import MmsearchError

    try:
        info = diagnose(index_dir.expanduser() if index_dir else None)
    except MmsearchError as e:  # installed without its [cpu] or [gpu] extra
        _fail(str(e))
    both, ok, why, checks = info["onnxruntime_packages_clash"], info["cuda"], info["cuda_reason"], info["int8_checks"]
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"onnxruntime {info['onnxruntime']}; providers: {', '.join(info['providers'])}")
    if both:
        typer.echo("warning: both onnxruntime and onnxruntime-gpu are installed and overwrite each other's files; "
                   "keep one: pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'mmsearch[cpu]' (or [gpu])")
    typer.echo(f"CUDA: {'works' if ok else 'not usable: ' + why}")
    typer.echo(f"HEIC/HEIF: {'yes' if info['heic'] else 'no (pip install pillow-heif)'}")
    v = info["video"]
    typer.echo(f"Videos: PyAV {v['pyav']} (FFmpeg {v['ffmpeg']}), decodes {', '.join(v['decodes'])}" if v["installed"]
               else f"Videos: not readable, PyAV cannot be imported ({v['error']})")
    words = info["ocr"]
    if not words["installed"]:
        typer.echo(f"OCR: not installed, the words in pictures and scanned pages are not read ({words['install']})")
    elif "error" in words:
        typer.echo(f"OCR: {words['engine']}, unusable: {words['error']}")
    else:
        typer.echo(f"OCR: on for `mmsearch index` (--no-ocr skips it), {words['engine']} "
                   f"({', '.join(words['models'])}, {words['models_bytes'] / 1e6:.0f} MB), on "
                   f"{'CUDA' if ok else 'the CPU'}")
    typer.echo(f"CPU: {info['cpu']}")
    typer.echo(f"MMSEARCH_HOME: {info['home']}; models: {', '.join(info['models']) or 'none'}")
    for name, found in info["access"].items():
        typer.echo(f"{name} {found['folder']}: {found['summary'] if 'summary' in found else 'none yet'}")
    for c in checks:
        what = f"  {c['model']} {c['variant']} {c['tower']} tower on this CPU: "
        if c["verdict"] is None:
            typer.echo(what + "not checked yet (on its first use)")
        else:
            typer.echo(what + f"{'passed' if c['passed'] else 'failed, fp32 used instead'} (min cosine "
                              f"{c['min_cosine']:.4f} against fp32, bar {c['bar']}, checked {c['checked']})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
