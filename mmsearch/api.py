"""The public API: an index folder, the model it is tied to, and the operations on it.

    from mmsearch import Index
    with Index.open("~/.mmsearch-photos", model="clip-vit-b-32") as idx:
        report = idx.index(["~/photos"])
        for hit in idx.search("red car", k=5):
            print(hit.score, hit.path)

Each CLI command is a few lines over one method here.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import arguments, paths, private, settings
from .bundle import Bundle, BundleError, load_bundle
from .catalog import Catalog, CatalogError, ItemFile, ModelRecord
from .errors import InvalidArgument, MmsearchError
from .filenames import display_path, shown
from .search import Filters, Results, SearchResult, Shard, rank

# A query imports only what it uses: the indexing pipeline (documents, Pillow, the scanner) and the
# image side load with the first index run or image query (`python -X importtime` shows the cost).
if TYPE_CHECKING:
    from .duplicates import DuplicateGroup
    from .encoder import ImageEncoder, TextEncoder
    from .watch import Watch, WatchEvent
    from .ingest import IndexReport, Observer, ProgressFn
    from .ocr import TextReader
    from .vectors import VectorStore

log = logging.getLogger("mmsearch")

LOCK_FILE = "index.lock"  # held by the one process that writes the index
# What mmsearch keeps in an index folder: the catalog and its journals, the vector files and their
# temporary files, the lock, the thumbnails and the shards. A folder given with --index may hold other
# files too; privacy (private.py) checks and tightens these alone.
_INDEX_ENTRY = re.compile(r"catalog\.db(-wal|-shm|-journal)?|index\.lock|vectors[-.].*|thumbs|shards")


def is_index_entry(name: str) -> bool:
    return _INDEX_ENTRY.fullmatch(name) is not None
# How long Index.index() waits for another writer of the same index before IndexBusyError, unless told.
DEFAULT_WAIT_S = 60.0



__all__ = ["Index", "IndexBusyError", "InvalidArgument", "MmsearchError", "default_model", "default_model_installed",
           "installed_models", "resolve_model"]


class IndexBusyError(MmsearchError):
    """Another process (or thread) is writing this index, and waiting for it ran out."""


def resolve_model(model: str | os.PathLike[str] | None, *, language: str | None = None) -> Bundle:
    """A model given as a bundle folder, or by name under MMSEARCH_HOME/models (None: the default for
    `language`, an ISO 639 code, else for the user's locale; see default_model)."""
    if model is None:
        model = default_model(language)
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return load_bundle(candidate)
    installed = paths.models_dir() / str(model)
    if installed.is_dir():
        return load_bundle(installed)
    from .models.catalogue import find

    if find(str(model)) is not None:
        hint = f"mmsearch models pull {model}" + ("   (or run `mmsearch index`, which pulls it)"
                                                  if str(model) in (paths.DEFAULT_MODEL, paths.MULTILINGUAL_DEFAULT_MODEL)
                                                  else "")
    else:
        hint = (f"mmsearch models pull OWNER/REPO --name {model}   (a ready ONNX model on the hub), or\n"
                f"  mmsearch models import FOLDER --name {model}, or\n"
                f"  mmsearch export <checkpoint folder or hub id> --name {model}   (needs torch)")
    others = [b.path.name for b in installed_models()]
    raise MmsearchError(
        f"model '{model}' is not installed (looked for a bundle folder at {candidate} and {installed}). "
        f"Install it with:\n  {hint}\n"
        + (f"or give one that is installed: {', '.join(others)}\n" if others else "")
        + "(`mmsearch models` lists what is installed, `mmsearch models --available` what can be pulled.)"
    )


def default_model(language: str | None = None) -> str:
    """The model a new index gets when none is given: the default for `language` (None: the user's
    locale, see settings.py) where it is installed; else the installed catalogue model with the best
    published recall in that language, where it is at least the default's; else the default's name
    (not installed: `mmsearch index` pulls it, the library says how)."""
    from .models import catalogue

    lang = language if language is not None else settings.current().language
    return installed_default(lang) or catalogue.default(lang).name


def installed_default(language: str | None) -> str | None:
    """default_model's installed answer for a language code, or None where it must be pulled."""
    from .models import catalogue

    lang = language or catalogue.ENGLISH
    wanted = catalogue.default(lang)
    if _installed(wanted.name):
        return wanted.name
    bar = wanted.recall.get(lang, 0.0)
    fits = []
    for bundle_dir in _installed_dirs():
        entry = catalogue.known(bundle_dir.name, _manifest_source(bundle_dir))
        if entry is not None and entry.recall.get(lang, -1.0) >= bar:
            fits.append((entry.recall[lang], bundle_dir.name))
    return max(fits)[1] if fits else None


def default_model_installed(language: str | None = None) -> bool:
    lang = language if language is not None else settings.current().language
    return installed_default(lang) is not None


def newer_default(record_name: str | None, record_path: str | None, language: str | None = None) -> dict[str, Any] | None:
    """Where an index was built with a catalogued model and the default for the language (None: the
    locale's) has a better published recall in it: the default, both figures and what to do."""
    from .models import catalogue

    lang = (language if language is not None else settings.current().language) or catalogue.ENGLISH
    built = catalogue.known(record_name, _manifest_source(Path(record_path)) if record_path else None)
    if built is None:
        return None  # a model of one's own: nothing published to compare
    default = catalogue.default(lang)
    mine, theirs = built.recall.get(lang), default.recall.get(lang)
    if built.name == default.name or theirs is None or (mine is not None and theirs <= mine):
        return None
    name = catalogue.language_name(lang)
    versus = f"vs {mine:.2f}%" if mine is not None else f"vs none published for {built.name} ({built.languages})"
    return {
        "model": default.name, "language": lang, "recall": theirs, "index_recall": mine,
        "note": (f"built with {record_name}; the default is now {default.name} (Crossmodal-3600 recall in {name} "
                 f"{theirs:.2f}% {versus}): re-index into a new folder to use it:\n"
                 f"  mmsearch index PATH... --index NEW_FOLDER --model {default.name}"),
    }


def _installed(name: str) -> bool:
    return (paths.models_dir() / name / "manifest.json").is_file()


def _installed_dirs() -> list[Path]:
    root = paths.models_dir()
    return sorted(d for d in root.iterdir() if (d / "manifest.json").is_file()) if root.is_dir() else []


def _manifest_source(folder: Path) -> str | None:
    """The repository a bundle was pulled from (its manifest's "source"), without loading the bundle."""
    import json

    try:
        source = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return source if isinstance(source, str) else None


def installed_models() -> list[Bundle]:
    out = []
    root = paths.models_dir()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "manifest.json").exists():
                try:
                    out.append(load_bundle(d))
                except BundleError as e:
                    log.warning("%s", e)
    return out


class Index:
    """An index folder: catalog.db (the truth) and its vector files (vectors.py), tied to one model bundle.

    Safe to search from several threads, also while another thread runs `index()`; searches see
    the last committed state.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, model: str | os.PathLike[str] | None = None,
                 device: str = "auto", variant: str | None = None, readonly: bool = False):
        self.path = self.folder_of(path)
        self.device = arguments.choice("device", device, arguments.DEVICES)
        self.variant = arguments.optional_choice("variant", variant, arguments.VARIANTS)
        self.readonly = readonly
        exists = (self.path / "catalog.db").exists()
        if readonly and not exists:
            where = "" if path is None else f" --index {self.path}"
            raise MmsearchError(f"{self.path}: no index here yet. Create one with:\n  mmsearch index PATH{where}")
        # The model is resolved and checked against the index when first needed (status and forget work
        # without it). A new index's model is chosen now and recorded as it is created; a model given
        # for an existing index is checked now: a wrong one fails here, before anything is written.
        self._model: str | os.PathLike[str] | Bundle | None = model
        self._bundle: Bundle | None = None
        self._bundle_lock = threading.Lock()
        if not exists and not readonly:
            try:
                self._model = resolve_model(model)
            except BundleError as e:
                raise MmsearchError(str(e)) from None
        try:
            if not readonly:
                # Before anything is written: another account's index is refused, a loose one tightened.
                private.claim(self.path, "index", is_index_entry)
            self.catalog = Catalog(self.path, readonly=readonly)
        except CatalogError as e:
            raise MmsearchError(str(e)) from None
        except OSError as e:
            raise MmsearchError(f"{self.path}: cannot open the index folder ({e.strerror or e})") from None
        if not exists and not readonly:
            self._record_model(self.bundle)
        elif model is not None:
            self.bundle  # noqa: B018 (checks it against the index)
        self._store: VectorStore | None = None
        self._lock = threading.RLock()
        # Each tower loads under its own lock, so a load overlaps the vector work under self._lock.
        self._image_lock = threading.Lock()
        self._text_lock = threading.Lock()
        self._image_encoder: ImageEncoder | None = None
        self._text_encoder: TextEncoder | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> "Index":
        """Same as Index(path, ...): reads like the CLI."""
        return cls(path, **kwargs)

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.catalog.close()

    # -- the model ---------------------------------------------------------------------------

    @property
    def bundle(self) -> Bundle:
        """The model bundle this index uses (the one it was built with, unless another was given):
        resolved and checked against the index, never recorded here."""
        with self._bundle_lock:
            if self._bundle is None:
                self._bundle = self._resolve_model(self._model)
            return self._bundle

    @property
    def embedding_dim(self) -> int:
        record = self.catalog.model_record()
        return record.embedding_dim if record else self.bundle.embedding_dim

    def _resolve_model(self, model: str | os.PathLike[str] | Bundle | None) -> Bundle:
        record = self.catalog.model_record()
        if model is None and record is not None:
            model = record.path if Path(record.path).is_dir() else record.name
        try:
            bundle = model if isinstance(model, Bundle) else resolve_model(model)
        except BundleError as e:
            raise MmsearchError(str(e)) from None
        if record is not None and record.manifest_sha256 != bundle.manifest_sha256:
            raise MmsearchError(
                f"{self.path}: this index was built with model '{record.name}' (manifest "
                f"{record.manifest_sha256[:12]}) and cannot be used with '{bundle.name}' ({bundle.path}, manifest "
                f"{bundle.manifest_sha256[:12]}): vectors of different models do not compare.\n"
                f"Query it with --model {record.path or record.name}, or re-index with the "
                f"new model into a new folder:\n  mmsearch index PATH --index NEW_FOLDER --model {model or bundle.path}\n"
                f"(or `mmsearch forget` every root / delete {self.path} and index again)."
            )
        return bundle

    def _record_model(self, bundle: Bundle) -> None:
        """Tie the index to its model: from now on its vectors only compare with that model's."""
        self.catalog.record_model(ModelRecord(bundle.name, str(bundle.path.resolve()), bundle.manifest_sha256,
                                              bundle.embedding_dim))

    def image_encoder(self) -> ImageEncoder:
        with self._image_lock:
            if self._image_encoder is None:
                from .encoder import ImageEncoder

                self._image_encoder = ImageEncoder(self.bundle, variant=self.variant, device=self.device,
                                                   prepack=not self.readonly)  # as for text, below
            return self._image_encoder

    def text_encoder(self) -> TextEncoder:
        with self._text_lock:
            if self._text_encoder is None:
                from .encoder import TextEncoder

                # A read-only index only ever encodes queries: it trades ~1 ms a query for a
                # session that opens in half the time (a cold `mmsearch query`'s largest cost).
                self._text_encoder = TextEncoder(self.bundle, variant=self.variant, device=self.device,
                                                 prepack=not self.readonly)
            return self._text_encoder

    def text_reader(self) -> TextReader:
        """The OCR models (mmsearch[ocr]), on the device the towers use: loaded for each run that reads
        words (~0.5 s), and let go when it has read them (they take ~100 MB)."""
        from .ocr import TextReader

        return TextReader(self.device)

    # -- the vectors -------------------------------------------------------------------------

    @property
    def vectors(self) -> VectorStore:
        """The vector store: the graph, the flat file and when they are saved (vectors.py)."""
        with self._lock:
            if self._store is None:
                from .vectors import VectorStore  # numpy and hnswlib: a keyword query loads neither

                self._store = VectorStore(self.path, self.embedding_dim, self.catalog)
            return self._store

    # -- indexing ------------------------------------------------------------------------------

    def index(self, paths_: Iterable[str | os.PathLike[str]], *, exclude: Iterable[str] = (),
              include_hidden: bool = False, default_excludes: bool = True, max_document_chars: int | None = None,
              progress: ProgressFn | None = None,
              cancel: Callable[[], bool] | None = None, workers: int | None = None,
              wait: float | None = DEFAULT_WAIT_S, on_wait: Callable[[], None] | None = None,
              observe: Observer | None = None, ocr: bool | None = None, engine: str = "local",
              ray_address: str | None = None, shard_dir: str | os.PathLike[str] | None = None,
              shard_files: int | None = None) -> IndexReport:
        """Index (or update) these folders and return what changed. Only one run at a time writes
        an index: another waits up to `wait` seconds (default DEFAULT_WAIT_S, one minute; None: as long
        as it takes; 0: not at all), then raises IndexBusyError. When it has to wait it calls `on_wait()`
        first (default: one log line on the "mmsearch" logger).
        `observe(step)` is called as the run enters each step (see ingest.report.Observer).
        What is walked: hidden names only with `include_hidden`; `exclude` globs; the default excludes
        (node_modules, virtualenvs, caches: ignore.py) unless `default_excludes` is False; and what the
        `.mmsearchignore` files say. A file left out that was indexed leaves the index.
        `max_document_chars`: a document's characters indexed at most (None: MMSEARCH_MAX_DOCUMENT_CHARS,
        else 4,000,000; 0: no limit); a document cut there is listed in the report's `partial`.
        `ocr`: read the words in pictures and scanned pages after the rest is indexed; None: when
        OCR is installed (`mmsearch[ocr]`), True: it must be (else an error says how), False: not.

        engine="ray" decodes and encodes on a Ray cluster (the `distributed` extra): `ray_address` (else
        RAY_ADDRESS, else a Ray started on this machine for the run), `shard_dir` (a folder every node can
        write and this process read; default INDEX/shards), `shard_files` (files per shard). The index is
        the one a local run makes; the scan, the plan and the commits stay in this process."""
        if self.readonly:
            raise MmsearchError(f"{self.path}: opened read-only")
        roots = arguments.existing_paths(list(paths_))
        workers = arguments.at_least_one("workers", workers)
        from . import ocr as ocr_engine

        if ocr and not ocr_engine.installed():
            raise ocr_engine.OcrError(f"OCR is not installed; install it with: {ocr_engine.INSTALL_HINT}")
        reads_words = ocr_engine.installed() if ocr is None else ocr
        ocr_off = (None if reads_words else "OCR is off" if ocr is False
                   else f"OCR is not installed: {ocr_engine.INSTALL_HINT}")
        engine = arguments.choice("engine", engine, arguments.ENGINES)
        if shard_files is not None:
            shard_files = arguments.at_least_one("shard_files", shard_files)
        ray_engine = None
        if engine == "ray":
            from .ingest.distributed import RayEngine, RayOptions, import_ray

            import_ray()  # before the lock and the scan: a missing extra is said at once
            options = RayOptions(address=ray_address, shard_dir=Path(arguments.user_path(shard_dir)) if shard_dir else None)
            if shard_files is not None:
                options.image_shard_files = options.document_shard_files = shard_files
            ray_engine = RayEngine(self.bundle, self.variant, self.device, self.path, options)
        elif ray_address is not None or shard_dir is not None or shard_files is not None:
            raise InvalidArgument("ray_address, shard_dir and shard_files go with engine='ray' (--engine ray)")
        return self._run(roots, exclude=exclude, include_hidden=include_hidden, default_excludes=default_excludes,
                         max_document_chars=max_document_chars, progress=progress, cancel=cancel, workers=workers, wait=wait, on_wait=on_wait, observe=observe, ocr=(reads_words, ocr_off),
                         engine=ray_engine)

    def update(self, paths_: Iterable[str | os.PathLike[str]], *, exclude: Iterable[str] = (),
               include_hidden: bool = False, default_excludes: bool = True, max_document_chars: int | None = None,
               progress: ProgressFn | None = None,
               cancel: Callable[[], bool] | None = None, wait: float | None = None,
               ocr: bool | None = None) -> IndexReport:
        """Bring these paths up to date without scanning the rest of the roots: files or folders inside the
        index's folders that were added, changed, moved or deleted (a watch calls this with what changed).
        A path and its new name given together are a move (the vectors are kept); a path that is gone
        leaves the index with everything under it. Returns what changed, as `index` does."""
        if self.readonly:
            raise MmsearchError(f"{self.path}: opened read-only")
        roots = [p for _, p in self.catalog.roots()]
        wanted = [arguments.user_path(p) for p in paths_]
        holders = {r for r in roots for p in wanted if p == r or p.startswith(r.rstrip(os.sep) + os.sep)}
        outside = [p for p in wanted if not any(p == r or p.startswith(r.rstrip(os.sep) + os.sep) for r in roots)]
        if outside:
            raise InvalidArgument(f"{display_path(outside[0])}: not inside a folder this index holds; index that folder "
                                  "first (`mmsearch index FOLDER`)")
        from . import ocr as ocr_engine

        reads_words = ocr_engine.installed() if ocr is None else ocr
        ocr_off = None if reads_words else "OCR is off" if ocr is False else f"OCR is not installed: {ocr_engine.INSTALL_HINT}"
        return self._run(sorted(holders), within=wanted, exclude=exclude, include_hidden=include_hidden,
                         default_excludes=default_excludes, max_document_chars=max_document_chars, progress=progress, cancel=cancel, wait=wait, ocr=(reads_words, ocr_off))

    def _run(self, roots: list[str], *, within: list[str] | None = None, exclude: Iterable[str] = (),
             include_hidden: bool = False, default_excludes: bool = True, max_document_chars: int | None = None,
             progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None,
             workers: int | None = None, wait: float | None = None, on_wait: Callable[[], None] | None = None,
             observe: Observer | None = None, ocr: tuple[bool, str | None] = (False, "OCR is off"),
             engine: Any = None) -> IndexReport:
        """A run over checked roots, under the index's write lock (see index and update)."""
        from filelock import Timeout

        from .ingest import Encoders, Run, run_index

        reads_words, ocr_off = ocr
        max_chars = _max_document_chars(max_document_chars)
        lock = self._write_lock()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if wait != 0:
                if on_wait is None:
                    log.info("%s: another run is writing this index; waiting %s", self.path,
                             "for it to finish" if wait is None else f"up to {wait:g} s")
                else:
                    on_wait()
            try:
                lock.acquire(timeout=-1 if wait is None else wait)
            except Timeout:
                raise IndexBusyError(
                    f"{self.path}: another `mmsearch index` is writing this index; try again when it finishes"
                ) from None
        if self.catalog.model_record() is None:  # an index from before models were recorded
            self._record_model(self.bundle)
        vectors = self.vectors
        try:
            vectors.begin_writing()
            encoders = Encoders(self.image_encoder, self.text_encoder,
                                self.text_reader if reads_words else None, ocr_off)
            run = Run(self.catalog, vectors, encoders, self.bundle.image_spec, workers=workers,
                      max_document_chars=max_chars, bundle=self.bundle)
            if progress is not None:
                run.progress = progress
            if cancel is not None:
                run.cancelled = cancel
            if observe is not None:
                run.observe = observe
            report = run_index(run, roots, exclude=exclude, include_hidden=include_hidden,
                               default_excludes=default_excludes, engine=engine, within=within)
            if not report.cancelled:
                self.catalog.compact()  # past its threshold only: the room of what this run removed
                self._calibrate()
            return report
        finally:
            vectors.end_writing()
            lock.release()

    def _calibrate(self) -> None:
        """Measure how the model scores unrelated pairs (calibration.py) where the index has no measure
        for its model yet."""
        from . import calibration

        known = calibration.Calibration.from_json(self.catalog.meta(calibration.META_KEY))
        if known is not None and known.manifest_sha256 == self.bundle.manifest_sha256:
            return
        measured = calibration.measure(self.text_encoder().encode, self.image_encoder().encode,
                                       self.bundle.image_spec, self.bundle.manifest_sha256)
        with self.catalog.write() as conn:
            self.catalog.set_meta(conn, calibration.META_KEY, measured.to_json())

    def watch(self, paths: Iterable[str | os.PathLike[str]] | None = None, *,
              on_event: Callable[[WatchEvent], None] | None = None, settle: float | None = None,
              exclude: Iterable[str] = (), include_hidden: bool = False, default_excludes: bool = True) -> Watch:
        """Keep this index current while files change under `paths` (default: its roots): a normal run
        first, then every change indexed once it has been quiet for `settle` seconds (default
        watch.SETTLE_S). Returns the running Watch: `stop()` it. `on_event(WatchEvent)` is called on the
        watch's thread after each run. Another watch of the same index is refused (WatchError)."""
        if self.readonly:
            raise MmsearchError(f"{self.path}: opened read-only")
        from .watch import SETTLE_S, Watch

        roots = arguments.existing_paths(list(paths)) if paths else [p for _, p in self.catalog.roots()]
        if not roots:
            raise InvalidArgument(f"{self.path}: no folders to watch; give some (they are indexed first)")
        return Watch(self, roots, on_event=on_event, settle=SETTLE_S if settle is None else settle,
                     exclude=exclude, include_hidden=include_hidden, default_excludes=default_excludes).start()

    def forget(self, path: str | os.PathLike[str]) -> int:
        """Drop an indexed root (or every root under path) and all it holds; returns files dropped."""
        target = display_path(arguments.user_path(path))  # roots are stored in display form
        roots = [(rid, p) for rid, p in self.catalog.roots() if p == target or p.startswith(target.rstrip(os.sep) + os.sep)]
        if not roots:
            known = ", ".join(p for _, p in self.catalog.roots()) or "none"
            raise MmsearchError(f"{target}: not an indexed root (roots: {known})")
        with self._write_lock():
            vectors = self.vectors
            vectors.begin_writing()
            try:
                dropped = 0
                for rid, _ in roots:
                    removed_items, files = self.catalog.remove_root(rid)
                    vectors.remove(removed_items)
                    dropped += files
                vectors.save()
                self.catalog.compact()
            finally:
                vectors.end_writing()
        return dropped

    def compact(self) -> dict[str, int]:
        """Give the room of removed files back to the file system now: the catalog rewritten without its
        free pages, the vector graph without the slots of removed vectors. (Runs and forgets do it by
        themselves once that room passes a quarter of the file.) Crash-safe like every write; waits for
        a run writing the index. Returns the folder's size before and after, in bytes."""
        if self.readonly:
            raise MmsearchError(f"{self.path}: opened read-only")
        from filelock import Timeout

        before = self.size_bytes()
        lock = self._write_lock()
        try:
            lock.acquire(timeout=DEFAULT_WAIT_S)
        except Timeout:
            raise IndexBusyError(f"{self.path}: another `mmsearch index` is writing this index; try again when it "
                                 "finishes") from None
        vectors = self.vectors
        try:
            vectors.begin_writing()
            vectors.save(compact=True)
            self.catalog.compact(force=True)
        finally:
            vectors.end_writing()
            lock.release()
        return {"before_bytes": before, "after_bytes": self.size_bytes()}

    def size_bytes(self) -> int:
        """What the index folder takes on disk (its files, not the thumbnails' cache)."""
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def _write_lock(self) -> Any:
        """The lock of the one process that writes the index (created 0600, as everything in it)."""
        from filelock import FileLock

        return FileLock(str(self.path / LOCK_FILE), mode=private.FILE_MODE)

    # -- searching -----------------------------------------------------------------------------

    def search(self, text: str | None = None, *, image: str | os.PathLike[str] | None = None, k: int = 10,
               type: str = "all", under: str | os.PathLike[str] | None = None, after: datetime | str | None = None,
               before: datetime | str | None = None, mode: str = "hybrid",
               min_similarity: float | None = None, cancel: Callable[[], bool] | None = None) -> Results:
        """Text or image query -> the k best files (k whenever k match), those holding the query's words
        first (docs/search.md). Only the tower the query needs is loaded. Dates: a datetime or an ISO
        string; without a zone it is local time. `min_similarity`: the cosine below which files found
        by meaning alone are left out (default: the model's relevance floor for a text query with
        words, none otherwise). `cancel` (a Cancel, or any callable): once it returns True the search
        raises Cancelled at its next stage (an app drops a search the user has typed past)."""
        text, mode = arguments.query(text, image, mode)
        filters = Filters.checked(k, type, under, after, before)
        min_similarity = arguments.similarity("min_similarity", min_similarity)
        self._check_under(filters.under)
        _stop_if(cancel)
        vector, mode = self.encode_query(text, image, mode)
        _stop_if(cancel)
        return rank(self.catalog, self.vectors if vector is not None else None, query_vector=vector, query_text=text,
                    k=k, filters=filters, mode=mode, query_kind="text" if text is not None else "image",
                    min_similarity=min_similarity)

    def encode_query(self, text: str | None, image: str | os.PathLike[str] | None, mode: str) -> tuple[Any, str]:
        """A checked query (arguments.query) encoded where its mode needs a vector: (vector or None, mode);
        an image query is always by vector."""
        vector = None
        if text is not None:
            if mode != "keyword":
                loaded = self._text_encoder
                if loaded is None:
                    # A cold query: the text tower's session (the largest cost left) is created on
                    # another thread (onnxruntime releases the GIL) while this one maps the vectors.
                    encoder = _background(self.text_encoder)
                    self.vectors.prepare()
                    vector = encoder().encode([text])[0]
                else:
                    vector = loaded.encode([text])[0]
        elif image is not None:
            from .preprocess import QUERY_MAX_PIXELS, decode_image

            # (Opening the image tower on a thread while this one decodes was measured: no gain, the
            # two compete for the same cores; decoding at draft scale takes a few ms.)
            image = arguments.image_file(image)
            try:
                decoded = decode_image(image, self.bundle.image_spec, decode_limit=QUERY_MAX_PIXELS)
            except Exception as e:
                raise MmsearchError(f"{shown(image)}: {e}") from None
            vector = self.image_encoder().encode(decoded.pixels)[0]
            mode = "vector"
        return vector, mode

    def similar(self, path: str | os.PathLike[str], *, k: int = 10, type: str = "all",
                under: str | os.PathLike[str] | None = None, after: datetime | str | None = None,
                before: datetime | str | None = None, at: float | None = None) -> Results:
        """Files like an indexed file, from its stored vector (the file itself left out). `at`: for a
        video, the moment (seconds from its start) whose frame to compare with (else all of its frames)."""
        target = arguments.user_path(path)
        filters = Filters.checked(k, type, under, after, before)
        self._check_under(filters.under)
        found = self.stored_vector(target, at=at)
        if found is None:
            raise MmsearchError(
                f"{shown(target)}: not in this index. Index it first, or search by its content: "
                "`mmsearch query --image FILE` (library: Index.search(image=...))"
            )
        file_id, vector = found
        return rank(self.catalog, self.vectors, query_vector=vector, query_text=None, k=k, filters=filters,
                    mode="vector", exclude_file=file_id, query_kind=self.file_kind(file_id))

    def _check_under(self, under: str | None) -> None:
        """A folder to search under that neither exists nor holds anything indexed is a typo: said so,
        rather than "no results". (A folder that is gone, an unplugged drive, still holds its files in
        the index, and is searched.)"""
        if under is None or os.path.exists(under):
            return
        inside = under.rstrip(os.sep) + os.sep
        for _, root in self.catalog.roots():
            if root == under or root.startswith(inside) or under.startswith(root.rstrip(os.sep) + os.sep):
                return
        raise InvalidArgument(f"under {shown(under)}: no such folder, and nothing indexed is there")

    def duplicates(self, *, threshold: float | None = None, near: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> list[DuplicateGroup]:
        """Groups of files with the same content, and of near-identical pictures (resized, recompressed,
        slightly cropped, re-encoded), the most space to gain first; from what the index holds (no model
        is loaded). `threshold`: the least cosine of two pictures' vectors (default
        duplicates.DEFAULT_THRESHOLD); `near=False`: identical content only."""
        from .duplicates import DEFAULT_THRESHOLD, find_duplicates

        limit = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        if not -1.0 <= limit <= 1.0:
            raise InvalidArgument(f"threshold {threshold!r}: a cosine, between -1 and 1")
        return find_duplicates(self.catalog, threshold=limit, near=near, progress=progress)

    def stored_vector(self, path: str, at: float | None = None) -> tuple[int, Any] | None:
        """(file id, its vector) for an indexed file, None where this index does not hold it; `at`: a
        video's frame nearest that moment (seconds) rather than the mean of its frames."""
        row = self.catalog.file_by_path(path)
        if row is None:
            return None
        if row.status not in ("indexed", "indexing"):
            raise MmsearchError(f"{shown(path)}: could not be indexed ({self.catalog.file_error(row.id)}); "
                                "fix that and run `mmsearch index` again")
        if at is not None and row.kind != "video":
            raise InvalidArgument(f"{shown(path)}: a moment (at) is for a video; this is a {row.kind}")
        vector = self.catalog.file_vector(row.id) if at is None else self.catalog.frame_vector(row.id, float(at))
        if vector is None and self.catalog.vectors_pending_for(row.id):
            raise MmsearchError(f"{shown(path)}: its vectors are still to be computed (a run stopped before it "
                                "finished them); `mmsearch index` again computes them")
        if vector is None:
            raise MmsearchError(f"{shown(path)}: has no vector to compare: its pages have no text layer "
                                "and their words are not read yet (OCR: pip install 'mmsearch[ocr]', then "
                                "`mmsearch index` again)")
        return row.id, vector

    # -- what an app shows (the web app: cards, thumbnails, the original file) -------------------

    def item(self, item_id: int) -> ItemFile | None:
        """An item with its file's row (None: no such item, or gone since)."""
        if not 0 < item_id < 2**63:  # SQLite's integers: past them is no item, not an OverflowError
            return None
        return self.catalog.item_file(item_id)

    @staticmethod
    def picture(item: ItemFile, fit: int) -> Any:
        """What an item shows, as an upright RGB PIL image whose long side reaches at least `fit` pixels
        (a photo decoded at the smallest scale that does) or is `fit` (a PDF chunk's page, drawn), made
        from the file only while it is the one indexed (`open_file`). Raises FileGoneError or
        FileChangedError where it is not, MmsearchError where it cannot be drawn."""
        from .serving import open_indexed

        with open_indexed(item) as f:
            if item.kind == "image":
                from .preprocess import open_image

                return open_image(f, fit=fit)[0]
            if item.kind == "video":
                from .video import frame_at

                return frame_at(f, item.frame_s or 0.0, fit)
            from .textfiles import render_page

            return render_page(Path(item.path), item.page or 1, fit, file=f)

    @staticmethod
    def open_file(item: ItemFile) -> IO[bytes]:
        """An item's file opened for reading, only while its path holds the file that was indexed (the same
        size, mtime and change time, a regular file; see serving.py): what an app serves of an index.
        Raises FileGoneError or FileChangedError saying why not."""
        from .serving import open_indexed

        return open_indexed(item)

    @staticmethod
    def file_text(item: ItemFile) -> Iterator[str]:
        """A text document's text as it is written, decoded as indexing decoded it (a file in cp1252 or
        Shift_JIS reads as it should), from the file only while it is the one indexed."""
        from .serving import open_indexed
        from .textfiles import decode_text

        f = open_indexed(item)  # now: a file that is not the one indexed is said before any text

        def text() -> Iterator[str]:
            with f:
                yield from decode_text(f, item.path)

        return text()

    def recent(self, k: int = 24, *, type: str = "image") -> list[ItemFile]:
        """The k newest files of a kind ("image", "document" or "video"), by their date: the capture time
        where a photo or a video records one, else the modification time."""
        arguments.at_least_one("k", k)
        return self.catalog.recent_items(arguments.choice("type", type, ("image", "document", "video")), k)

    def thumbnail(self, item_id: int, size: int = 256) -> Any:
        """A picture of an item (a result's `item_id`) for an app to show: an upright RGB PIL image whose
        long side is at most `size` pixels (a photo decoded at a reduced scale; a PDF hit's page drawn).
        Raises MmsearchError where the item is gone or cannot be drawn, OSError where the file cannot be
        read."""
        item = self.item(item_id)
        if item is None:
            raise MmsearchError(f"item {item_id}: not in this index (any more)")
        picture = self.picture(item, size)
        picture.thumbnail((size, size))
        return picture

    def counts(self) -> dict[str, int]:
        """Files and items by kind, files in error, pictures with words, files whose words are still to read."""
        return self.catalog.counts()

    def roots(self) -> list[str]:
        """The folders (and single files) this index holds, as they were given."""
        return [p for _, p in self.catalog.roots()]

    def model_record(self) -> ModelRecord | None:
        """The model this index was built with, as recorded in it (None: no model recorded yet)."""
        return self.catalog.model_record()

    def shard(self, *, vectors: bool = True, exclude_file: int | None = None) -> Shard:
        """This index as search.rank_many ranks it beside others (MultiIndex); `vectors`: whether the query
        has a vector side, `exclude_file`: a file to leave out."""
        return self.catalog, self.vectors if vectors else None, exclude_file

    def file_kind(self, file_id: int) -> str:
        """An indexed file's kind ("image", "document" or "video"), by its id (as stored_vector gives it)."""
        return self.catalog.file_kinds([file_id])[file_id]

    @staticmethod
    def folder_of(path: str | os.PathLike[str] | None = None) -> Path:
        """The folder Index(path) opens: the path as the user means it, or the default index."""
        return Path(arguments.user_path(path)) if path else paths.default_index_dir()

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        from .watch import running as watch_running

        size = self.size_bytes()
        record = self.catalog.model_record()
        return {
            "index": str(self.path),
            "model": record.name if record else (self._bundle.name if self._bundle else None),
            "model_path": record.path if record else None,
            # a better default for the user's language than the model the index keeps (None: none)
            "newer_default": newer_default(record.name, record.path) if record else None,
            "schema_version": self.catalog.schema_version(),
            "roots": [p for _, p in self.catalog.roots()],
            "counts": self.catalog.counts(),
            # files of types mmsearch does not read, by suffix, as the last whole walk of each root found them
            "not_read": self.catalog.not_read(),
            "size_bytes": size,
            "last_run": self.catalog.last_run(),
            "runs": self.catalog.runs(10),  # the last ten, newest first
            "errors": self.catalog.errors(),
            "watch": watch_running(self.path),  # {"pid", "roots", "since"} of the watch keeping it current
            # Whose the index is and what in it other accounts may read (the text of every document).
            "access": private.inspect(self.path, is_index_entry).to_dict(),
        }


def _max_document_chars(given: int | None) -> int | None:
    """The cap on a document's characters for a run: the one given, else the setting's (0: none)."""
    if given is None:
        try:
            return settings.max_document_chars()
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise InvalidArgument(f"max_document_chars must be a whole number of 0 or more (got {given!r}; 0: no limit)")
    return given or None


def _background(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Start fn() on a thread; the returned callable waits for it and returns (or raises) its result."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append((True, fn()))
        except BaseException as e:  # handed to the caller, raised there
            out.append((False, e))

    thread = threading.Thread(target=run, name="mmsearch-load", daemon=True)
    thread.start()

    def result() -> Any:
        thread.join()
        ok, value = out[0]
        if not ok:
            raise value
        return value

    return result


def _stop_if(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        from .cancel import Cancelled

        raise Cancelled("the search was cancelled")
