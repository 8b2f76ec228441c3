"""Where mmsearch keeps things: MMSEARCH_HOME holds installed model bundles and the default index."""

from __future__ import annotations

from pathlib import Path

from . import settings

DEFAULT_MODEL = "clip-vit-base-patch32"
DEFAULT_MODEL_SOURCE = "openai/clip-vit-base-patch32"


def home() -> Path:
    """MMSEARCH_HOME, else the platform's user data folder (~/.local/share/mmsearch on Linux)."""
    return settings.current().home


def models_dir() -> Path:
    return home() / "models"


def default_index_dir() -> Path:
    return home() / "index"
