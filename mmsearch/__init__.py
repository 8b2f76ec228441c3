"""mmsearch: find photos and documents by meaning, with CLIP-family models on ONNX Runtime.

The public API (see README): Index, MultiIndex, IndexReport, SearchResult, Progress, MmsearchError,
InvalidArgument; for an app that shows what an index holds (the web app uses nothing else): ItemFile
(Index.item), display_path and json_fields (a path as a person reads it, as JSON carries it),
first_line (an error's message for one line) and set_process_limits (Pillow's limits, an app's choice).
Nothing here imports torch or transformers; heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Index", "MultiIndex", "IndexReport", "SearchResult", "Progress", "MmsearchError", "InvalidArgument",
           "BundleError", "load_bundle", "Cancel", "Cancelled", "Watch", "WatchEvent", "ItemFile", "display_path", "json_fields", "first_line", "set_process_limits"]

if TYPE_CHECKING:
    from .api import Index
    from .multi import MultiIndex
    from .errors import InvalidArgument, MmsearchError, first_line
    from .bundle import BundleError, load_bundle
    from .cancel import Cancel, Cancelled
    from .watch import Watch, WatchEvent
    from .catalog import ItemFile
    from .filenames import display_path, json_fields
    from .ingest import IndexReport, Progress
    from .preprocess import set_process_limits
    from .search import SearchResult

_WHERE = {
    "Index": "api", "MultiIndex": "multi", "MmsearchError": "errors", "InvalidArgument": "errors", "IndexReport": "ingest", "Progress": "ingest",
    "SearchResult": "search", "BundleError": "bundle", "load_bundle": "bundle", "Cancel": "cancel",
    "Cancelled": "cancel", "Watch": "watch", "WatchEvent": "watch", "ItemFile": "catalog",
    "display_path": "filenames", "json_fields": "filenames", "first_line": "errors", "set_process_limits": "preprocess",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import mmsearch` stays cheap and the CLI pays only for what a command uses.
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(name)
