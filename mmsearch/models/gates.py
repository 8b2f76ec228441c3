"""The gates every bundle variant passes, shared by the export step (mmsearch_export/validate.py, against
PyTorch) and `mmsearch models pull/import` (models/build.py, against the pulled fp32 graph): the bars,
the captioned images they are measured on, and the text->image top-1 agreement. No torch here.

Bars: min cosine >= 0.99999 fp32, >= 0.999 fp16, >= 0.98 int8, over all images and texts; for int8
the text->image top-1 (each caption against all the images) agrees with the reference's for >= 95%
of the captions the reference decides (see top1_figures).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

MIN_COSINE = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.98}
TOP1_AGREEMENT = {"int8": 0.95}
# A text tower that takes any length must give the same embedding for ids padded to the context.
PADDING_MIN_COSINE = 0.99999
# int8 top-1: the reference's own choice must be decided, i.e. its best image beats the runner-up by at
# least this cosine; a near-tie is a coin toss for any variant (see top1_figures).
TOP1_MIN_GAP = 0.01


COLOURS = {
    "red": (210, 35, 35), "green": (40, 160, 60), "blue": (35, 70, 210), "yellow": (240, 215, 40),
    "black": (15, 15, 15), "white": (242, 242, 242), "orange": (245, 135, 25), "purple": (130, 45, 165),
    "pink": (240, 140, 190), "brown": (120, 75, 35), "grey": (128, 128, 128), "cyan": (40, 200, 210),
}
SHAPES = ("circle", "square", "triangle", "stripe", "ring", "cross")


def captioned_images(count: int, base: int, seed: int = 0) -> list[tuple[Any, str]]:
    """(PIL image, caption) pairs: a shaded background in one named colour with one large shape in
    another ("a red circle on a blue background"), sometimes small distractors, blur or noise;
    sizes from about 0.6x to 2x `base`, aspect ratios from 1:2 to 2:1."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    names = list(COLOURS)
    pairs = []
    for _ in range(count):
        w = max(8, int(base * rng.uniform(0.6, 2.0)))
        h = max(8, int(base * rng.uniform(0.6, 2.0)))
        bg, fg = rng.sample(names, 2)
        shape = rng.choice(SHAPES)
        # background: the named colour, shaded along a random direction, with grain
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:h, 0:w]
        ramp = (np.cos(angle) * xs / w + np.sin(angle) * ys / h)[..., None]
        shade = 0.75 + 0.4 * (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
        arr = np.asarray(COLOURS[bg], np.float32) * shade + nrng.normal(0, 5, (h, w, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(rng.choice((0, 0, 1, 2, 3))):  # small distractors
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), min(w, h) * rng.uniform(0.03, 0.08)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
        side = min(w, h) * rng.uniform(0.45, 0.8)
        cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        colour = COLOURS[fg]
        if shape == "circle":
            draw.ellipse(box, fill=colour)
        elif shape == "square":
            draw.rectangle(box, fill=colour)
        elif shape == "triangle":
            draw.polygon([(cx, box[1]), (box[0], box[3]), (box[2], box[3])], fill=colour)
        elif shape == "stripe":
            draw.rectangle((0, cy - side / 6, w, cy + side / 6), fill=colour)
        elif shape == "ring":
            draw.ellipse(box, outline=colour, width=max(2, int(side / 7)))
        else:
            t = side / 6
            draw.rectangle((box[0], cy - t, box[2], cy + t), fill=colour)
            draw.rectangle((cx - t, box[1], cx + t, box[3]), fill=colour)
        if rng.random() < 0.25:
            img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.5, 1.5)))
        article = "an" if fg[0] in "aeiou" else "a"
        caption = rng.choice(
            (
                f"{article} {fg} {shape} on a {bg} background",
                f"a photo of {article} {fg} {shape} on {bg}",
                f"{fg} {shape}, {bg} background",
            )
        )
        pairs.append((img, caption))
    return pairs


def top1_figures(text_ref: np.ndarray, image_ref: np.ndarray, text_out: np.ndarray, image_out: np.ndarray,
                 n: int) -> dict[str, Any]:
    """Text->image top-1 over the batch: each of the first n texts (the images' captions, in order)
    against all the images, for the reference embeddings and for a variant's.

    `top1_agreement` is the plain figure over every caption. The bar is held on
    `top1_agreement_decided`: the captions whose reference best image beats its runner-up by at least
    TOP1_MIN_GAP. Where the reference's top two are closer than that, which one comes first is decided
    by noise far below the min-cosine bars (fp32 export noise alone reorders exact ties), so a flip
    there says nothing about the variant. On a trained model nearly every caption is decided; on a
    random-weight test model many are not, and the plain figure would be a coin toss.
    """
    ref = text_ref[:n] @ image_ref.T
    got = text_out[:n] @ image_out.T
    agree = ref.argmax(axis=1) == got.argmax(axis=1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) >= TOP1_MIN_GAP
    return {
        "top1_agreement": round(float(agree.mean()), 4),
        "top1_texts": int(n),
        "top1_agreement_decided": round(float(agree[decided].mean()), 4) if decided.any() else 1.0,
        "top1_decided_texts": int(decided.sum()),
        "top1_min_gap": TOP1_MIN_GAP,
        "top1_reference_correct": round(float((ref.argmax(axis=1) == np.arange(n)).mean()), 4),
    }


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two [N,D] arrays (neither needs to be unit length)."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)
