"""Videos: seconds of video indexed per second of wall time and of CPU time, and the frames kept per minute.

    python -m benchmarks.video [--model BUNDLE] [--seconds 60] [--rounds 2] [--clips 1080p-h264,2160p-hevc]
                               [--json FILE]

The clips: toy-world scenes (benchmarks/toyvideos.py), 12 a minute, each panning slowly, at 30 frames a
second with a keyframe each second (as phones write them), written once with PyAV's own encoders and
cached under .work/bench/videos/: 1080p H.264 (libx264) and 2160p HEVC (libx265). The model: the
ViT-B/32-sized random CLIP (benchmarks/common.py; --model another bundle), the index's default variant.

Each round indexes each clip alone into a fresh index (Index.index in this process, after a first run
over the empty folder has loaded and calibrated the model: hashing, probing,
decoding the keyframes, scene detection, encoding, the commits, the save), timed in wall and CPU seconds
(the process's, every thread); then decodes it alone (video.frames over its parts, no model) for the
share of decoding. The best round is reported (other work on the machine only slows a round down).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import BENCH_DIR, machine, say, table, vitb32_bundle, write_json

CLIPS = {  # name: (size, codec, encoder options)
    "1080p-h264": ((1920, 1080), "libx264", {"preset": "veryfast", "crf": "20"}),
    "2160p-hevc": ((3840, 2160), "libx265", {"preset": "ultrafast", "crf": "22"}),
}
FPS = 30
GRAIN = 8.0  # texture (toyvideos.make): keyframes about as large as a phone's at that size


def clip(name: str, seconds: float) -> Path:
    """The cached clip (written the first time: minutes at 4K)."""
    from . import toyvideos

    size, codec, options = CLIPS[name]
    out = BENCH_DIR / "videos" / f"{name}-{int(seconds)}s-texture{GRAIN:g}.mp4"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    n = max(1, int(round(seconds / 5)))
    say(f"writing {out} ({n} scenes of 5 s, {size[0]}x{size[1]} {codec}, {FPS} fps)")
    tmp = out.with_suffix(".part.mp4")
    toyvideos.make(tmp, [s for s, _ in toyvideos.scenes(n, seed=11)], seconds=5.0, size=size, fps=FPS,
                   codec=codec, gop_s=1.0, drift=0.04, noise=0.0, grain=GRAIN, options=options)
    tmp.rename(out)
    return out


def instruction_set() -> str:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    found = [f for f in ("avx512_vnni", "avx512f", "avx2") if f" {f}" in flags]
    return ", ".join(found) or "no AVX2"


def index_once(path: Path, bundle: Path) -> dict[str, Any]:
    from mmsearch import Index

    folder = Path(tempfile.mkdtemp(prefix="mmsearch-video-bench-"))
    try:
        (folder / "lib").mkdir()
        with Index(folder / "index", model=bundle, device="cpu") as idx:
            # A first run over the empty folder: the model's load and its calibration (once per index)
            # are not the video's cost.
            idx.index([folder / "lib"], ocr=False)
            shutil.copy(path, folder / "lib")
            wall, cpu = time.perf_counter(), time.process_time()
            report = idx.index([folder / "lib"], ocr=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            frames = idx.counts()["frames"]
        assert not report.errors, report.errors
        return {"wall_s": wall, "cpu_s": cpu, "frames": frames}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def keyframes(path: Path) -> dict[str, Any]:
    """The clip's bit rate and its keyframes: how many, how large (what decoding them costs)."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        sizes = [p.size for p in c.demux(stream) if p.size and p.is_keyframe]
        seconds = c.duration / 1_000_000
    return {"mbit_s": path.stat().st_size * 8 / seconds / 1e6, "keyframes": len(sizes),
            "keyframe_kb": sum(sizes) / max(1, len(sizes)) / 1024}


def decode_once(path: Path, short_side: int) -> dict[str, Any]:
    from mmsearch import video

    info = video.probe(str(path))
    count = video.parts(info.duration_s)
    wall, cpu = time.perf_counter(), time.process_time()
    kept, after = 0, None
    for k in range(count):
        start, end = video.part_span(k, count)
        times = [f.time_s for f in video.frames(str(path), start_s=start, end_s=end, after_s=after,
                                                  short_side=short_side)]
        kept += len(times)
        after = times[-1] if times else after
    return {"decode_wall_s": time.perf_counter() - wall, "decode_cpu_s": time.process_time() - cpu,
            "duration_s": info.duration_s, "codec": info.codec, "kept": kept}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="bundle folder [default: the ViT-B/32-sized stand-in]")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clips", default=",".join(CLIPS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from mmsearch.bundle import load_bundle
    from mmsearch.preprocess import draft_size

    bundle = args.model or vitb32_bundle()
    short_side = min(draft_size(load_bundle(bundle).image_spec, 1000, 1000))
    names = [n.strip() for n in args.clips.split(",") if n.strip()]
    paths = {name: clip(name, args.seconds) for name in names}
    best: dict[str, dict[str, Any]] = {}
    for r in range(args.rounds):
        for name in names:
            run = {**index_once(paths[name], bundle), **decode_once(paths[name], short_side), **keyframes(paths[name])}
            say(f"round {r + 1} {name}: {run}")
            if name not in best or run["wall_s"] < best[name]["wall_s"]:
                best[name] = run
    rows = []
    for name in names:
        b = best[name]
        minutes = b["duration_s"] / 60
        rows.append({"clip": name, "codec": b["codec"], "Mbit/s": b["mbit_s"], "keyframes": b["keyframes"],
                     "keyframe KB": b["keyframe_kb"], "video s": b["duration_s"], "wall s": b["wall_s"],
                     "CPU s": b["cpu_s"], "video s / wall s": b["duration_s"] / b["wall_s"],
                     "video s / CPU s": b["duration_s"] / b["cpu_s"], "frames / min": b["frames"] / minutes,
                     "decoding share of wall": b["decode_wall_s"] / b["wall_s"]})
    info = {**machine(), "instruction_set": instruction_set(), "model": str(bundle)}
    print(table(rows, list(rows[0]), title=f"Videos indexed ({info['cpu']}, {info['cores']} cores, "
                                           f"{info['instruction_set']}; best of {args.rounds})"))
    write_json(args.json, {"machine": info, "rows": rows, "best": best})
    return 0


if __name__ == "__main__":
    sys.exit(main())
