"""Known-good ready ONNX models on the Hugging Face hub, by short name.

Sizes are the fp32 towers' (parameters x 4 bytes, rounded): `mmsearch models pull` reads the exact
size from the hub before it downloads. Quality: immich's published figure (docs/docs/features/
searching.md in immich's repository): zero-shot image retrieval on Crossmodal-3600, the mean of
recall@1, @5 and @10, per language; for a transformers.js export of the same weights immich
measured, that figure is given with the name of immich's model. None where no source gives one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .. import paths
from .layouts import IMMICH, TRANSFORMERS_JS


@dataclass(frozen=True)
class Entry:
    name: str  # the short name, and the bundle's name once pulled
    repo: str
    layout: str
    family: str
    languages: str
    embedding_dim: int
    download_mb: int  # approximate; the hub's exact figure is shown before a pull
    quality: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "default": self.name == paths.DEFAULT_MODEL}


_C3600 = "Crossmodal-3600 recall (mean of R@1/5/10, immich)"

CATALOGUE: tuple[Entry, ...] = (
    # The default: OpenAI's ViT-B/32, the smallest widely used CLIP; transformers.js's export takes
    # batches and texts of any length (faster indexing and queries than immich's batch-1 graph), with
    # the preprocessing and weights of `mmsearch export openai/clip-vit-base-patch32`, the earlier default.
    Entry("clip-vit-b-32", "Xenova/clip-vit-base-patch32", TRANSFORMERS_JS, "clip", "English", 512, 605,
          f"{_C3600}: English 59.37% (as ViT-B-32__openai)"),
    Entry("clip-vit-l-14", "Xenova/clip-vit-large-patch14", TRANSFORMERS_JS, "clip", "English", 768, 1710,
          f"{_C3600}: English 60.12% (as ViT-L-14__openai)"),
    Entry("siglip-b-16", "Xenova/siglip-base-patch16-224", TRANSFORMERS_JS, "siglip", "English", 768, 815, None),
    Entry("chinese-clip-b-16", "Xenova/chinese-clip-vit-base-patch16", TRANSFORMERS_JS, "chinese_clip", "Chinese",
          512, 755, None),
    Entry("immich-vit-b-32-openai", "immich-app/ViT-B-32__openai", IMMICH, "clip", "English", 512, 605,
          f"{_C3600}: English 59.37%"),
    Entry("immich-vit-b-32-laion2b", "immich-app/ViT-B-32__laion2b-s34b-b79k", IMMICH, "clip", "English", 512, 605,
          f"{_C3600}: English 68.78%"),
    Entry("immich-siglip-b-16", "immich-app/ViT-B-16-SigLIP__webli", IMMICH, "siglip", "English", 768, 815,
          f"{_C3600}: English 71.64%"),
    Entry("immich-siglip2-b-16", "immich-app/ViT-B-16-SigLIP2__webli", IMMICH, "siglip", "multilingual", 768, 1500,
          f"{_C3600}: English 75.19%, Arabic 61.71%"),
    Entry("immich-xlm-roberta-b-32", "immich-app/XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k", IMMICH, "clip",
          "multilingual", 512, 1470, f"{_C3600}: English 68.33%, Chinese (Simplified) 72.52%, Arabic 59.66%"),
)


def find(name: str) -> Entry | None:
    """The entry for a short name or a repository id (case-insensitive)."""
    key = name.strip().lower()
    return next((e for e in CATALOGUE if key in (e.name.lower(), e.repo.lower())), None)


def default() -> Entry:
    entry = find(paths.DEFAULT_MODEL)
    assert entry is not None, "the default model is in the catalogue"
    return entry
