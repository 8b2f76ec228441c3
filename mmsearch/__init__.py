"""mmsearch: find photos and documents by meaning, with CLIP-family models on ONNX Runtime.

The public API (see README): Index, MultiIndex, IndexReport, SearchResult, Progress, MmsearchError,
InvalidArgument, IndexBusyError.
Nothing here imports torch or transformers; heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Index", "MultiIndex", "IndexReport", "SearchResult", "Progress", "MmsearchError", "InvalidArgument",
           "IndexBusyError", "BundleError", "load_bundle"]

if TYPE_CHECKING:
    from .api import Index, IndexBusyError
    from .multi import MultiIndex
    from .errors import InvalidArgument, MmsearchError
    from .bundle import BundleError, load_bundle
    from .ingest import IndexReport, Progress
    from .search import SearchResult

_WHERE = {
    "Index": "api", "IndexBusyError": "api", "MultiIndex": "multi", "MmsearchError": "errors", "InvalidArgument": "errors", "IndexReport": "ingest", "Progress": "ingest",
    "SearchResult": "search", "BundleError": "bundle", "load_bundle": "bundle",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import mmsearch` stays cheap and the CLI pays only for what a command uses.
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(name)
