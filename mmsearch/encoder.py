"""Batches in, unit vectors out: the image tower and the text tower of one bundle variant."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from . import int8_check
from .bundle import Bundle
from .runtime import DeviceError, create_session, expected_device
# The tokenizers of a bundle live in tokens.py (int8_check needs one too); named here as before.
from .tokens import chunk_tokenizer, content_tokens, load_tokenizer

__all__ = ["ImageEncoder", "TextEncoder", "choose_variant", "chunk_tokenizer", "content_tokens", "load_tokenizer"]

log = logging.getLogger("mmsearch")


def choose_variant(bundle: Bundle, device: str, variant: str | None = None) -> str:
    """fp16 on CUDA, int8 on the CPU, unless asked otherwise; fp32 where the preferred one is missing."""
    if variant:
        if variant not in bundle.variants:
            from .bundle import BundleError

            raise BundleError(
                f"{bundle.path}: no '{variant}' variant in this bundle (it has {', '.join(bundle.variants)})"
            )
        return variant
    preferred = "fp16" if device == "cuda" else "int8"
    return preferred if preferred in bundle.variants else "fp32"


class _Tower:
    def __init__(self, bundle: Bundle, tower: str, variant: str | None, device: str, threads: int | None,
                 spinning: bool = True, prepack: bool = True):
        # A graph frozen at batch 1 (some pulled models) takes its batch one input at a time.
        self.max_batch = (bundle.image_spec if tower == "image" else bundle.text_spec).max_batch
        # The variant follows the device: fp16 only where a CUDA session is really had.
        wanted = variant or choose_variant(bundle, expected_device(device))
        self.session, self.device = create_session(bundle.tower_path(wanted, tower), device, threads=threads,
                                                   spinning=spinning, prepack=prepack)
        if variant is None and self.device == "cpu" and wanted == "fp16":
            wanted = choose_variant(bundle, "cpu")
            self.session, self.device = create_session(bundle.tower_path(wanted, tower), "cpu", threads=threads,
                                                       spinning=spinning, prepack=prepack)
        if self.device == "cpu" and wanted in int8_check.CHECKED and not self._passes(bundle, wanted, tower, variant,
                                                                                      threads):
            wanted = "fp32"
            self.session, self.device = create_session(bundle.tower_path(wanted, tower), "cpu", threads=threads,
                                                       spinning=spinning, prepack=prepack)
        self.variant = wanted
        self.output = self.session.get_outputs()[0].name

    def _passes(self, bundle: Bundle, variant: str, tower: str, asked: str | None, threads: int | None) -> bool:
        """Whether the variant's tower is right on this CPU (int8_check.py: checked on first use, then
        cached). Left to choose, a failing tower gives way to fp32 with one line where the check ran;
        asked for by name, it is refused, as --device cuda is where CUDA does not work."""
        cached = int8_check.cached_verdict(bundle, variant, tower)
        verdict = cached or int8_check.check(bundle, variant, tower, self.session, threads=threads)
        if verdict.passed:
            return True
        where = (f"the {variant} {tower} tower of '{bundle.name}' is off on this CPU ({verdict.isa}): min cosine "
                 f"{verdict.min_cosine:.4f} against its fp32 outputs < {verdict.bar}")
        if asked:
            raise DeviceError(f"--variant {variant}: {where}; leave --variant out (fp32 is used here) or ask for fp32")
        if cached is None:
            log.warning("%s; using fp32 (checked once on this CPU, see mmsearch doctor)", where)
        else:
            log.debug("%s; using fp32 (cached verdict)", where)
        return False

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(feeds.values())))
        if self.max_batch and n > self.max_batch:
            step = self.max_batch
            return np.concatenate([self._run({k: v[i : i + step] for k, v in feeds.items()}) for i in range(0, n, step)])
        return self._run(feeds)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.device == "cuda":
            # IO binding: inputs are copied to the GPU once, the output stays there until we copy it back.
            binding = self.session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            binding.bind_output(self.output, "cuda")
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]
        return self.session.run([self.output], feeds)[0]


class _Encoder:
    """What both towers tell about themselves: the device and variant their session really got."""

    _tower: _Tower

    @property
    def device(self) -> str:
        return self._tower.device

    @property
    def variant(self) -> str:
        return self._tower.variant


class ImageEncoder(_Encoder):
    """pixel batches [N,3,H,W] float32 -> L2-normalised embeddings [N,D] float32.

    prepack=False opens faster and encodes a little slower (runtime.session_options): for query-only use."""

    def __init__(self, bundle: Bundle, *, variant: str | None = None, device: str = "auto", threads: int | None = None,
                 prepack: bool = True):
        self.bundle = bundle
        self.spec = bundle.image_spec
        # No busy-waiting between ops: during an index run the decode threads share these cores.
        self._tower = _Tower(bundle, "image", variant, device, threads, spinning=False, prepack=prepack)
        self._input = self.spec.input

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.ndim == 3:
            pixels = pixels[None]
        out = self._tower.run({self._input: np.ascontiguousarray(pixels, dtype=np.float32)})
        return out.astype(np.float32, copy=False)


class TextEncoder(_Encoder):
    """strings -> L2-normalised embeddings [N,D] float32, tokenized as the manifest says.

    prepack=False opens faster and encodes a little slower (runtime.session_options): for query-only use."""

    def __init__(self, bundle: Bundle, *, variant: str | None = None, device: str = "auto", threads: int | None = None,
                 prepack: bool = True):
        self.bundle = bundle
        self.spec = bundle.text_spec
        self.tokenizer = load_tokenizer(bundle)
        self._tower = _Tower(bundle, "text", variant, device, threads, prepack=prepack)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids}
        if "attention_mask" in self.spec.inputs:
            feeds["attention_mask"] = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        return self._tower.run(feeds).astype(np.float32, copy=False)
