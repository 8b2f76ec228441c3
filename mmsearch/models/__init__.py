"""Ready ONNX models from the Hugging Face hub (or a folder) made into verified bundles, without torch.

    from mmsearch.models import pull, import_folder
    pull("clip-vit-b-32")                     # a short name from the catalogue, or any repo id
    import_folder("~/Downloads/ViT-B-32__openai")

- catalogue.py: the known-good repositories and the default model;
- hub.py: what a repository holds, the download through huggingface_hub and its checksums;
- layouts.py: immich's and transformers.js's layouts, read into what a bundle needs;
- graphs.py: the pulled graphs rewritten to the bundle's interface (onnx's API);
- variants.py: fused fp32, fp16 and int8, shared with the export step;
- gates.py: the bars every variant passes, shared with the export step;
- build.py: the bundle: conversion, validation against the pulled fp32 graph, references, manifest.

Nothing here is imported by indexing or querying; onnx and huggingface_hub load when a pull runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["pull", "import_folder"]


def pull(model: str, **kwargs: Any) -> Path:
    """Download a model (a catalogue short name or a hub repo id) and install it as a bundle; see
    build.pull for the options. Returns the bundle folder."""
    from .build import pull as _pull

    return _pull(model, **kwargs)


def import_folder(folder: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Install a folder in either layout as a bundle; see build.import_folder."""
    from .build import import_folder as _import

    return _import(folder, **kwargs)
