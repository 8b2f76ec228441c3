"""mmsearch's export step: a CLIP-family checkpoint -> a validated model bundle (mmsearch/bundle.py).

    from mmsearch_export import export_bundle, ExportError
    export_bundle("openai/clip-vit-base-patch32", Path("models/clip-b32"), progress=print)

The work happens in the submodules: towers.py (wrap the towers with projection + L2 norm),
to_onnx.py (export, fuse, fp16, int8), validate.py (the gate against PyTorch), manifest.py (what
bundle.py reads), hub.py (hub ids), tiny.py (small random checkpoints for tests and benchmarks).
This module imports none of the heavy libraries until export_bundle runs.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmsearch.errors import first_line
from mmsearch.paths import make_parents

__all__ = ["ExportError", "export_bundle", "add_references", "VARIANTS"]

VARIANTS = ("fp32", "fp16", "int8")


class ExportError(Exception):
    """An export that could not produce a valid bundle; the message names the file or folder and
    the reason (for a validation failure: the variant, the tower, the figure and the bar)."""


def export_bundle(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    variants: Sequence[str] = VARIANTS,
    progress: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Export a checkpoint (a local folder or a model hub id) to a bundle folder at `out`.

    Writes tokenizer.json, one image and one text ONNX file per variant, references.npz (the int8
    check's inputs and fp32 outputs, mmsearch/int8_check.py) and manifest.json, after
    every variant passed validation against the PyTorch model. fp32 is always written (it is the
    reference and the fallback the runtime uses). Nothing is ever left half-written at `out`: the
    bundle is built in a hidden folder beside it and renamed into place at the end; on any failure
    that folder is removed and ExportError raised. An existing non-empty `out` is an error unless
    `overwrite`, in which case it is replaced only once the new bundle is complete.
    """
    say = progress or (lambda _msg: None)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ExportError(f"unknown variant(s) {', '.join(map(repr, unknown))}; choose from {', '.join(VARIANTS)}")
    wanted = [v for v in VARIANTS if v in variants or v == "fp32"]

    out = Path(out).expanduser()
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not overwrite:
        raise ExportError(f"{out}: already exists; remove it, choose another folder, or overwrite it")
    folder, source_label = _resolve_source(source, say)
    bundle_name = name or _default_name(source_label)

    make_parents(out)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _build(folder, source_label, bundle_name, wanted, staging, say)
        _move_into_place(staging, out)
    except ExportError:
        raise
    except Exception as e:
        from .hub import HubError
        from .towers import CheckpointError
        from .validate import ValidationError

        if isinstance(e, ValidationError):
            raise ExportError(f"{source_label}: validation failed: {e}") from e
        if isinstance(e, (CheckpointError, HubError)):
            raise ExportError(str(e)) from e
        raise ExportError(f"{source_label}: export failed ({type(e).__name__}: {first_line(e)})") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"wrote {out}")
    return out


def add_references(folder: str | os.PathLike[str]) -> Path:
    """Write references.npz into a bundle exported before bundles carried one, and list it in its
    manifest (the runtime otherwise makes the int8 check's references from the fp32 towers itself)."""
    from mmsearch.bundle import MANIFEST, load_bundle

    from . import manifest as mf
    from . import validate

    bundle = load_bundle(folder)
    manifest = dict(bundle.manifest)
    fp32 = {tower: bundle.tower_path("fp32", tower) for tower in ("image", "text")}
    section = validate.write_references(bundle.path, fp32, manifest["image"], manifest["text"])
    entry = mf.file_entry(bundle.path / section["file"])
    manifest["files"] = {**manifest.get("files", {}), entry.pop("file"): entry}
    manifest["references"] = section
    mf.write_manifest(bundle.path, manifest)
    return bundle.path / MANIFEST



def _resolve_source(source: str | os.PathLike[str], say: Callable[[str], None]) -> tuple[Path, str]:
    """(local checkpoint folder, the label the manifest records as its source)."""
    from .hub import HubError, download, looks_like_hub_id

    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ExportError(f"{path}: not a folder (expected a checkpoint folder with config.json)")
        return path.resolve(), str(path.resolve())
    if isinstance(source, str) and looks_like_hub_id(text):
        try:
            return download(text, say), text
        except HubError as e:
            raise ExportError(str(e)) from None
    raise ExportError(f"{path}: no such folder (and not a model hub id like 'openai/clip-vit-base-patch32')")


def _default_name(source_label: str) -> str:
    return Path(source_label.rstrip("/")).name or "model"


def _move_into_place(staging: Path, out: Path) -> None:
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:  # overwrite: swap the old bundle aside, the new one in, then drop the old one
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
            return
    os.replace(staging, out)


def _build(folder: Path, source_label: str, bundle_name: str, variants: list[str], dst: Path,
           say: Callable[[str], None]) -> None:
    import torch

    from . import manifest as mf
    from . import to_onnx, validate
    from .towers import load_checkpoint

    t0 = time.perf_counter()
    say(f"loading {source_label}")
    ckpt = load_checkpoint(folder)
    image = mf.image_spec(ckpt)
    text = mf.text_spec(ckpt)

    tokenizer_json = dst / "tokenizer.json"
    _save_tokenizer(ckpt, tokenizer_json)

    scratch = dst / ".scratch"
    scratch.mkdir()

    towers = tower_specs(ckpt, image, text)
    with torch.inference_mode():
        dim_image = int(towers["image"]["module"](*towers["image"]["example"]).shape[-1])
        dim_text = int(towers["text"]["module"](*towers["text"]["example"]).shape[-1])
    if dim_image != dim_text:
        raise ExportError(f"{folder}: image embeddings have {dim_image} dimensions, text embeddings {dim_text}")

    files: dict[str, dict[str, Path]] = {v: {} for v in variants}
    fused: dict[str, dict[str, dict[str, int]]] = {v: {} for v in variants}
    for tower, t in towers.items():
        say(f"exporting {tower} tower")
        raw = to_onnx.export_tower(t["module"], t["example"], scratch / f"{tower}.raw.onnx", t["inputs"], t["output"],
                                   t["axes"])
        cfg = t["config"]
        fp32 = dst / f"{tower}.fp32.onnx"
        model_type = "bert" if (ckpt.family, tower) == ("chinese_clip", "text") else "clip"
        counts = to_onnx.optimize(raw, fp32, num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size,
                                  model_type=model_type)
        files["fp32"][tower], fused["fp32"][tower] = fp32, counts
        say(f"fused {tower} tower: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if "fp16" in variants:
            say(f"converting {tower} tower to fp16")
            path = dst / f"{tower}.fp16.onnx"
            files["fp16"][tower], fused["fp16"][tower] = path, to_onnx.to_fp16(fp32, path)
        if "int8" in variants:
            say(f"quantizing {tower} tower to int8")
            path = dst / f"{tower}.int8.onnx"
            source = fp32 if to_onnx.INT8_OPTIONS.get("from_fused") else raw
            files["int8"][tower], fused["int8"][tower] = path, to_onnx.to_int8(source, path)
        raw.unlink()
    shutil.rmtree(scratch)
    del towers

    say(f"preparing validation inputs ({validate.N_IMAGES} images, {validate.N_TEXTS} texts) and PyTorch reference")
    data = validate.prepare(ckpt, tokenizer_json, text)
    variant_entries: dict[str, dict[str, Any]] = {}
    for variant in variants:
        say(f"validating {variant} against PyTorch")
        figures = validate.validate_variant(variant, files[variant], data, text)
        if variant == "fp32":
            diff = validate.preprocess_difference(data, image)
            if diff is not None:
                figures.update(diff)
        say(
            f"validated {variant} on {figures['device']}: min cosine image {figures['image_min_cosine']:.6f}, "
            f"text {figures['text_min_cosine']:.6f} (bar {figures['min_cosine_bar']})"
            + _top1_words(figures)
        )
        variant_entries[variant] = {
            "image": mf.file_entry(files[variant]["image"]),
            "text": mf.file_entry(files[variant]["text"]),
            "fused": fused[variant],
            "validation": figures,
        }
        if variant == "int8":
            options = {k: v for k, v in to_onnx.INT8_OPTIONS.items() if k != "from_fused"}
            variant_entries[variant]["quantization"] = {
                "method": "onnxruntime.quantization.quantize_dynamic",
                "quantized_from": "fused graph" if to_onnx.INT8_OPTIONS.get("from_fused") else "plain export",
                **options,
            }

    say("writing the int8 check's references (a few inputs with the fp32 outputs)")
    references = validate.write_references(dst, files["fp32"], image, text)
    manifest = mf.build_manifest(
        name=bundle_name,
        source=source_label,
        ckpt=ckpt,
        embedding_dim=dim_image,
        image=image,
        text=text,
        variants=variant_entries,
        files={p.name: {k: v for k, v in mf.file_entry(p).items() if k != "file"}
               for p in (tokenizer_json, dst / references["file"])},
        opset=to_onnx.OPSET,
    )
    manifest["references"] = references
    manifest["export_seconds"] = round(time.perf_counter() - t0, 1)
    mf.write_manifest(dst, manifest)


def tower_specs(ckpt: Any, image: dict[str, Any], text: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Both towers as torch.onnx.export takes them: the module, example inputs, input/output names,
    dynamic axes and the transformer config (the plain export that fusion and int8 start from)."""
    import torch

    from .towers import build_towers

    image_tower, text_tower = build_towers(ckpt)
    h, w = image["size"]
    example_pixels = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    example_texts = ["a photo of a cat", "two dogs playing in the snow next to a red car"]
    if text["padding"] == "max_length":
        enc = ckpt.tokenizer(example_texts, padding="max_length", max_length=text["context_length"],
                             truncation=True, return_tensors="pt")
    else:
        enc = ckpt.tokenizer(example_texts, padding=True, truncation=True, max_length=text["context_length"],
                             return_tensors="pt")
    example_text = [enc[k] for k in text["inputs"]]
    seq_axes = {0: "batch", 1: "sequence"} if text["padding"] == "longest" else {0: "batch"}
    return {
        "image": dict(module=image_tower, example=[example_pixels], inputs=["pixel_values"], output="image_embeds",
                      axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}}, config=ckpt.vision_config),
        "text": dict(module=text_tower, example=example_text, inputs=text["inputs"], output="text_embeds",
                     axes={**{k: seq_axes for k in text["inputs"]}, "text_embeds": {0: "batch"}},
                     config=ckpt.text_config),
    }


def _top1_words(figures: dict[str, Any]) -> str:
    if "top1_agreement" not in figures:
        return ""
    plain = f"{figures['top1_agreement']:.1%} of all {figures['top1_texts']}"
    if not figures["top1_decided_texts"]:
        return f", top-1 agreement {plain} (PyTorch decides none of the captions: a random-weight model?)"
    return (f", top-1 agreement {figures['top1_agreement_decided']:.1%} of {figures['top1_decided_texts']} "
            f"decided captions ({plain})")


def _save_tokenizer(ckpt: Any, path: Path) -> None:
    """The checkpoint tokenizer's `tokenizers` backend, with its special-token post-processor, without
    padding or truncation (the runtime sets those from the manifest)."""
    from tokenizers import Tokenizer

    from .towers import CheckpointError

    backend = getattr(ckpt.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise CheckpointError(
            f"{ckpt.path}: the tokenizer ({type(ckpt.tokenizer).__name__}) has no `tokenizers` backend "
            "(no tokenizer.json); mmsearch needs a fast tokenizer"
        )
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(path))
