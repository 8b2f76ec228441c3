"""What a model's cosine means for a typed query: the relevance floor and the meaning part of the score.

A CLIP-family model's cosines mean different things for different pairs: with OpenAI's ViT-B/32 a
text and an unrelated photo score about 0.15 and a good match 0.3, while a text and an unrelated
passage of text score 0.7 and more. So mmsearch measures, for each model, how it scores a typed query
against things that have nothing to do with it, for each kind of item: PROBES (everyday sentences
written for this) through the text tower, against the other probes (standing for document chunks)
and against PICTURES probe pictures drawn here (soft shapes, shading, texture and grain at the
tower's input size) through the image tower. Nearly every pair is unrelated; their median and spread
(1.4826 x the median absolute deviation: a few related pairs move neither) give, per kind of item:

    floor    = median + Z_FLOOR x spread           (about 1 unrelated pair in 160 reaches it)
    meaning  = 0.5 x exp((cosine - floor) / spread)                below the floor: towards 0
             = 0.5 + 0.5 x (cosine - floor) / (1 - floor)          from the floor: up to 1 at cosine 1

A model whose text tower puts every sentence near every other (a floor above 1) shows no document by
meaning alone: its words still find them. The measure depends on the model alone (its manifest), so a
file scores the same in every index of that model. It is taken once per index, at the end of its
first index run (both towers, a second or two for a ViT-B/32 on a laptop CPU), and kept in the catalog
with the model's manifest hash. Queries by an image or by a file's vector are not calibrated: their
meaning part is (1 + cosine) / 2, so they rank by cosine, and so does an index without a measure
(built by an earlier mmsearch, until its next index run), which hides nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np  # loaded by the measure alone: a query reads a Calibration without it

META_KEY = "calibration"  # where the catalog keeps it
Z_FLOOR = 2.5
PICTURES = 32

PROBES = (
    "a recipe for apple pie with cinnamon",
    "the train to the airport was delayed by an hour",
    "quarterly tax return for a small business",
    "how to replace the battery of a smoke detector",
    "a wedding dress with a long lace veil",
    "the history of the roman empire",
    "symptoms of the common cold in children",
    "a red sports car parked on the street",
    "a golden retriever playing with a ball in the park",
    "instructions for assembling a bookshelf",
    "a bowl of ramen with a soft boiled egg",
    "the football match ended in a draw",
    "snow covered mountains under a blue sky",
    "a spreadsheet of monthly household expenses",
    "invoice number 4471, payment due in 30 days",
    "a child blowing out candles on a birthday cake",
    "how to configure a wireless router",
    "a crowded beach in summer",
    "the theory of general relativity",
    "an old wooden fishing boat on the shore",
    "a cup of coffee next to a laptop",
    "the patient was prescribed antibiotics for ten days",
    "a city skyline at night with lights",
    "guitar chords for a folk song",
    "a field of sunflowers",
    "the meeting is moved to thursday afternoon",
    "a cat sleeping on a windowsill",
    "how to grow tomatoes in pots",
    "an electric bicycle with a basket",
    "the contract may be terminated with three months notice",
    "a plate of sushi and chopsticks",
    "a hiking trail through a pine forest",
    "the stock market fell sharply on monday",
    "a portrait of an elderly man with glasses",
    "error: permission denied while opening the file",
    "a bridge over a river at sunset",
    "vegetable soup with carrots and potatoes",
    "a classroom with desks and a blackboard",
    "the lease of the apartment ends in june",
    "a person riding a horse on a beach",
    "knitting pattern for a wool scarf",
    "a traffic jam on the highway",
    "the museum opens at ten in the morning",
    "a pair of running shoes",
    "the election results were announced last night",
    "a lighthouse on a rocky coast",
    "how to change a flat tyre",
    "a chocolate cake with strawberries",
)


@dataclass(frozen=True)
class Null:
    """How a model scores unrelated pairs of two kinds: their median cosine and its spread."""

    median: float
    spread: float

    @property
    def floor(self) -> float:
        return self.median + Z_FLOOR * self.spread

    def meaning(self, cosine: float) -> float:
        """In [0, 1], 0.5 at the floor; it never flattens above it, so close matches keep their order."""
        floor = self.floor
        if cosine < floor:
            return 0.5 * math.exp(max(-60.0, (cosine - floor) / self.spread))
        return 0.5 + 0.5 * min(1.0, (cosine - floor) / max(1.0 - floor, 1e-6))


@dataclass(frozen=True)
class Calibration:
    """The nulls of one index's model, by "query>item" ("text>image", "image>document", ...)."""

    nulls: dict[str, Null]
    manifest_sha256: str

    def null(self, query: str, item: str) -> Null | None:
        return self.nulls.get(f"{query}>{item}")

    def to_json(self) -> str:
        return json.dumps({"nulls": {k: [n.median, n.spread] for k, n in self.nulls.items()},
                           "manifest_sha256": self.manifest_sha256, "z_floor": Z_FLOOR})

    @classmethod
    def from_json(cls, text: str | None) -> Calibration | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls({k: Null(float(m), float(s)) for k, (m, s) in data["nulls"].items()},
                       str(data["manifest_sha256"]))
        except (ValueError, KeyError, TypeError):
            return None


def meaning(null: Null | None, cosine: float) -> float:
    """The meaning part of the score, in (0, 1); without a measured null, (1 + cosine) / 2."""
    if null is None:
        return (1.0 + cosine) / 2.0
    return null.meaning(cosine)


def _null(scores: np.ndarray) -> Null | None:
    import numpy as np

    scores = scores[np.isfinite(scores)]
    if len(scores) < 16:
        return None
    median = float(np.median(scores))
    spread = 1.4826 * float(np.median(np.abs(scores - median)))
    return Null(median, max(spread, 1e-3))


def measure(encode_texts: Callable[[list[str]], np.ndarray], encode_images: Callable[[np.ndarray], np.ndarray],
            image_spec: Any, manifest_sha256: str) -> Calibration:
    """The nulls of a model from its two towers (`image_spec`: the bundle's, for the pictures' size and
    normalisation)."""
    import numpy as np
    from PIL import Image

    from .preprocess import preprocess_image

    texts = np.asarray(encode_texts(list(PROBES)), np.float32)
    h, w = image_spec.size
    pixels = np.stack([preprocess_image(Image.fromarray(probe_picture(seed, h, w)), image_spec)
                       for seed in range(PICTURES)])
    images = np.asarray(encode_images(pixels), np.float32)
    nulls: dict[str, Null] = {}
    pairs = texts @ texts.T
    for kind, scores in (("document", pairs[~np.eye(len(texts), dtype=bool)]), ("image", texts @ images.T)):
        null = _null(scores.ravel())
        if null is not None:
            nulls[f"text>{kind}"] = null
    return Calibration(nulls, manifest_sha256)


def probe_picture(seed: int, h: int, w: int) -> np.ndarray:
    """uint8 HxWx3, like no photo in particular: a coarse colour field upscaled (shading, sky, walls),
    a few soft shapes, mid-frequency texture in places and grain."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1000 + seed)
    coarse = rng.integers(0, 256, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3), dtype=np.uint8)
    base = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(int(rng.integers(1, 6))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    arr = np.asarray(base, np.float32)
    texture = rng.standard_normal((max(2, h // 6), max(2, w // 6))).astype(np.float32) * 20
    texture = np.asarray(Image.fromarray(texture, "F").resize((w, h), Image.Resampling.BILINEAR))
    mask = np.asarray(Image.fromarray(rng.random((4, 4)).astype(np.float32), "F").resize((w, h)))
    arr = arr + (texture * mask)[..., None] + rng.normal(0, 4, (h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)
