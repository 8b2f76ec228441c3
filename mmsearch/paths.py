"""Where mmsearch keeps things: MMSEARCH_HOME holds installed model bundles, the default index and caches."""

from __future__ import annotations

from pathlib import Path

from . import settings

# The default model for English (and where no language is known), and for every other language: short
# names of models/catalogue.py, which says why each is the default.
DEFAULT_MODEL = "immich-vit-b-32-laion2b"
MULTILINGUAL_DEFAULT_MODEL = "immich-xlm-roberta-b-32"
# The defaults of earlier versions (OpenAI's ViT-B/32, English only): pulled, and exported by `mmsearch
# export openai/clip-vit-base-patch32`. Still found by name; indexes built with them keep them.
EARLIER_DEFAULT_MODEL = "clip-vit-b-32"
EXPORTED_DEFAULT_MODEL = "clip-vit-base-patch32"


def home() -> Path:
    """MMSEARCH_HOME, else the platform's user data folder (~/.local/share/mmsearch on Linux)."""
    return settings.current().home


def models_dir() -> Path:
    return home() / "models"


def default_index_dir() -> Path:
    return home() / "index"


def cache_dir() -> Path:
    """Caches: onnxruntime's optimised graphs, the int8 checks' verdicts. Private (private.py), safe to delete."""
    return home() / "cache"


def make_parents(path: Path) -> None:
    """The folders above path (a model bundle being installed): MMSEARCH_HOME, where this creates it,
    0700 (it holds the default index and caches); the bundle's own folders as the umask says."""
    from . import private

    root = home()
    if root.absolute() in Path(path).absolute().parents:
        private.make_folder(root)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
