"""mmsearch: find photos and documents by meaning, with CLIP-family models on ONNX Runtime.

The public API (see README): Index, MultiIndex, IndexReport, SearchResult, Progress, MmsearchError,
InvalidArgument, IndexBusyError; for a desktop app: Cancel and Cancelled (stop a run or a search from
another thread), Watch and WatchEvent (Index.watch keeps an index current); for an app that shows what an index holds (the web app uses nothing
else): ItemFile (Index.item), display_path and json_fields (a path as a person reads it, as JSON carries
it), location (a page, slide, sheet or chapter as a person says it), first_line (an error's message for one line), FileGoneError and FileChangedError (an indexed file
that is no longer the one indexed: Index.open_file, picture, file_text) and private (the module through
which mmsearch, and an app beside it, writes what it keeps of the user's material for the user alone).
Nothing here imports torch or transformers; heavy modules load on first use.
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing (a cold keyword query does not load it; mypy reads the
# name alike).
TYPE_CHECKING = False

__version__ = "0.1.0"
__all__ = ["Index", "MultiIndex", "IndexReport", "SearchResult", "Progress", "MmsearchError", "InvalidArgument",
           "IndexBusyError", "BundleError", "load_bundle", "Cancel", "Cancelled", "Watch", "WatchEvent", "ItemFile",
           "display_path", "json_fields", "location", "first_line", "FileGoneError", "FileChangedError", "private"]

if TYPE_CHECKING:
    from .api import Index, IndexBusyError
    from .multi import MultiIndex
    from .errors import InvalidArgument, MmsearchError, first_line
    from .bundle import BundleError, load_bundle
    from .cancel import Cancel, Cancelled
    from .watch import Watch, WatchEvent
    from .catalog import ItemFile
    from .filenames import display_path, json_fields, location
    from .ingest import IndexReport, Progress
    from .search import SearchResult
    from .serving import FileChangedError, FileGoneError
    from . import private

_WHERE = {
    "Index": "api", "IndexBusyError": "api", "MultiIndex": "multi", "MmsearchError": "errors", "InvalidArgument": "errors", "IndexReport": "ingest", "Progress": "ingest",
    "SearchResult": "search", "BundleError": "bundle", "load_bundle": "bundle", "Cancel": "cancel",
    "Cancelled": "cancel", "Watch": "watch", "WatchEvent": "watch", "ItemFile": "catalog",
    "display_path": "filenames", "json_fields": "filenames", "location": "filenames", "first_line": "errors",
    "FileGoneError": "serving", "FileChangedError": "serving",
}


def __getattr__(name: str) -> object:
    # Lazy, so `import mmsearch` stays cheap and the CLI pays only for what a command uses.
    import importlib

    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    if name == "private":  # a module of its own
        return importlib.import_module(".private", __name__)
    raise AttributeError(name)
