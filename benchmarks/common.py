"""Shared pieces of the benchmarks: the ViT-B/32-sized bundle, realistic photos, tables and JSON.

The ViT-B/32 checkpoint (random weights, the exact architecture) and its bundle are cached under
`.work/bench/` (gitignored); every benchmark that needs them reuses the same folder.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".work" / "bench"
VITB32_DIR = BENCH_DIR / "clip-vit-b-32"  # checkpoint/ and bundle/ under it


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the model -----------------------------------------------------------------------------------


def vitb32_checkpoint() -> Path:
    """The cached ViT-B/32-sized CLIP checkpoint (random weights, the exact architecture)."""
    out = VITB32_DIR / "checkpoint"
    if not (out / "config.json").exists():
        from mmsearch_export.tiny import make_clip_checkpoint

        say(f"writing a random-weight ViT-B/32 CLIP checkpoint to {out}")
        make_clip_checkpoint(out, preset="vit-b-32")
    return out


def vitb32_bundle() -> Path:
    """The cached ViT-B/32-sized bundle (fp32, fp16, int8), exported again when the export step would
    now make it otherwise (minutes)."""
    out = VITB32_DIR / "bundle"
    why = _stale(out / "manifest.json")
    if why:
        from mmsearch_export import export_bundle

        say(f"exporting {vitb32_checkpoint()} to {out} ({why}; cached for next time)")
        export_bundle(vitb32_checkpoint(), out, name="clip-vit-b-32-random", progress=say, overwrite=True)
    return out


def _stale(manifest_path: Path) -> str | None:
    """Why the cached bundle is not what the export step makes today (None if it is)."""
    from mmsearch_export import to_onnx

    try:
        m = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return "no readable manifest"
    if set(m.get("variants", {})) != {"fp32", "fp16", "int8"}:
        return "not all three variants"
    fused = m["variants"]["fp32"].get("fused", {})
    if not all(fused.get(t, {}).get("Attention", 0) > 0 for t in ("image", "text")):
        return "unfused fp32 towers"
    q = m["variants"]["int8"].get("quantization", {})
    wanted = {k: v for k, v in to_onnx.INT8_OPTIONS.items() if k != "from_fused"}
    if any(q.get(k) != v for k, v in wanted.items()) or (q.get("quantized_from") == "plain export") == bool(
        to_onnx.INT8_OPTIONS.get("from_fused")
    ):
        return "int8 quantized with other settings"
    return None


# -- realistic photos ----------------------------------------------------------------------------


def realistic_photo(seed: int, width: int, height: int) -> np.ndarray:
    """uint8 HxWx3 that compresses like a camera photo: smooth shading and large soft shapes,
    mid-frequency texture (foliage, fabric), fine sensor noise, a few hard edges."""
    rng = np.random.default_rng(seed)
    from PIL import Image, ImageDraw

    # Smooth base: a coarse random colour field with objects drawn on it, at 1/4 scale, upscaled
    # bicubically to the full size (soft edges, smooth shading: sky, walls, gradients).
    sw, sh = max(8, width // 4), max(8, height // 4)
    coarse = rng.integers(0, 256, (4 + seed % 4, 5 + seed % 3, 3), dtype=np.uint8)
    small = Image.fromarray(coarse, "RGB").resize((sw, sh), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(small)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, sw)), int(rng.integers(0, sh))
        w, h = int(rng.integers(sw // 20, sw // 3)), int(rng.integers(sh // 20, sh // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
    arr = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    # Mid-frequency texture: noise at 1/6 scale, upscaled (detail a JPEG has to spend bits on), strong
    # in some regions (foliage, gravel) and faint in others (sky).
    tw, th = max(2, width // 6), max(2, height // 6)
    texture = rng.standard_normal((th, tw), dtype=np.float32) * np.float32(22)
    texture = np.asarray(Image.fromarray(texture, "F").resize((width, height), Image.Resampling.BILINEAR))
    mask = np.asarray(Image.fromarray(rng.random((6, 8), dtype=np.float32), "F").resize((width, height), Image.Resampling.BICUBIC))
    arr += (texture * np.clip(mask, 0.1, 1))[..., None]
    # Fine noise (sensor grain), per channel: windows of a fixed noise tile (fast to make).
    tile = _noise_tile()
    th_, tw_ = tile.shape[:2]
    oy, ox = int(rng.integers(0, th_ // 2)), int(rng.integers(0, tw_ // 2))
    for y in range(0, height, th_ - oy):
        for x in range(0, width, tw_ - ox):
            block = arr[y : y + th_ - oy, x : x + tw_ - ox]
            block += tile[oy : oy + block.shape[0], ox : ox + block.shape[1]]
    return np.clip(arr, 0, 255).astype(np.uint8)


_TILE: list[np.ndarray] = []


def _noise_tile() -> np.ndarray:
    if not _TILE:
        _TILE.append(np.random.default_rng(12345).standard_normal((1021, 1031, 3), dtype=np.float32) * np.float32(5))
    return _TILE[0]


def _write_photo(args: tuple[int, int, int, str, int]) -> int:
    seed, width, height, path, quality = args
    from PIL import Image

    Image.fromarray(realistic_photo(seed, width, height), "RGB").save(path, quality=quality, subsampling=2)
    return os.path.getsize(path)


def photo_collection(folder: Path, n: int, width: int, height: int, *, quality: int = 90, seed: int = 0,
                     workers: int | None = None) -> list[Path]:
    """n realistic JPEGs of width x height in `folder` (cached: existing files are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo_{width}x{height}_{seed + i:05d}.jpg" for i in range(n)]
    todo = [(seed + i, width, height, str(p), quality) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        say(f"generating {len(todo)} photos of {width}x{height} in {folder}")
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
            list(pool.map(_write_photo, todo, chunksize=4))
    return paths


# -- output --------------------------------------------------------------------------------------


def checkout(ref: str) -> Path:
    """A worktree of this repository at git REF (cached by commit under .work/bench/), for --against."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", f"{ref}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    tree = BENCH_DIR / f"against-{commit}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), commit], check=True,
                       capture_output=True)
    return tree


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    try:
        info["load_avg_at_start"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None,
          formats: dict[str, str] | None = None) -> str:
    formats = formats or {}

    def fmt(v: Any, col: str = "") -> str:
        if isinstance(v, float) and col in formats:
            return format(v, formats[col])
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c), c) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = []
    if title:
        lines.append(title)
    lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")
    return "\n".join(lines)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str))
        say(f"wrote {path}")


def peak_rss_of(cmd: Sequence[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess, float, int | None]:
    """Run a command; returns (completed, wall seconds, peak RSS in bytes of that process, where
    /usr/bin/time can tell: GNU time's %M, the largest resident set of the process)."""
    import shutil
    import tempfile

    gnu_time = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        full = [gnu_time, "-f", "%M", "-o", out.name, *cmd] if gnu_time else list(cmd)
        t = time.perf_counter()
        done = subprocess.run(full, **kwargs)
        wall = time.perf_counter() - t
        try:
            rss = int(out.read().strip().splitlines()[-1]) * 1024
        except (ValueError, IndexError):
            rss = None
    return done, wall, rss
