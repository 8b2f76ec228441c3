"""Where mmsearch keeps things: MMSEARCH_HOME holds installed model bundles and the default index."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "clip-vit-base-patch32"
DEFAULT_MODEL_SOURCE = "openai/clip-vit-base-patch32"


def home() -> Path:
    """MMSEARCH_HOME, else the platform's user data folder (~/.local/share/mmsearch on Linux)."""
    env = os.environ.get("MMSEARCH_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("mmsearch", appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def default_index_dir() -> Path:
    return home() / "index"
