"""Resolve a model hub id (``openai/clip-vit-base-patch32``) to a local snapshot folder.

Only the files an export needs are fetched: configs, tokenizer files and the weights (safetensors
where the repository has them, else the PyTorch pickle). huggingface_hub's own cache is used, so a
second export of the same id does not download again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mmsearch.errors import first_line

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")

# configs, tokenizer and image processor files
_CONFIG_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken"]
_SAFETENSORS = re.compile(r"^model(-\d+-of-\d+)?\.safetensors$")
_PICKLE = re.compile(r"^pytorch_model(-\d+-of-\d+)?\.bin$")


class HubError(Exception):
    """A hub id that could not be fetched; the message names it and says why."""


def looks_like_hub_id(source: str) -> bool:
    return bool(HUB_ID.match(source)) and not source.startswith((".", "~"))


def download(repo_id: str, progress: Callable[[str], None] | None = None, revision: str | None = None) -> Path:
    """snapshot_download of the files an export needs; returns the snapshot folder."""
    say = progress or (lambda _msg: None)
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        raise HubError(f"{repo_id}: looks like a model hub id, but huggingface_hub is not installed") from None
    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception as e:  # offline, no such repo, gated...
        raise HubError(f"{repo_id}: cannot list the model hub repository ({first_line(e)})") from None
    # transformers' own weight files only (open_clip repos hold a second copy in another layout)
    weights = [f for f in files if _SAFETENSORS.match(f)]
    if not weights:
        weights = [f for f in files if _PICKLE.match(f)]
    if not weights:
        raise HubError(f"{repo_id}: the repository has no transformers weights (model.safetensors or pytorch_model.bin)")
    say(f"downloading {repo_id} ({', '.join(weights)} and configs)")
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=_CONFIG_PATTERNS + weights)
    except Exception as e:
        raise HubError(f"{repo_id}: download failed ({first_line(e)})") from None
    return Path(folder)

