"""Same file, same vector: a file's vector does not depend on what else was in its batch.

int8 towers quantize their activations at run time with one scale per tensor; run as a batch, each
input's vector would depend on the others (and a text on the batch's padding): the same file would
score differently in two indexes. The committed toy CLIP (no torch needed) holds it for both towers
and every variant it ships.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmsearch.bundle import load_bundle
from mmsearch.encoder import ImageEncoder, TextEncoder

TOYCLIP = Path(__file__).parent / "fixtures" / "toyclip"
TEXTS = ["a red circle", "a small blue triangle above a large green square on a grey background",
         "zebra", "two yellow stars and a purple ring, blurred", "一张猫的照片", "a"]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_a_vector_is_the_same_alone_and_in_any_batch(variant):
    bundle = load_bundle(TOYCLIP)
    images = ImageEncoder(bundle, variant=variant, device="cpu")
    texts = TextEncoder(bundle, variant=variant, device="cpu")
    rng = np.random.default_rng(0)
    h, w = bundle.image_spec.size
    pixels = rng.normal(0, 1, (16, 3, h, w)).astype(np.float32)
    pixels[8:] *= 4.0  # inputs of other ranges in the same batch: a per-batch scale would show it
    alone = np.concatenate([images.encode(pixels[i : i + 1]) for i in range(16)])
    for order in (np.arange(16), np.arange(16)[::-1], np.arange(3)):
        together = images.encode(np.ascontiguousarray(pixels[order]))
        assert float((together * alone[order]).sum(1).min()) >= 0.99999
    alone_t = np.concatenate([texts.encode([t]) for t in TEXTS])
    together_t = texts.encode(TEXTS)
    assert float((together_t * alone_t).sum(1).min()) >= 0.99999
    assert float((texts.encode(TEXTS[::-1])[::-1] * alone_t).sum(1).min()) >= 0.99999
