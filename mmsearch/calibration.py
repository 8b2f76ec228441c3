"""What a model's cosine means: the relevance floor and the meaning part of the score.

A CLIP-family model's cosines mean different things for different pairs: with OpenAI's ViT-B/32 a
text and an unrelated photo score about 0.15 and a good match 0.3, while a text and an unrelated
passage of text score 0.7 and more. So each index measures how its model scores pairs that have
nothing to do with each other, for each kind of query (a typed text, an image, a document's vector)
against each kind of item (a photo, a document chunk): PROBES (everyday sentences, written for this)
encoded by the text tower, and up to SAMPLE stored vectors of each kind; unrelated pairs are nearly
all of them. Their median and spread (1.4826 x the median absolute deviation: a few related pairs
move neither) give, per pair of kinds:

    floor    = median + Z_FLOOR x spread           (about 1 unrelated pair in 700 reaches it)
    meaning  = 1 / (1 + exp(-(cosine - floor) / spread))      in (0, 1); 0.5 at the floor

Measured at the end of an index run when the index has none yet or its vectors of a kind grew or
shrank by a quarter since (a second or two for a ViT-B/32 text tower on a laptop CPU), and kept in
the catalog with the model's manifest hash. An index without one (built by an earlier mmsearch,
until its next run) scores meaning as (1 + cosine) / 2 and hides nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

META_KEY = "calibration"  # where the catalog keeps it
Z_FLOOR = 3.0
SAMPLE = 1024  # stored vectors of each kind measured against
KINDS = ("image", "document")  # what items are; a query is "text" or one of these
REMEASURE_SHARE = 0.25

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
        z = (cosine - self.floor) / self.spread
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


@dataclass(frozen=True)
class Calibration:
    """The nulls of one index's model, by "query>item" ("text>image", "image>document", ...)."""

    nulls: dict[str, Null]
    manifest_sha256: str
    counts: dict[str, int]  # vectors of each kind when measured

    def null(self, query: str, item: str) -> Null | None:
        return self.nulls.get(f"{query}>{item}")

    def to_json(self) -> str:
        return json.dumps({"nulls": {k: [n.median, n.spread] for k, n in self.nulls.items()},
                           "manifest_sha256": self.manifest_sha256, "counts": self.counts, "z_floor": Z_FLOOR})

    @classmethod
    def from_json(cls, text: str | None) -> Calibration | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls({k: Null(float(m), float(s)) for k, (m, s) in data["nulls"].items()},
                       str(data["manifest_sha256"]), {k: int(v) for k, v in data["counts"].items()})
        except (ValueError, KeyError, TypeError):
            return None

    def stale(self, manifest_sha256: str, counts: dict[str, int]) -> bool:
        """Measured for another model, or a kind's vectors grew or shrank by REMEASURE_SHARE since."""
        if manifest_sha256 != self.manifest_sha256:
            return True
        for kind in KINDS:
            then, now = self.counts.get(kind, 0), counts.get(kind, 0)
            if (then == 0) != (now == 0) or abs(now - then) > REMEASURE_SHARE * max(then, 1):
                return True
        return False


def meaning(null: Null | None, cosine: float) -> float:
    """The meaning part of the score, in (0, 1); without a measured null, (1 + cosine) / 2."""
    if null is None:
        return (1.0 + cosine) / 2.0
    return null.meaning(cosine)


def _null(scores: np.ndarray) -> Null | None:
    scores = scores[np.isfinite(scores)]
    if len(scores) < 16:
        return None
    median = float(np.median(scores))
    spread = 1.4826 * float(np.median(np.abs(scores - median)))
    return Null(median, max(spread, 1e-3))


def measure(encode_texts: Callable[[list[str]], np.ndarray], samples: dict[str, np.ndarray], manifest_sha256: str,
            counts: dict[str, int]) -> Calibration:
    """The nulls from the probes (encoded by `encode_texts`) and each kind's sample of stored vectors."""
    probes = np.asarray(encode_texts(list(PROBES)), np.float32)
    queries = {"text": probes, **{k: v for k, v in samples.items() if len(v)}}
    nulls: dict[str, Null] = {}
    for query, q in queries.items():
        for kind in KINDS:
            items = samples.get(kind)
            if items is None or not len(items):
                if query == "text" and kind == "document":
                    items = probes  # no documents yet: other sentences stand for them
                else:
                    continue
            scores = q @ items.T
            if q is items:  # a kind against itself: not a vector with itself
                scores = scores[~np.eye(len(q), dtype=bool)]
            null = _null(scores.ravel())
            if null is not None:
                nulls[f"{query}>{kind}"] = null
    return Calibration(nulls, manifest_sha256, dict(counts))
