"""Videos of the toy world (toyworld.py), written with PyAV: a few scenes one after another, each held for
some seconds (its picture drifting slowly, with fresh noise each frame, as a camera's would), for the
video tests and benchmarks/video.py.

    make(path, scenes, seconds=3.0, size=(160, 120), fps=5, codec="libx264", rotate=0)

`drift`: the pan over a scene, as a share of the width; `noise`: fresh noise added to each frame (0:
none); `grain`: texture, one field of noise over every frame (cheap at 4K); `options`: the encoder's (preset, crf...). `rotate`: degrees the player turns the picture counterclockwise (the display matrix, as phones write it);
the frames are stored turned the other way, so the video stands upright only where the rotation is
honoured. Returns each scene's [start, end) in seconds."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks import toyworld


def scenes(n: int, seed: int) -> list[tuple[dict[str, Any], str]]:
    """n toy scenes, no two alike, each with a caption that names its objects and their layout."""
    rng = random.Random(seed)
    out: list[tuple[dict[str, Any], str]] = []
    seen: set[tuple] = set()
    while len(out) < n:
        scene = toyworld.sample_scene(rng)
        sig = toyworld.signature(scene["objects"])
        if sig in seen:
            continue
        seen.add(sig)
        text, _ = toyworld.caption(scene, rng, omit=0.0, prefix=False)
        out.append((scene, text))
    return out


def make(path: Path, scene_list: Sequence[dict[str, Any]], *, seconds: float = 3.0, size: tuple[int, int] = (160, 120),
         fps: int = 5, codec: str = "libx264", rotate: int = 0, gop_s: float = 1.0, seed: int = 0,
         drift: float = 0.0, creation_time: str | None = None, noise: float = 3.0, grain: float = 0.0,
         options: dict[str, str] | None = None) -> list[tuple[float, float]]:
    import av

    width, height = size
    rng = np.random.default_rng(seed)
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stored = (height, width) if rotate in (90, 270) else (width, height)
    stream.width, stream.height = stored
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = max(1, int(round(gop_s * fps)))
    opts = dict(options or {})
    if codec == "libx265":
        opts["x265-params"] = ":".join(filter(None, [opts.get("x265-params"), "log-level=none"]))
    if opts:
        stream.codec_context.options = opts
    if rotate:
        stream.set_display_rotation(rotate)
    if creation_time:
        container.metadata["creation_time"] = creation_time
    spans = []
    frame_no = 0
    # Texture, cheaply: one field of noise made once and laid over every frame (what makes a keyframe about
    # as large as a phone's: a flat toy picture compresses to almost nothing; the frames between stay small).
    fields = [rng.normal(0, grain, (height, width, 3)).astype(np.int16)] if grain else []
    per_scene = int(round(seconds * fps))
    for scene in scene_list:
        spans.append((frame_no / fps, (frame_no + per_scene) / fps))
        # Drawn a little larger, then a window slides over it: a slow pan.
        margin = int(drift * width) + 1
        base = toyworld.render(scene, width + 2 * margin, height + 2 * margin, rng, noise=0.0, blur=0.3)
        for i in range(per_scene):
            dx = int(round(margin * (i / max(1, per_scene - 1) * 2 - 1))) if drift else 0
            img = base.crop((margin + dx, margin, margin + dx + width, margin + height))
            if fields:
                arr = np.asarray(img, np.int16) + fields[frame_no % len(fields)]
                img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
            if noise:
                arr = np.asarray(img, np.float32) + rng.standard_normal((height, width, 3), dtype=np.float32) * noise
                img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
            if rotate:
                img = img.rotate(-rotate, expand=True)  # the player turns it back by `rotate`
            frame = av.VideoFrame.from_image(img)
            frame.pts = frame_no
            for packet in stream.encode(frame):
                container.mux(packet)
            frame_no += 1
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return spans
