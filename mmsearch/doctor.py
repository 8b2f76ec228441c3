"""What this machine can do for mmsearch (`mmsearch doctor`): onnxruntime and its providers, CUDA, the
CPU's instruction set and the int8 checks of the installed models, HEIC support, OCR, the video decoder,
MMSEARCH_HOME, and
who else can read the index and the caches."""

from __future__ import annotations

from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def diagnose(index_dir: Path | None = None) -> dict[str, Any]:
    """The facts `mmsearch doctor` prints (and `--json` gives as they are); `index_dir`: the index whose
    permissions to check (default: the default index). Raises MmsearchError where onnxruntime is not
    installed (mmsearch installed without its [cpu] or [gpu] extra)."""
    from . import int8_check, ocr, paths, private, video
    from .api import installed_models, is_index_entry
    from .bundle import TOWERS
    from .media import heif_supported
    from .runtime import cuda_works, ort

    ok, why = cuda_works()
    checks = []
    for bundle in installed_models():
        for variant in (v for v in int8_check.CHECKED if v in bundle.variants):
            for tower in TOWERS:
                verdict = int8_check.cached_verdict(bundle, variant, tower)
                checks.append({"model": bundle.name, "variant": variant, "tower": tower,
                               **({"verdict": None} if verdict is None else
                                  {"verdict": "pass" if verdict.passed else "fail", **asdict(verdict)})})
    places = {"index": (index_dir or paths.default_index_dir(), is_index_entry), "cache": (paths.cache_dir(), None)}
    return {
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "cuda": ok,
        "cuda_reason": why or None,
        "heic": heif_supported(),
        "ocr": ocr.describe(),
        "video": video.describe(),
        "cpu": int8_check.isa_summary(),
        "cpu_flags": list(int8_check.isa_flags()),
        "home": str(paths.home()),
        "models": [p.name for p in paths.models_dir().iterdir()] if paths.models_dir().is_dir() else [],
        "int8_checks": checks,
        "onnxruntime_packages_clash": both_onnxruntimes(),
        # Who else can read what mmsearch keeps: the index (every document's text) and the caches.
        "access": {name: {"folder": str(folder), **(private.inspect(folder, ours).to_dict() if folder.is_dir() else {})}
                   for name, (folder, ours) in places.items()},
    }


def both_onnxruntimes() -> bool:
    """Whether the CPU and GPU onnxruntime packages are both installed (they install the same module)."""
    found = 0
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            version(name)
            found += 1
        except PackageNotFoundError:
            pass
    return found == 2
