"""Known-good ready ONNX models on the Hugging Face hub, by short name, and the default for each language.

Sizes are the fp32 towers' (parameters x 4 bytes, rounded): `mmsearch models pull` reads the exact
size from the hub before it downloads. Recall: immich's published table (docs/docs/features/
searching.md in immich's repository, "Recall (%): Evaluated on Crossmodal-3600, the average of the
recall@1, recall@5 and recall@10 results for zeroshot image retrieval"), per language, under the name
of immich's model (`recall_as`); a transformers.js export of the same weights carries the figures of
immich's model of those weights. No figure where immich publishes none.

The defaults, chosen by measurement (benchmarks/default_model.py, docs/models.md): for English,
immich-vit-b-32-laion2b (the old default's architecture and cost, 68.78% against 59.37%); for every
other language, immich-xlm-roberta-b-32 (a ViT-B/32 image tower, so photos index at the English
default's speed, and the best recall of the catalogue in most languages immich measured, 72.52% in
Chinese).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import paths
from .layouts import IMMICH, TRANSFORMERS_JS

C3600 = "Crossmodal-3600 recall (mean of R@1/5/10, immich)"

# Crossmodal-3600's languages as immich's table names them, by ISO 639 code.
LANGUAGES = {
    "en": "English", "ar": "Arabic", "bn": "Bengali", "zh": "Chinese", "hr": "Croatian", "cs": "Czech",
    "da": "Danish", "nl": "Dutch", "fil": "Filipino", "fi": "Finnish", "fr": "French", "de": "German",
    "el": "Greek", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian",
    "ja": "Japanese", "ko": "Korean", "mi": "Maori", "no": "Norwegian", "fa": "Persian", "pl": "Polish",
    "pt": "Portuguese", "quz": "Quechua", "ro": "Romanian", "ru": "Russian", "es": "Spanish", "sw": "Swahili",
    "sv": "Swedish", "te": "Telugu", "th": "Thai", "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese",
}
ENGLISH = "en"

# immich's figures per language, quoted from the table (Chinese: "Chinese (Simplified)").
_OPENAI_B32 = {"en": 59.37, "fr": 35.17, "pt": 21.3, "es": 29.84}
_OPENAI_L14 = {"en": 60.12, "nl": 22.31, "fr": 42.54, "de": 27.63, "it": 25.51, "pt": 28.88, "es": 37.59}
_LAION2B_B32 = {"en": 68.78, "nl": 29.54, "fr": 56.08, "de": 36.6, "it": 33.8, "pt": 32.62, "es": 42.5}
_SIGLIP_B16 = {"en": 71.64, "cs": 22.89, "da": 30.87, "nl": 65.29, "fr": 76.3, "de": 75.19, "hu": 24.29,
               "id": 57.52, "it": 73.57, "no": 35.01, "pl": 39.13, "pt": 69.32, "ro": 20.56, "es": 74.6,
               "sv": 48.38, "tr": 20.08}
_SIGLIP2_B16 = {"en": 75.19, "ar": 61.71, "zh": 64.39, "hr": 54.31, "cs": 54.81, "da": 67.68, "nl": 75.33,
                "fil": 23.37, "fi": 40.26, "fr": 84.3, "de": 86.44, "el": 53.42, "he": 60.33, "hi": 27.87,
                "hu": 58.31, "id": 79.84, "it": 83.78, "ja": 58.1, "ko": 70.25, "no": 62.56, "fa": 68.26,
                "pl": 73.44, "pt": 77.54, "ro": 58.28, "ru": 84.29, "es": 82.22, "sv": 66.37, "th": 37.35,
                "tr": 66.72, "uk": 65.28, "vi": 80.88}
_XLMR_B32 = {"en": 68.33, "ar": 59.66, "zh": 72.52, "hr": 72.69, "cs": 61.01, "da": 75.07, "nl": 70.81,
             "fi": 63.08, "fr": 79.65, "de": 81.63, "el": 64.69, "he": 72.73, "hi": 32.06, "hu": 72.5,
             "id": 74.15, "it": 77.31, "ja": 81.19, "ko": 65.44, "no": 67.81, "fa": 68.55, "pl": 73.69,
             "pt": 73.02, "ro": 77.92, "ru": 80.56, "es": 75.01, "sv": 66.93, "th": 66.03, "tr": 69.19,
             "uk": 76.31, "vi": 75.18}


@dataclass(frozen=True)
class Entry:
    name: str  # the short name, and the bundle's name once pulled
    repo: str
    layout: str
    family: str
    languages: str
    embedding_dim: int
    download_mb: int  # approximate; the hub's exact figure is shown before a pull
    recall: Mapping[str, float] = field(default_factory=dict)  # language code -> immich's published figure (%)
    recall_as: str | None = None  # immich's name of the model the figures are published for
    aliases: tuple[str, ...] = ()  # other names of bundles with these weights (earlier defaults)

    @property
    def quality(self) -> str | None:
        if not self.recall:
            return None
        shown = ", ".join(f"{LANGUAGES[k]} {v:.2f}%" for k, v in self.recall.items() if k in ("en", "zh", "ar"))
        more = len([k for k in self.recall if k not in ("en", "zh", "ar")])
        tail = f" and {more} more languages" if more else ""
        return f"{C3600}: {shown}{tail} (as {self.recall_as})"

    def default_for(self) -> list[str]:
        """The languages this entry is the default for ("*": every language but English)."""
        out = [ENGLISH] if self.name == DEFAULTS[ENGLISH] else []
        return out + (["*"] if self.name == DEFAULTS["*"] else [])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "repo": self.repo, "layout": self.layout, "family": self.family,
                "languages": self.languages, "embedding_dim": self.embedding_dim, "download_mb": self.download_mb,
                "quality": self.quality, "recall": dict(self.recall), "recall_as": self.recall_as,
                "default": self.name == paths.DEFAULT_MODEL, "default_for": self.default_for()}


CATALOGUE: tuple[Entry, ...] = (
    # The default of earlier versions: OpenAI's ViT-B/32 in transformers.js's export, which takes batches
    # and texts of any length, with the weights of `mmsearch export openai/clip-vit-base-patch32`.
    Entry("clip-vit-b-32", "Xenova/clip-vit-base-patch32", TRANSFORMERS_JS, "clip", "English", 512, 605,
          _OPENAI_B32, "ViT-B-32__openai", aliases=(paths.EXPORTED_DEFAULT_MODEL, "openai/clip-vit-base-patch32")),
    Entry("clip-vit-l-14", "Xenova/clip-vit-large-patch14", TRANSFORMERS_JS, "clip", "English", 768, 1710,
          _OPENAI_L14, "ViT-L-14__openai"),
    Entry("siglip-b-16", "Xenova/siglip-base-patch16-224", TRANSFORMERS_JS, "siglip", "English", 768, 815,
          _SIGLIP_B16, "ViT-B-16-SigLIP__webli"),
    Entry("chinese-clip-b-16", "Xenova/chinese-clip-vit-base-patch16", TRANSFORMERS_JS, "chinese_clip", "Chinese",
          512, 755),
    Entry("immich-vit-b-32-openai", "immich-app/ViT-B-32__openai", IMMICH, "clip", "English", 512, 605,
          _OPENAI_B32, "ViT-B-32__openai"),
    Entry("immich-vit-b-32-laion2b", "immich-app/ViT-B-32__laion2b-s34b-b79k", IMMICH, "clip", "English", 512, 605,
          _LAION2B_B32, "ViT-B-32__laion2b-s34b-b79k"),
    Entry("immich-siglip-b-16", "immich-app/ViT-B-16-SigLIP__webli", IMMICH, "siglip", "English", 768, 815,
          _SIGLIP_B16, "ViT-B-16-SigLIP__webli"),
    Entry("immich-siglip2-b-16", "immich-app/ViT-B-16-SigLIP2__webli", IMMICH, "siglip", "multilingual", 768, 1500,
          _SIGLIP2_B16, "ViT-B-16-SigLIP2__webli"),
    Entry("immich-xlm-roberta-b-32", "immich-app/XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k", IMMICH, "clip",
          "multilingual", 512, 1470, _XLMR_B32, "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k"),
)

# The default per language: English, and "*" for every other (see the module docstring for why).
DEFAULTS = {ENGLISH: paths.DEFAULT_MODEL, "*": paths.MULTILINGUAL_DEFAULT_MODEL}


def find(name: str) -> Entry | None:
    """The entry for a short name or a repository id (case-insensitive)."""
    key = name.strip().lower()
    return next((e for e in CATALOGUE if key in (e.name.lower(), e.repo.lower())), None)


def known(name: str | None, source: str | None = None) -> Entry | None:
    """The entry whose weights a bundle holds, by its name or its source (earlier defaults' names too)."""
    for key in (name, source):
        if key:
            entry = find(key) or next((e for e in CATALOGUE if key.lower() in (a.lower() for a in e.aliases)), None)
            if entry is not None:
                return entry
    return None


def default(language: str | None = None) -> Entry:
    """The default model for a language code (None or English: the English default)."""
    name = DEFAULTS[ENGLISH] if language in (None, ENGLISH) else DEFAULTS["*"]
    entry = find(name)
    assert entry is not None, "the defaults are in the catalogue"
    return entry


def language_name(language: str | None) -> str:
    if language is None:
        return LANGUAGES[ENGLISH]
    return LANGUAGES.get(language, language)


def alternatives(language: str | None, *, besides: str, count: int = 3) -> list[Entry]:
    """Other entries worth naming for a language: those with the best published recall in it (else
    those made for it), the default left out."""
    lang = language or ENGLISH
    scored = sorted((e for e in CATALOGUE if e.name != besides and lang in e.recall),
                    key=lambda e: -e.recall[lang])
    made_for = [e for e in CATALOGUE if e.name != besides and e not in scored
                and language_name(lang).lower() in e.languages.lower()]
    return (made_for + scored)[:count]
