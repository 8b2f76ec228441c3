"""The gate: every variant of both towers against the checkpoint's own PyTorch model.

Inputs are built to look a little like the real thing: 64 images (a shaded background in one named
colour, a large shape in another, sometimes distractors and blur; varied sizes and aspect ratios)
through the checkpoint's own image processor, each with its caption ("a red circle on a blue
background"), plus 16 free-form texts (one word, accents, digits, one past the context length).
The ONNX side gets ids from the bundle's tokenizer.json exactly as the runtime makes them
(truncation and padding from the manifest, batches of 16 padded to their longest); the PyTorch
side gets the checkpoint's transformers tokenizer, padded to the context.

Bars (module constants, so a test can move them): min cosine >= 0.99999 fp32, >= 0.999 fp16 (on
the CUDA provider where it works, else the CPU), >= 0.98 int8, over all images and texts; for int8
the text->image top-1 (each caption against the 64 images) agrees with PyTorch's for >= 95% of the
captions PyTorch decides (top-1 beats the runner-up by >= TOP1_MIN_GAP; the plain figure over all
captions is recorded beside it, see `top1_figures`). fp32 of a "longest"-padding family must also
give the same embedding for ids padded to the context. A miss raises ValidationError naming the
variant, the tower, the figure and the bar. The tokenizer.json must reproduce the checkpoint
tokenizer's ids for every text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .towers import Checkpoint, reference_image_embeds, reference_text_embeds

MIN_COSINE = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.98}
TOP1_AGREEMENT = {"int8": 0.95}
# CLIP's text tower must give the same embedding for ids padded to the context as for unpadded ones.
PADDING_MIN_COSINE = 0.99999
# int8 top-1: PyTorch's own choice must be decided, i.e. its best image beats the runner-up by at
# least this cosine; a near-tie is a coin toss for any variant (see top1_figures).
TOP1_MIN_GAP = 0.01
N_IMAGES = 64
N_TEXTS = 64  # captions of the images (the top-1 check runs over these)
N_FREE_TEXTS = 16  # more texts for the cosine check: one word, accents, digits, past the context
BATCH = 16


class ValidationError(Exception):
    """A variant missed its bar; the message says which, by how much."""


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


def validation_texts(count: int, seed: int = 0) -> list[str]:
    """Free-form captions, from one word to past the context length, with punctuation, digits and
    accents (they test tokenisation and long inputs; the captions of the images come with them)."""
    from .tiny import sample_texts

    fixed = [
        "cat",
        "A Photo Of A DOG.",
        "café crème brûlée on a wooden table",
        "3 red apples, 2 bananas & 1 pizza (2019)",
        "a very long description of a busy street at night with many cars, bicycles, people walking, "
        "shops with bright signs, wet asphalt reflecting the lights, a bus stop, trees along the "
        "pavement, a dog on a leash, a child holding a balloon, and tall buildings in the distance "
        "under a cloudy sky with the moon just visible behind a tower crane and some birds",
    ]
    texts = fixed + sample_texts(max(0, count - len(fixed)), seed=seed + 1)
    return texts[:count]


@dataclass
class ValidationData:
    """The inputs and the PyTorch reference embeddings, computed once for all variants."""

    pixel_values: np.ndarray  # [N,3,H,W] float32, from the checkpoint's image processor
    text_feeds: list[dict[str, np.ndarray]]  # batches as the runtime feeds the ONNX text tower
    text_feeds_padded: list[dict[str, np.ndarray]] | None  # the same batches padded to the context
    image_ref: np.ndarray  # [N,D] unit vectors from PyTorch
    text_ref: np.ndarray  # [M,D]
    texts: list[str]
    images: list[Any]
    n_captions: int  # texts[:n_captions] describe images[:n_captions], one each


def runtime_tokenizer(tokenizer_json: Path, text: dict[str, Any]):
    """tokenizer.json set up as the runtime sets it up (mmsearch/encoder.py load_tokenizer)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=int(text["context_length"]))
    if text["padding"] == "max_length":
        tok.enable_padding(pad_id=int(text["pad_id"]), length=int(text["context_length"]))
    else:
        tok.enable_padding(pad_id=int(text["pad_id"]))
    return tok


def check_tokenizer(ckpt: Checkpoint, tokenizer_json: Path, text: dict[str, Any], texts: list[str]) -> None:
    """tokenizer.json must give the checkpoint tokenizer's ids (truncated to the context) for every text."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=int(text["context_length"]))
    ours = [e.ids for e in tok.encode_batch(texts)]
    theirs = ckpt.tokenizer(texts, truncation=True, max_length=int(text["context_length"]))["input_ids"]
    for t, a, b in zip(texts, ours, theirs):
        if list(a) != list(b):
            raise ValidationError(
                f"{tokenizer_json.name}: encodes {t[:40]!r} as {list(a)[:12]}... but the checkpoint's "
                f"tokenizer gives {list(b)[:12]}...; the saved tokenizer does not reproduce it"
            )


def prepare(ckpt: Checkpoint, tokenizer_json: Path, text: dict[str, Any], *, n_images: int = N_IMAGES,
            n_texts: int = N_TEXTS, seed: int = 0) -> ValidationData:
    import torch

    base = int(getattr(ckpt.vision_config, "image_size", 224))
    pairs = captioned_images(n_images, base, seed=seed)
    images = [img for img, _ in pairs]
    pixel_values = ckpt.image_processor(images=images, return_tensors="pt")["pixel_values"].to(torch.float32)
    # the images' own captions first (the top-1 check runs on them), then free-form texts
    texts = [caption for _, caption in pairs][:n_texts] + validation_texts(N_FREE_TEXTS, seed=seed)
    check_tokenizer(ckpt, tokenizer_json, text, texts)

    context = int(text["context_length"])
    tok = runtime_tokenizer(tokenizer_json, text)
    # batches of BATCH texts, each tokenised as the runtime does it (padded to its longest text)
    chunks = [_encode(tok, texts[i : i + BATCH], text["inputs"]) for i in range(0, len(texts), BATCH)]
    padded = None
    if text["padding"] == "longest":  # the same batches padded to the full context
        tok.enable_padding(pad_id=int(text["pad_id"]), length=context)
        padded = [_encode(tok, texts[i : i + BATCH], text["inputs"]) for i in range(0, len(texts), BATCH)]

    # PyTorch side: the checkpoint's tokenizer as people call it (padded to the context).
    hf = ckpt.tokenizer(texts, padding="max_length", truncation=True, max_length=context, return_tensors="pt")
    ref_feeds = {"input_ids": hf["input_ids"]}
    if ckpt.family != "siglip" and "attention_mask" in hf:  # SigLIP was trained without one
        ref_feeds["attention_mask"] = hf["attention_mask"]
    image_ref = np.concatenate(
        [reference_image_embeds(ckpt, pixel_values[i : i + BATCH]).numpy() for i in range(0, len(images), BATCH)]
    )
    text_ref = np.concatenate(
        [
            reference_text_embeds(ckpt, {k: v[i : i + BATCH] for k, v in ref_feeds.items()}).numpy()
            for i in range(0, len(texts), BATCH)
        ]
    )
    return ValidationData(pixel_values.numpy(), chunks, padded, image_ref, text_ref, texts, images,
                          n_captions=min(n_texts, len(pairs)))


def top1_figures(data: ValidationData, image_out: np.ndarray, text_out: np.ndarray) -> dict[str, Any]:
    """Text->image top-1 over the batch: each image's caption against all the images.

    `top1_agreement` is the plain figure over every caption. The bar is held on
    `top1_agreement_decided`: the captions whose PyTorch best image beats its runner-up by at least
    TOP1_MIN_GAP. Where PyTorch's top two are closer than that, which one comes first is decided by
    noise far below the min-cosine bars (fp32 export noise alone reorders exact ties), so a flip
    there says nothing about the variant. On a trained model nearly every caption is decided; on a
    random-weight test model many are not, and the plain figure would be a coin toss.
    """
    n = data.n_captions
    ref = data.text_ref[:n] @ data.image_ref.T
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


def _encode(tok: Any, texts: list[str], inputs: list[str]) -> dict[str, np.ndarray]:
    encodings = tok.encode_batch(texts)
    feeds = {"input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64)}
    if "attention_mask" in inputs:
        feeds["attention_mask"] = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    return feeds


def _run_chunks(session: Any, chunks: list[dict[str, np.ndarray]], output: str) -> np.ndarray:
    return np.concatenate([session.run([output], feeds)[0] for feeds in chunks]).astype(np.float32)


def _session(path: Path, device: str):
    """An onnxruntime session opened the way the runtime opens it; returns (session, device)."""
    from mmsearch.runtime import create_session

    return create_session(path, device)


def _run(session: Any, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    n = next(iter(feeds.values())).shape[0]
    outs = []
    for i in range(0, n, BATCH):
        outs.append(session.run([output], {k: v[i : i + BATCH] for k, v in feeds.items()})[0])
    return np.concatenate(outs).astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def validate_variant(
    variant: str, files: dict[str, Path], data: ValidationData, manifest_text: dict[str, Any]
) -> dict[str, Any]:
    """Run both towers of one variant on the validation inputs; the figures, or ValidationError."""
    device = "auto" if variant == "fp16" else "cpu"
    image_session, image_device = _session(files["image"], device)
    text_session, text_device = _session(files["text"], device)
    image_out = _run(image_session, {"pixel_values": data.pixel_values}, "image_embeds")
    text_out = _run_chunks(text_session, data.text_feeds, "text_embeds")

    img_cos = _cosines(image_out, data.image_ref)
    txt_cos = _cosines(text_out, data.text_ref)
    bar = MIN_COSINE[variant]
    figures: dict[str, Any] = {
        "image_min_cosine": round(float(img_cos.min()), 7),
        "image_mean_cosine": round(float(img_cos.mean()), 7),
        "text_min_cosine": round(float(txt_cos.min()), 7),
        "text_mean_cosine": round(float(txt_cos.mean()), 7),
        "min_cosine_bar": bar,
        "images": int(len(img_cos)),
        "texts": int(len(txt_cos)),
        "device": image_device if image_device == text_device else f"{image_device}/{text_device}",
        "reference": "PyTorch float32 (transformers get_image_features / get_text_features)",
    }
    norms = np.linalg.norm(np.concatenate([image_out, text_out]), axis=1)
    figures["max_norm_error"] = round(float(np.abs(norms - 1).max()), 7)

    for tower, cos in (("image", img_cos), ("text", txt_cos)):
        if not np.isfinite(cos).all():
            raise ValidationError(f"{variant} {tower} tower: non-finite embeddings (NaN or inf) on the validation set")
        if cos.min() < bar:
            worst = int(cos.argmin())
            what = f"text {data.texts[worst][:40]!r}" if tower == "text" else f"image #{worst}"
            raise ValidationError(
                f"{variant} {tower} tower: min cosine vs PyTorch {cos.min():.6f} < bar {bar} "
                f"(worst: {what}; mean {cos.mean():.6f} over {len(cos)})"
            )

    if variant in TOP1_AGREEMENT:
        figures.update(top1_figures(data, image_out, text_out))
        bar = TOP1_AGREEMENT[variant]
        figures["top1_bar"] = bar
        if figures["top1_agreement_decided"] < bar:
            raise ValidationError(
                f"{variant}: text->image top-1 agrees with PyTorch for {figures['top1_agreement_decided']:.1%} of "
                f"the {figures['top1_decided_texts']} captions PyTorch decides (gap >= {TOP1_MIN_GAP}) < bar {bar:.0%} "
                f"({figures['top1_agreement']:.1%} of all {figures['top1_texts']})"
            )

    if data.text_feeds_padded is not None and variant == "fp32":
        padded_out = _run_chunks(text_session, data.text_feeds_padded, "text_embeds")
        pad_cos = _cosines(padded_out, text_out)
        figures["text_padding_min_cosine"] = round(float(pad_cos.min()), 7)
        if pad_cos.min() < PADDING_MIN_COSINE:
            length = data.text_feeds_padded[0]["input_ids"].shape[1]
            raise ValidationError(
                f"{variant} text tower: ids padded to {length} give min cosine {pad_cos.min():.6f} vs the same "
                f"ids unpadded < bar {PADDING_MIN_COSINE}; the tower is not padding-invariant"
            )
    return figures


def write_references(dst: Path, fp32_files: dict[str, Path], image: dict[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    """references.npz in the bundle folder `dst`: the int8 check's inputs (mmsearch.int8_check
    reference_inputs, made once here so the bundle pins them) with the fp32 towers' outputs; returns
    the manifest's "references" section."""
    from mmsearch import int8_check
    from mmsearch.bundle import REFERENCES, Bundle

    bundle = Bundle(dst, {"name": dst.name, "image": image, "text": text}, "")
    arrays = int8_check.reference_inputs(bundle)
    if "attention_mask" not in text["inputs"]:
        del arrays["attention_mask"]
    for tower, path in fp32_files.items():
        session, _ = _session(path, "cpu")
        feeds = int8_check.tower_feeds(bundle, tower, arrays)
        arrays[f"{tower}_embeds"] = session.run([f"{tower}_embeds"], feeds)[0].astype(np.float32)
    np.savez_compressed(dst / REFERENCES, **arrays)
    return {"file": REFERENCES, "images": int(len(arrays["images"])), "texts": int(len(arrays["input_ids"])),
            "min_cosine": MIN_COSINE["int8"]}


def preprocess_difference(data: ValidationData, image: dict[str, Any]) -> dict[str, float] | None:
    """|mmsearch.preprocess - the checkpoint's image processor| over the validation images, i.e.
    whether the manifest's spec reproduces the processor: the largest difference (one 8-bit level,
    ~0.015, where a landscape resize skips cropped columns) and the share of values off by more than
    float rounding. A wrong spec (mean, size, crop) shows as differences of 0.1 and more everywhere.
    None where the runtime is not importable."""
    try:
        from mmsearch.bundle import Bundle
        from mmsearch.preprocess import preprocess_image
    except ImportError:
        return None
    spec = Bundle(Path("."), {"image": image}, "").image_spec
    ours = np.stack([preprocess_image(img, spec) for img in data.images])
    diff = np.abs(ours - data.pixel_values)
    return {"preprocess_max_abs_diff": round(float(diff.max()), 6),
            "preprocess_share_off": round(float((diff > 1e-4).mean()), 6)}
