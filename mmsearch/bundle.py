"""A model bundle on disk: the manifest, its checksums, its variants and its preprocessing spec.

A bundle is a folder written by the export step (``mmsearch export``) or by ``mmsearch models pull``
and ``import`` (mmsearch/models/, from a ready ONNX model)::

    manifest.json          what this module reads (format below)
    tokenizer.json         a `tokenizers` tokenizer; padding/truncation are set from the manifest
    image.fp32.onnx        image tower: pixel_values float32 [N,3,H,W] -> image_embeds float32 [N,D]
    text.fp32.onnx         text tower: input_ids int64 [N,L] (+ attention_mask where listed)
                           -> text_embeds float32 [N,D]
    image.fp16.onnx ...    one pair per variant (fp32, fp16, int8); inputs and outputs stay float32
    references.npz         inputs and fp32 outputs for the int8 check on the CPU it runs on
                           (int8_check.py): images uint8 [N,H,W,3] at the tower's input size,
                           input_ids int64 [M,L] (+ attention_mask), image_embeds [N,D], text_embeds [M,D]

Every tower returns L2-normalised embeddings (projection and normalisation are inside the graph),
so the runtime never does model math itself.

manifest.json (``format_version`` 1)::

    {
      "format_version": 1,
      "name": "clip-vit-base-patch32",
      "family": "clip" | "siglip" | "chinese_clip",
      "source": "openai/clip-vit-base-patch32" or the local folder it came from,
      "embedding_dim": 512,
      "logit_scale": 100.0,            # exp() already applied
      "logit_bias": null | float,      # SigLIP only
      "image": {
        "input": "pixel_values", "output": "image_embeds",
        "size": [224, 224],            # [height, width] fed to the tower
        "resize": "shortest_edge" | "exact",   # shortest_edge: short side -> size, keep aspect
        "resize_size": 224 | [224, 224],
        "interpolation": "bicubic" | "bilinear",
        "crop": "center" | null,
        "rescale_factor": 0.00392156862745098,
        "mean": [..3], "std": [..3],
        "channel_order": "RGB", "layout": "NCHW",
        "max_batch": 1                 # optional: the tower takes one image at a time (a pulled graph
      },                               # frozen at batch 1); absent: any batch
      "text": {
        "inputs": ["input_ids"] | ["input_ids", "attention_mask"],
        "output": "text_embeds",
        "context_length": 77,
        "padding": "longest" | "max_length",   # longest: the tower takes any length <= context
        "pad_id": 49407,
        "tokenizer": "tokenizer.json",
        "clean": "whitespace" | "canonicalize",   # optional, informative: immich's text cleaning, which
                                                  # tokenizer.json's normalizer does (pulled immich models)
        "max_batch": 1                 # optional, as for the image tower
      },
      "variants": {
        "fp32": {"image": {"file": "image.fp32.onnx", "sha256": "...", "bytes": 123},
                 "text":  {"file": "text.fp32.onnx",  "sha256": "...", "bytes": 123},
                 "fused": {"image": {"Attention": 12, ...}, "text": {...}},
                 "validation": {"image_min_cosine": .., "text_min_cosine": .., ...}},
        "fp16": {...},
        "int8": {..., "quantization": {"method": "onnxruntime.quantization.quantize_dynamic",
                 "weight_type": "QInt8", "per_channel": ..., "reduce_range": ..., "op_types": [...]}}
      },
      "files": {"tokenizer.json": {"sha256": "...", "bytes": 123},
                "references.npz": {"sha256": "...", "bytes": 123}},
      "references": {"file": "references.npz", "images": 8, "texts": 16,  # absent in older bundles:
                     "min_cosine": 0.98},      # the check makes its own inputs, fp32 outputs at first use
      "opset": 17,
      "exporter": {"mmsearch": "0.1.0", "torch": "...", "transformers": "...", "onnx": "...",
                   "onnxruntime": "..."},
      "created": "2026-11-24T19:30:00Z"
    }

A pulled or imported bundle also has "layout" ("immich" | "transformers.js"), "conversion" (per tower:
the source graph's inputs and output, whether the normalisation is the source's or added, how the
batch dimension was made, the fusion), "pulled" ({"repo", "revision", "commit", "files": {path:
{"sha256", "bytes"}}} or {"folder", "files"} for an import) and, where a variant missed its bar,
"left_out" ({variant: why}); its "logit_scale" is null (not in an ONNX export; unused at run time).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MmsearchError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VARIANTS = ("fp32", "fp16", "int8")
TOWERS = ("image", "text")
REFERENCES = "references.npz"
# Where a verified file's (size, mtime) is remembered, so a query does not re-hash 300 MB each time.
_VERIFIED_STAMP = ".verified.json"


class BundleError(MmsearchError):
    """A bundle that cannot be used; the message names the file and the reason."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib  # only where a model is loaded or checked: a keyword query reads none

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ImageSpec:
    """How an image becomes the tower's input; see preprocess.py."""

    size: tuple[int, int]  # (height, width)
    resize: str  # "shortest_edge" | "exact"
    resize_size: int | tuple[int, int]
    interpolation: str
    crop: str | None
    rescale_factor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input: str = "pixel_values"
    output: str = "image_embeds"
    max_batch: int | None = None  # 1: the tower takes one image at a time (a graph frozen at batch 1)


@dataclass(frozen=True)
class TextSpec:
    inputs: tuple[str, ...]
    context_length: int
    padding: str  # "longest" | "max_length"
    pad_id: int
    tokenizer: str = "tokenizer.json"
    output: str = "text_embeds"
    max_batch: int | None = None  # 1: the tower takes one text at a time


def batch_limit(section: dict[str, Any]) -> int | None:
    value = section.get("max_batch")
    return int(value) if value else None


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def family(self) -> str:
        return self.manifest["family"]

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    @property
    def variants(self) -> list[str]:
        return [v for v in VARIANTS if v in self.manifest["variants"]]

    @property
    def image_spec(self) -> ImageSpec:
        m = self.manifest["image"]
        rs = m["resize_size"]
        return ImageSpec(
            size=(int(m["size"][0]), int(m["size"][1])),
            resize=m["resize"],
            resize_size=int(rs) if isinstance(rs, int) else (int(rs[0]), int(rs[1])),
            interpolation=m.get("interpolation", "bicubic"),
            crop=m.get("crop"),
            rescale_factor=float(m.get("rescale_factor", 1 / 255)),
            mean=tuple(float(x) for x in m["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in m["std"]),  # type: ignore[arg-type]
            input=m.get("input", "pixel_values"),
            output=m.get("output", "image_embeds"),
            max_batch=batch_limit(m),
        )

    @property
    def text_spec(self) -> TextSpec:
        m = self.manifest["text"]
        return TextSpec(
            inputs=tuple(m.get("inputs", ["input_ids"])),
            context_length=int(m["context_length"]),
            padding=m.get("padding", "max_length"),
            pad_id=int(m.get("pad_id", 0)),
            tokenizer=m.get("tokenizer", "tokenizer.json"),
            output=m.get("output", "text_embeds"),
            max_batch=batch_limit(m),
        )

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def tower_path(self, variant: str, tower: str) -> Path:
        """The verified file of one tower of one variant."""
        if variant not in self.manifest["variants"]:
            raise BundleError(
                f"{self.path / MANIFEST}: this bundle has no '{variant}' variant "
                f"(it has {', '.join(self.variants)})"
            )
        entry = self.manifest["variants"][variant][tower]
        path = self.path / entry["file"]
        self._verify(path, entry)
        return path

    def tokenizer_path(self) -> Path:
        name = self.text_spec.tokenizer
        path = self.path / name
        entry = self.manifest.get("files", {}).get(name)
        if entry:
            self._verify(path, entry)
        elif not path.is_file():
            raise BundleError(f"{path}: the bundle's tokenizer is missing")
        return path

    def references_path(self) -> Path | None:
        """The verified references file (inputs and fp32 outputs for the int8 check, int8_check.py), or
        None for a bundle exported before bundles carried one."""
        section = self.manifest.get("references")
        if not section:
            return None
        name = section.get("file", REFERENCES)
        path = self.path / name
        entry = self.manifest.get("files", {}).get(name)
        if entry:
            self._verify(path, entry)
        elif not path.is_file():
            raise BundleError(f"{path}: missing from the bundle (listed in its manifest)")
        return path

    def listed_files(self) -> dict[str, dict[str, Any]]:
        """Every file the manifest lists (the towers of each variant, the tokenizer, the references):
        relative name -> its entry (sha256, bytes)."""
        out = {self.manifest["variants"][v][t]["file"]: self.manifest["variants"][v][t]
               for v in self.variants for t in TOWERS}
        return {**out, **self.manifest.get("files", {})}

    def verify_all(self) -> None:
        """Hash every file the manifest lists, ignoring the remembered stamps."""
        for name, entry in self.listed_files().items():
            self._verify(self.path / name, entry, force=True)

    def _verify(self, path: Path, entry: dict[str, Any], force: bool = False) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise BundleError(f"{path}: missing from the bundle (listed in its manifest)") from None
        key = f"{path.name}:{st.st_size}:{st.st_mtime_ns}:{entry['sha256']}"
        stamps = self._stamps()
        if not force and stamps.get(path.name) == key:
            return
        if "bytes" in entry and st.st_size != int(entry["bytes"]):
            raise BundleError(
                f"{path}: size {st.st_size} does not match the manifest's {entry['bytes']} bytes; "
                "the bundle is damaged, export it again"
            )
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise BundleError(
                f"{path}: sha256 {actual[:12]}... does not match the manifest's "
                f"{entry['sha256'][:12]}...; the bundle is damaged or was modified, export it again"
            )
        stamps[path.name] = key
        self._save_stamps(stamps)

    def _stamps(self) -> dict[str, str]:
        try:
            return json.loads((self.path / _VERIFIED_STAMP).read_text())
        except (OSError, ValueError):
            return {}

    def _save_stamps(self, stamps: dict[str, str]) -> None:
        # Best effort: a read-only bundle is simply verified on every load.
        try:
            tmp = self.path / f"{_VERIFIED_STAMP}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(stamps))
            os.replace(tmp, self.path / _VERIFIED_STAMP)
        except OSError:
            pass


def image_section(*, size: list[int], resize: str, resize_size: Any, interpolation: str, crop: str | None,
                  rescale: float, mean: list[float], std: list[float]) -> dict[str, Any]:
    """The manifest's `image` section, as the export step and a pulled model both write it."""
    return {
        "input": "pixel_values",
        "output": "image_embeds",
        "size": size,
        "resize": resize,
        "resize_size": resize_size,
        "interpolation": interpolation,
        "crop": crop,
        "rescale_factor": rescale,
        "mean": mean,
        "std": std,
        "channel_order": "RGB",
        "layout": "NCHW",
    }


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and check a bundle's manifest; tower files are hashed when first loaded."""
    folder = Path(path).expanduser()
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"{folder}: no such model folder")
    try:
        raw = manifest_path.read_bytes()
        manifest = json.loads(raw)
    except FileNotFoundError:
        raise BundleError(f"{manifest_path}: missing; this folder is not an mmsearch model bundle") from None
    except ValueError as e:
        raise BundleError(f"{manifest_path}: not valid JSON ({e})") from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: format_version {version!r} is not one this mmsearch reads "
            f"(it reads {FORMAT_VERSION}); export the model again or upgrade mmsearch"
        )
    for key in ("name", "family", "embedding_dim", "image", "text", "variants"):
        if key not in manifest:
            raise BundleError(f"{manifest_path}: the manifest has no '{key}'")
    import hashlib

    return Bundle(folder, manifest, hashlib.sha256(raw).hexdigest())
