"""Writes the manifest that mmsearch/bundle.py reads (the format is in bundle.py's docstring).

This module owns the translation from a checkpoint (its image processor, tokenizer and config) to
the bundle's preprocessing and tokenisation spec, and the checksums of every file.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmsearch.bundle import FORMAT_VERSION, MANIFEST, image_section, sha256_file

from .towers import Checkpoint, CheckpointError, text_inputs

# PIL's resampling filters, as transformers stores them (PILImageResampling is PIL's own numbering).
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_SUPPORTED_INTERPOLATION = ("nearest", "lanczos", "bilinear", "bicubic")


def file_entry(path: Path) -> dict[str, Any]:
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _size_get(size: Any, key: str) -> int | None:
    """transformers 5 stores sizes as a SizeDict (attributes), 4 as a plain dict."""
    if size is None:
        return None
    if isinstance(size, dict):
        value = size.get(key)
    else:
        value = getattr(size, key, None)
    return int(value) if value is not None else None


def image_spec(ckpt: Checkpoint) -> dict[str, Any]:
    """The manifest's "image" section: exactly what the checkpoint's image processor does."""
    proc = ckpt.image_processor
    where = f"{ckpt.path}: image processor {type(proc).__name__}"
    if not getattr(proc, "do_resize", True):
        raise CheckpointError(f"{where} does not resize images; the towers need a fixed input size")
    size = getattr(proc, "size", None)
    shortest = _size_get(size, "shortest_edge")
    height, width = _size_get(size, "height"), _size_get(size, "width")
    if shortest is not None:
        resize, resize_size = "shortest_edge", shortest
    elif height is not None and width is not None:
        resize, resize_size = "exact", [height, width]
    else:
        raise CheckpointError(f"{where}: size {size!r} is neither a shortest edge nor a height and width")

    if getattr(proc, "do_center_crop", False):
        crop_size = getattr(proc, "crop_size", None)
        ch, cw = _size_get(crop_size, "height"), _size_get(crop_size, "width")
        if ch is None or cw is None:
            raise CheckpointError(f"{where}: crop_size {crop_size!r} has no height and width")
        crop, out_size = "center", [ch, cw]
    elif resize == "exact":
        crop, out_size = None, list(resize_size)  # type: ignore[arg-type]
    else:
        raise CheckpointError(f"{where}: resizes the shortest edge without cropping, so the size varies")

    resample = getattr(proc, "resample", 3)
    resample = int(getattr(resample, "value", resample)) if resample is not None else 3
    interpolation = _RESAMPLE_NAMES.get(resample)
    if interpolation not in _SUPPORTED_INTERPOLATION:
        raise CheckpointError(f"{where}: resampling filter {resample} is not one mmsearch reproduces")

    rescale = float(proc.rescale_factor) if getattr(proc, "do_rescale", True) else 1.0
    if getattr(proc, "do_normalize", True):
        mean = [float(x) for x in _three(proc.image_mean)]
        std = [float(x) for x in _three(proc.image_std)]
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]

    image_size = getattr(ckpt.vision_config, "image_size", None)
    if image_size is not None and out_size != [int(image_size), int(image_size)]:
        raise CheckpointError(
            f"{where} produces {out_size[0]}x{out_size[1]} images but the vision model expects "
            f"{image_size}x{image_size}"
        )
    return image_section(size=out_size, resize=resize, resize_size=resize_size, interpolation=interpolation,
                         crop=crop, rescale=rescale, mean=mean, std=std)


def _three(values: Any) -> list[float]:
    values = list(values) if isinstance(values, (list, tuple)) else [values] * 3
    return values if len(values) == 3 else [values[0]] * 3


def text_spec(ckpt: Checkpoint) -> dict[str, Any]:
    """The manifest's "text" section: context length, padding and pad id for the family."""
    tok = ckpt.tokenizer
    max_positions = int(getattr(ckpt.text_config, "max_position_embeddings", 77))
    model_max = getattr(tok, "model_max_length", None)
    context = max_positions
    if isinstance(model_max, int) and 0 < model_max < max_positions:
        context = model_max
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad_id is None:
        raise CheckpointError(f"{ckpt.path}: the tokenizer has neither a pad nor an end token")
    # CLIP: causal mask + first-end-token pooling, so padding never reaches the pooled token and the
    # tower takes any length. Chinese-CLIP: BERT with an attention mask, any length too. SigLIP pools
    # the last position, so it is only right at the padded length it was trained with.
    padding = "max_length" if ckpt.family == "siglip" else "longest"
    return {
        "inputs": text_inputs(ckpt.family),
        "output": "text_embeds",
        "context_length": context,
        "padding": padding,
        "pad_id": int(pad_id),
        "tokenizer": "tokenizer.json",
    }


def exporter_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import onnx
    import onnxruntime
    import torch
    import transformers

    try:
        mine = version("mmsearch")
    except PackageNotFoundError:
        mine = "0.1.0"
    return {
        "mmsearch": mine,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def build_manifest(
    *,
    name: str,
    source: str,
    ckpt: Checkpoint,
    embedding_dim: int,
    image: dict[str, Any],
    text: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    files: dict[str, dict[str, Any]],
    opset: int,
) -> dict[str, Any]:
    model = ckpt.model
    logit_scale = float(model.logit_scale.detach().exp().item())
    logit_bias = getattr(model, "logit_bias", None)
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "family": ckpt.family,
        "source": source,
        "embedding_dim": int(embedding_dim),
        "logit_scale": logit_scale,
        "logit_bias": float(logit_bias.detach().item()) if logit_bias is not None else None,
        "image": image,
        "text": text,
        "variants": variants,
        "files": files,
        "opset": opset,
        "exporter": exporter_versions(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / MANIFEST
    tmp = folder / f"{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)
    return path
