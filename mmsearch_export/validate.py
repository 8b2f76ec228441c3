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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.models import gates
from mmsearch.models.gates import (  # noqa: F401 (the bars and images are shared with models pull)
    COLOURS,
    MIN_COSINE,
    PADDING_MIN_COSINE,
    SHAPES,
    TOP1_AGREEMENT,
    TOP1_MIN_GAP,
    captioned_images,
)

from .towers import Checkpoint, reference_image_embeds, reference_text_embeds

N_IMAGES = 64
N_TEXTS = 64  # captions of the images (the top-1 check runs over these)
N_FREE_TEXTS = 16  # more texts for the cosine check: one word, accents, digits, past the context
BATCH = 16


class ValidationError(Exception):
    """A variant missed its bar; the message says which, by how much."""


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
    """Text->image top-1 of a variant against PyTorch's (mmsearch.models.gates.top1_figures)."""
    return gates.top1_figures(data.text_ref, data.image_ref, text_out, image_out, data.n_captions)


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
