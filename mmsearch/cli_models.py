"""`mmsearch models`: what is installed, what can be pulled, `pull` and `import`; and the default model
that `mmsearch index` pulls when none is installed. A few lines each over mmsearch.models."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .cli_query import JSON
from .cli_query import fail as _fail_with

app = typer.Typer(
    help="Installed models; `pull` one from the Hugging Face hub or `import` a folder (no torch needed).\n\n"
    "  mmsearch models --available\n\n  mmsearch models pull immich-vit-b-32-laion2b\n\n  mmsearch models import ./ViT-B-32__openai",
    invoke_without_command=True,
    add_completion=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help=JSON.help)]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Install under this name [default: the short name, "
                                                                 "else the repository's name].")]
FolderNameOpt = Annotated[Optional[str], typer.Option("--name", help="Install under this name [default: the folder's "
                                                                       "name].")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an installed model of the same name.")]


def _say(message: str) -> None:
    typer.echo(message, err=True)


@app.callback()
def models(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash every file against its manifest.")] = False,
    available: Annotated[bool, typer.Option("--available", help="List the models that can be pulled by short name "
                                                                "(family, languages, size, published recall, the "
                                                                "default for each language: JSON default_for, "
                                                                "\"*\" for every language but English).")] = False,
) -> None:
    """List installed model bundles (in $MMSEARCH_HOME/models) with size, family and variants."""
    if ctx.invoked_subcommand is not None:
        return
    if available:
        _list_available(as_json)
    else:
        _list_installed(as_json, verify)


def _list_installed(as_json: bool, verify: bool) -> None:
    from . import paths
    from .api import installed_models
    from .bundle import BundleError

    rows: list[dict[str, Any]] = []
    for b in installed_models():
        ok = "ok"
        if verify:
            try:
                b.verify_all()
            except BundleError as e:
                ok = str(e)
        # The folder's name: what --model NAME finds (a bundle imported under another name keeps its manifest)
        rows.append({"name": b.path.name, "manifest_name": b.name, "path": str(b.path), "family": b.family, "variants": b.variants,
                     "embedding_dim": b.embedding_dim, "size_bytes": b.size_bytes(),
                     "source": b.manifest.get("source"), "verified": ok if verify else None})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"No models installed in {paths.models_dir()}. Install the default with:\n"
                   f"  mmsearch models pull {paths.DEFAULT_MODEL}\n(`mmsearch models --available` lists the others.)")
        return
    for r in rows:
        extra = f"  {r['verified']}" if verify else ""
        typer.echo(f"{r['name']:32} {r['family']:12} {','.join(r['variants']):16} {r['size_bytes'] / 1e6:8.1f} MB{extra}")


def _list_available(as_json: bool) -> None:
    from .models.catalogue import CATALOGUE

    rows = [e.to_dict() for e in CATALOGUE]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'name':26} {'repository':58} {'family':12} {'languages':12} {'dim':>4} {'download':>9}")
    for r in rows:
        marks = {"en": "the default for English", "*": "the default for every other language"}
        mark = "".join(f" ({marks[code]})" for code in r["default_for"])
        size = f"~{r['download_mb']} MB"
        typer.echo(f"{r['name']:26} {r['repo']:58} {r['family']:12} {r['languages']:12} {r['embedding_dim']:>4} "
                   f"{size:>9}{mark}")
        if r["quality"]:
            typer.echo(f"{'':26} {r['quality']}")
    typer.echo("\nThe default for your language is pulled by the first `mmsearch index` (its --language CODE, else "
               "the locale: LC_ALL, LC_MESSAGES, LANG).\nmmsearch models pull NAME (or any repository in immich's or "
               "transformers.js's layout: mmsearch models pull OWNER/REPO)")


@app.command("pull")
def pull(
    model: Annotated[str, typer.Argument(help="A short name from `mmsearch models --available`, or a Hugging Face "
                                              "repository id (immich or transformers.js layout).")],
    revision: Annotated[Optional[str], typer.Option("--revision", help="A branch, tag or commit [default: the "
                                                                        "repository's default branch].")] = None,
    name: NameOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download a ready ONNX model from the Hugging Face hub and install it as a verified bundle.

    huggingface_hub downloads it (its cache, HF_HUB_OFFLINE, HF_ENDPOINT and HF_TOKEN apply; an
    interrupted download resumes); every file is checked against the hub's checksum; the graphs are
    rewritten to take batches and return unit vectors, fp16 and int8 variants are made, and each is
    validated against the downloaded fp32 graph before anything is installed.
    """
    from .models import pull as pull_model

    try:
        path = pull_model(model, revision=revision, name=name, force=force, progress=_say,
                          bars=not as_json and sys.stderr.isatty())
    except Exception as e:
        _fail_with(e)
    _report(path, as_json)


@app.command("import")
def import_(
    folder: Annotated[Path, typer.Argument(help="A folder in immich's or transformers.js's layout (a clone or a "
                                                "download of a hub repository).")],
    name: FolderNameOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Install a model folder got by other means (immich or transformers.js layout) as a verified bundle."""
    from .models import import_folder

    try:
        path = import_folder(folder, name=name, force=force, progress=_say)
    except Exception as e:
        _fail_with(e)
    _report(path, as_json)


def _report(path: Path, as_json: bool) -> None:
    from .bundle import load_bundle

    bundle = load_bundle(path)
    m = bundle.manifest
    pulled = m.get("pulled") or {}
    info = {"name": path.name, "manifest_name": bundle.name, "path": str(path), "source": m.get("source"), "commit": pulled.get("commit"),
            "layout": m.get("layout"), "family": bundle.family, "embedding_dim": bundle.embedding_dim,
            "variants": bundle.variants, "left_out": m.get("left_out", {}),
            "validation": {v: m["variants"][v].get("validation") for v in bundle.variants}}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(f"Installed {path.name} ({', '.join(bundle.variants)}; {bundle.embedding_dim}-d) at {path}")


def ensure_default_model(index_dir: Optional[Path], *, yes: bool, quiet: bool,
                         language: Optional[str] = None) -> Optional[str]:
    """`mmsearch index` without --model into a new index: the model it gets (api.default_model: the
    default for the language of --language, else of the locale). Where that must be pulled: say which
    and how big, why (the language), and the alternatives with their sizes; ask on a terminal (not with
    --yes, nor when not on one); pull it. None for an existing index (it knows its model)."""
    from . import paths, settings
    from .api import installed_default
    from .models import catalogue, hub
    from .models.build import pull as pull_model

    folder = index_dir.expanduser() if index_dir else paths.default_index_dir()
    if (folder / "catalog.db").exists():
        return None  # an existing index knows its model
    where_from = "--language" if language is not None else settings.current().locale
    lang = language if language is not None else settings.current().language
    entry = catalogue.default(lang)
    installed = installed_default(lang)
    if installed is not None:
        if installed != entry.name:
            _say(f"Using the installed {installed}: it scores at least as well as the default for "
                 f"{catalogue.language_name(lang)}, {entry.name}.")
        return installed
    try:
        plan = hub.plan(entry.repo)
    except hub.OfflineError as e:
        raise hub.OfflineError(f"no model is installed for {catalogue.language_name(lang)}, and its default "
                               f"({entry.name}) cannot be downloaded: {e}.\n{_without_the_hub(entry.name)}") from None
    mb = plan.total_bytes / 1e6
    where = "from the Hugging Face cache" if plan.cached_folder else f"a {mb:.{0 if mb >= 10 else 1}f} MB download"
    _say(f"No model is installed for {_language_said(lang, where_from)}. Its default is {entry.name} "
         f"({entry.repo}: {entry.family}, {entry.languages}, {entry.embedding_dim}-d{_recall(entry, lang)}), "
         f"{where}; it is installed in {paths.models_dir() / entry.name}.")
    others = catalogue.alternatives(lang, besides=entry.name)
    if others:
        _say("Alternatives (mmsearch models pull NAME, then --model NAME): " + "; ".join(
            f"{e.name} (~{e.download_mb} MB, {e.languages}{_recall(e, lang)})" for e in others)
            + ". `mmsearch models --available` lists all; --language CODE picks another language's default.")
    if not yes and sys.stdin.isatty() and sys.stderr.isatty():
        # (SystemExit, not typer's Exit and Abort: `mmsearch index` runs this outside typer too.)
        try:
            agreed = typer.confirm("Download it now?", default=True, err=True)
        except typer.Abort:  # Ctrl-C or end of input at the question
            _say("\nAborted!")
            raise SystemExit(1) from None
        if not agreed:
            _say(f"Nothing was indexed. Pull a model with `mmsearch models pull {entry.name}` "
                 "(`mmsearch models --available` lists others), or give --model.")
            raise SystemExit(1)
    pull_model(entry.name, progress=_say, bars=not quiet and sys.stderr.isatty(), plan=plan)
    return entry.name


def _language_said(language: Optional[str], where_from: Optional[str]) -> str:
    from .models import catalogue

    if language is None:
        return f"English (the locale names no language{f': {where_from}' if where_from else ''})"
    return f"{catalogue.language_name(language)} ({where_from or 'the locale'})"


def _recall(entry: Any, language: Optional[str]) -> str:
    from .models import catalogue

    lang = language or catalogue.ENGLISH
    figure = entry.recall.get(lang)
    return "" if figure is None else f"; Crossmodal-3600 recall in {catalogue.language_name(lang)} {figure:.2f}%"


def _without_the_hub(default: str) -> str:
    """What to do on a machine that cannot reach the hub: the three ways to give mmsearch a model."""
    from . import paths

    ways = [
        ("mmsearch index PATH --model DIR", "a model folder used where it is (a source checkout of mmsearch ships "
                                            "a small one that knows only toy shapes: tests/fixtures/toyclip)"),
        ("mmsearch models import DIR", "install a model folder copied from elsewhere (an mmsearch bundle, or "
                                       f"immich's or transformers.js's layout) as {paths.models_dir()}/NAME, "
                                       "where `--model NAME` finds it"),
        (f"mmsearch models pull {default}", "later, where the hub can be reached (or HF_ENDPOINT names a mirror)"),
    ]
    width = max(len(command) for command, _ in ways)
    return "Without the hub, give mmsearch a model in one of these ways:\n" + "\n".join(
        f"  {command:{width}}   {why}" for command, why in ways)
