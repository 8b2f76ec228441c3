"""Where mmsearch keeps things: MMSEARCH_HOME holds installed model bundles and the default index."""

from __future__ import annotations

from pathlib import Path

from . import settings

# The default model, a short name of models/catalogue.py (which says why it is the default).
DEFAULT_MODEL = "clip-vit-b-32"
# The same weights exported by `mmsearch export openai/clip-vit-base-patch32`, the default of earlier versions.
EXPORTED_DEFAULT_MODEL = "clip-vit-base-patch32"


def home() -> Path:
    """MMSEARCH_HOME, else the platform's user data folder (~/.local/share/mmsearch on Linux)."""
    return settings.current().home


def models_dir() -> Path:
    return home() / "models"


def default_index_dir() -> Path:
    return home() / "index"
