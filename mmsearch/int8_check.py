"""Is a bundle's int8 variant right on this CPU? Checked once per CPU, the verdict cached.

onnxruntime's int8 kernels are chosen by instruction set. With VNNI (AVX-512 VNNI, AVX-VNNI, AMX)
u8 x s8 products are summed in 32 bits. Without it (AVX2, AVX-512 without VNNI) pairs of products
are first summed into 16 bits (vpmaddubsw), which saturates for some weight/activation pairs. So an
int8 tower validated where it was exported can give degraded vectors on another machine, with no
error. The export and `mmsearch models pull` quantize so that this cannot happen (models/variants.py
INT8_OPTIONS); this check is the guard for whatever still can: older bundles, other settings, kernels
not measured.

The check: the bundle's reference inputs (references.npz, written by the export: a few images at the
tower's input size and a few texts' token ids, with the fp32 towers' outputs) go through the int8
tower; it passes when every output's cosine with the fp32 one is >= the bar (the export's int8 bar,
0.98). A bundle without references (exported before they existed) gets the same kind of inputs made
here and the fp32 outputs from its own fp32 tower, once. A tower that fails is replaced by fp32.

Verdicts live in $MMSEARCH_HOME/cache/int8-check/, one small JSON file per (manifest sha256,
variant, tower, instruction-set flags, onnxruntime version): a later session reads one file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import private
from .bundle import Bundle

log = logging.getLogger("mmsearch")

MIN_COSINE = 0.98  # the export gate's int8 bar (mmsearch_export/validate.py), where the manifest names none
N_IMAGES = 8
REFERENCE_TEXTS = (
    "a photo of a red car",
    "two dogs playing in the snow",
    "cat",
    "A Photo Of A DOG.",
    "café crème brûlée on a wooden table",
    "3 red apples, 2 bananas & 1 pizza (2019)",
    "a green triangle on a yellow background, blurred",
    "an orange ring, purple background",
    "a photo of a white square on black",
    "the bicycle is shiny!",
    "two boats near the river at sunset",
    "a drawing of a horse with a striped umbrella",
    "一张猫的照片",
    "a close-up photo of the old wooden door, taken in the snow.",
    "pink and grey stripes",
    # the longest sets the batch's length (all are padded to it): a 77-token one made the check 3x dearer
    "a busy street at night, cars and bicycles, wet asphalt reflecting the lights",
)
CHECKED = ("int8",)  # fp32 is the reference; fp16 is for CUDA, whose kernels this is not about


@dataclass(frozen=True)
class Verdict:
    passed: bool
    min_cosine: float
    bar: float
    model: str
    variant: str
    tower: str
    isa: str
    onnxruntime: str
    references: str  # "bundle", or "fp32 tower" where the bundle carries none
    seconds: float  # what the check cost (references and the int8 run)
    checked: str  # UTC time


# -- this CPU --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def isa_flags() -> tuple[str, ...]:
    """The machine and the instruction-set extensions CPUID reports to this process (numpy's
    runtime dispatch table), plus AVX-VNNI and AMX, which numpy does not list, from /proc/cpuinfo."""
    from .runtime import cpu_identity, cpuid_features  # the ORT cache's key, read once

    flags = set(cpuid_features())
    line = next((part for part in cpu_identity().split(";") if part.startswith("flags")), "")
    words = set(line.partition(":")[2].split())
    # Only where /proc/cpuinfo describes the CPU this process sees (an emulator passes the host's through).
    if ("avx2" in words) == ("AVX2" in flags) and ("avx512_vnni" in words) == ("AVX512VNNI" in flags):
        flags.update(w.upper() for w in ("avx_vnni", "amx_int8") if w in words)
    return (platform.machine(),) + tuple(sorted(flags))


def isa_summary(flags: tuple[str, ...] | None = None) -> str:
    """What decides onnxruntime's int8 kernels, in a few words: e.g. 'x86_64 AVX2, no VNNI'."""
    flags = flags or isa_flags()
    machine, have = flags[0], set(flags[1:])
    if "SSE2" in have:
        for flag, words in (("AMX_INT8", "AMX"), ("AVX512VNNI", "AVX-512 VNNI"), ("AVX_VNNI", "AVX-VNNI"),
                            ("AVX512BW", "AVX-512, no VNNI"), ("AVX2", "AVX2, no VNNI")):
            if flag in have:
                return f"{machine} {words}"
        return f"{machine} no AVX2"
    if "ASIMDDP" in have:
        return f"{machine} NEON dot product"
    return machine


# -- verdicts ----------------------------------------------------------------------------------------


def _verdict_path(bundle: Bundle, variant: str, tower: str) -> Path:
    import onnxruntime as ort

    from .paths import cache_dir

    key = "|".join((bundle.manifest_sha256, variant, tower, ",".join(isa_flags()), ort.__version__))
    return cache_dir() / "int8-check" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def cached_verdict(bundle: Bundle, variant: str, tower: str) -> Verdict | None:
    """The verdict for this bundle's tower on this CPU, if it was checked; one small file read."""
    try:
        return Verdict(**json.loads(_verdict_path(bundle, variant, tower).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save(bundle: Bundle, verdict: Verdict) -> None:
    path = _verdict_path(bundle, verdict.variant, verdict.tower)
    try:  # best effort: an unwritable home costs a check per session, never the session
        private.claim(path.parent.parent, "cache")  # 0700, an old cache made private
        private.make_folder(path.parent)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with private.open_file(tmp, "w") as f:
            f.write(json.dumps(asdict(verdict)) + "\n")
        os.replace(tmp, path)
    except (OSError, private.NotOwnerError) as e:
        log.debug("%s: verdict not cached (%s)", path, e)


def check(bundle: Bundle, variant: str, tower: str, session: Any, *, threads: int | None = None) -> Verdict:
    """Run the check on `session` (the variant's tower, opened on the CPU) and cache the verdict."""
    from .runtime import run_in_batches

    t0 = time.perf_counter()
    feeds, expected, source = references(bundle, tower, threads=threads)
    got = run_in_batches(session, session.get_outputs()[0].name, feeds, _max_batch(bundle, tower)).astype(np.float32)
    cos = _cosines(got, expected)
    worst = float(np.nan_to_num(cos, nan=-1.0).min())
    import onnxruntime as ort

    bar = float(bundle.manifest.get("references", {}).get("min_cosine", MIN_COSINE))
    result = Verdict(passed=worst >= bar, min_cosine=round(worst, 6), bar=bar, model=bundle.name, variant=variant,
                     tower=tower, isa=isa_summary(), onnxruntime=ort.__version__, references=source,
                     seconds=round(time.perf_counter() - t0, 3),
                     checked=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    _save(bundle, result)
    return result


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# -- references --------------------------------------------------------------------------------------


def references(bundle: Bundle, tower: str, *, threads: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """(the tower's feeds, the fp32 outputs for them, where those came from)."""
    path = bundle.references_path()
    if path is not None:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        return tower_feeds(bundle, tower, arrays), arrays[f"{tower}_embeds"].astype(np.float32), "bundle"
    from .runtime import create_session, run_in_batches

    feeds = tower_feeds(bundle, tower, reference_inputs(bundle))
    fp32, _ = create_session(bundle.tower_path("fp32", tower), "cpu", threads=threads, prepack=False)
    out = run_in_batches(fp32, fp32.get_outputs()[0].name, feeds, _max_batch(bundle, tower))
    return feeds, out.astype(np.float32), "fp32 tower"


def _max_batch(bundle: Bundle, tower: str) -> int | None:
    return (bundle.image_spec if tower == "image" else bundle.text_spec).max_batch


def tower_feeds(bundle: Bundle, tower: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tower's inputs from reference arrays: images (uint8 [N,H,W,3] at the tower's input size,
    normalised as the runtime does it), input_ids and, where the tower takes it, attention_mask."""
    if tower == "image":
        from PIL import Image

        from .preprocess import to_tensor

        spec = bundle.image_spec
        return {spec.input: np.stack([to_tensor(Image.fromarray(img, "RGB"), spec) for img in arrays["images"]])}
    spec_t = bundle.text_spec
    return {name: arrays[name].astype(np.int64) for name in spec_t.inputs}


def reference_inputs(bundle: Bundle) -> dict[str, np.ndarray]:
    """Reference inputs made here, for a bundle that carries none: N_IMAGES pictures drawn at the
    tower's input size (shaded background, a large shape, grain) and REFERENCE_TEXTS through the
    bundle's tokenizer, padded as the runtime pads a batch."""
    from .tokens import load_tokenizer

    h, w = bundle.image_spec.size
    arrays = {"images": np.stack([_picture(i, h, w) for i in range(N_IMAGES)])}
    encodings = load_tokenizer(bundle).encode_batch(list(REFERENCE_TEXTS))
    arrays["input_ids"] = np.asarray([e.ids for e in encodings], dtype=np.int64)
    arrays["attention_mask"] = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    return arrays


def _picture(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / w + np.sin(angle) * ys / h)[..., None]
    ramp = (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
    background, colour = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    img = background * (0.7 + 0.5 * ramp) + rng.normal(0, 6, (h, w, 3))
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.4) * min(h, w)
    if seed % 2:
        inside = (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r
    else:
        inside = (abs(ys - cy) <= r) & (abs(xs - cx) <= r)
    img[inside] = colour
    return np.clip(img, 0, 255).astype(np.uint8)
