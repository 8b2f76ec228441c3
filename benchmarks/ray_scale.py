"""`mmsearch index --engine ray` on a Ray cluster on this machine: images/s with one worker node and with
two, and the index it makes against a local run's on the toy world's quality benchmark.

    python -m benchmarks.ray_scale [--n 600] [--size 1600x1200] [--rounds 2] [--quality 200] [--json FILE]

Scaling: a head node with no CPUs (it only coordinates) and worker nodes of one CPU each, started by
`ray start` as separate processes (tests/ray_cluster.py). The same photos are indexed into a fresh
index with one worker node, then two, alternating for --rounds; images/s is photos / the run's seconds
(scan, plan, the Ray pipeline, commits and the save; Ray's start-up of the actors included), and the
ratio two/one is what it measures. A local run of the same photos is timed beside them.

Equivalence: the quality benchmark (benchmarks.quality, fp32) indexed locally and through the cluster;
recall and every query's answers compared.

Model: the committed toy CLIP (tests/fixtures/toyclip, 64-px input): encoding costs little, so what
scales here is reading and decoding the photos (generated JPEGs, benchmarks.common.photo_collection).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks import common, quality  # noqa: E402

MODEL = ROOT / "tests" / "fixtures" / "toyclip"


def _isa() -> str:
    flags = open("/proc/cpuinfo").read()
    return "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else "neither AVX2 nor VNNI"


def timed_run(photos: Path, index: Path, **kwargs: Any) -> dict[str, Any]:
    from mmsearch import Index

    if index.exists():
        shutil.rmtree(index)
    commits: list[float] = []  # when each batch (local) or shard (ray) was committed

    def observe(step: str) -> None:
        if step == "commit":
            commits.append(time.monotonic())

    t0 = time.monotonic()
    with Index(index, model=MODEL) as idx:
        report = idx.index([photos], observe=observe, ocr=False, **kwargs)  # the embeddings' path only
    seconds = time.monotonic() - t0
    assert not report.errors, report.errors
    # Steady state: the photos committed after the first commit, over the time from it to the last one
    # (the start-up of Ray and of the actors left out; batches are of equal size).
    per_commit = report.added / len(commits)
    steady = (report.added - per_commit) / (commits[-1] - commits[0]) if len(commits) > 1 else None
    return {"seconds": round(seconds, 2), "images_per_s": round(report.added / seconds, 1),
            "steady_images_per_s": round(steady, 1) if steady else None, "first_commit_s": round(commits[0] - t0, 2),
            "added": report.added, "device": report.device}


def scaling(work: Path, n: int, size: tuple[int, int], rounds: int, shard_files: int) -> dict[str, Any]:
    from ray_cluster import Cluster

    photos = work / "photos"
    common.photo_collection(photos, n, *size)
    out: dict[str, Any] = {"local": [], "one": [], "two": []}
    for r in range(rounds):
        common.say(f"round {r + 1}: local")
        out["local"].append(timed_run(photos, work / "index-local"))
        for nodes in ("one", "two"):
            cluster = Cluster(head_cpus=0, workers=1 if nodes == "one" else 2, worker_cpus=1)
            try:
                cluster.wait_for_nodes(2 if nodes == "one" else 3)
                common.say(f"round {r + 1}: {nodes} worker node(s)")
                out[nodes].append(timed_run(photos, work / f"index-{nodes}", engine="ray",
                                            ray_address=cluster.address, shard_files=shard_files))
                common.say(json.dumps(out[nodes][-1]))
            finally:
                cluster.stop()
    for metric in ("images_per_s", "steady_images_per_s"):
        best = {k: max(x[metric] for x in out[k]) for k in ("local", "one", "two")}
        out[f"ratio_two_over_one ({metric})"] = round(best["two"] / best["one"], 2)
        out[f"ratio_one_over_local ({metric})"] = round(best["one"] / best["local"], 2)
    return out


def equivalence(work: Path, n: int) -> dict[str, Any]:
    from ray_cluster import Cluster

    local = quality.run_quality(n=n, seed=2025, variants=("fp32",), model=MODEL, work=work / "q-local", cli_queries=0,
                                max_size=1600, log=common.say)
    cluster = Cluster(head_cpus=1, workers=1, worker_cpus=1)
    try:
        cluster.wait_for_nodes(2)
        ray = quality.run_quality(n=n, seed=2025, variants=("fp32",), model=MODEL, work=work / "q-ray", cli_queries=0,
                                  max_size=1600, log=common.say,
                                  index_args=("--engine", "ray", "--ray-address", cluster.address))
    finally:
        cluster.stop()
    a, b = local["variants"]["fp32"], ray["variants"]["fp32"]
    same = sum(x == y for x, y in zip(a["answers"], b["answers"]))
    return {"n": n, "local": {"t2i": a["t2i"], "i2t": a["i2t"]}, "ray": {"t2i": b["t2i"], "i2t": b["i2t"]},
            "queries": len(a["answers"]), "same_answers": same, "ray_index": {k: v for k, v in b["index"].items()
                                                                             if k != "errors"}}


def writer(work: Path, n_shards: int, per_shard: int, dim: int = 512) -> dict[str, Any]:
    """The one writer's side: shards of `per_shard` photos with `dim`-d vectors (ViT-B/32's 512) written
    and committed into a fresh index (the commit a Ray run makes of each: one transaction, the graph following).
    The model is a copy of the toy bundle whose manifest says `dim`: a commit never runs the model."""
    import numpy as np

    from mmsearch import Index
    from mmsearch.ingest.commit import commit
    from mmsearch.ingest.context import Encoders, Run
    from mmsearch.ingest.records import Record
    from mmsearch.ingest.shards import read_shard, write_shard

    bundle = work / "bundle-512"
    shutil.copytree(MODEL, bundle, dirs_exist_ok=True)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["embedding_dim"] = dim
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    index = work / "index-writer"
    shutil.rmtree(index, ignore_errors=True)
    rng = np.random.default_rng(0)
    with Index(index, model=bundle) as idx:
        root = idx.catalog.add_root("/archive")
        folder = index / "shards"
        folder.mkdir(parents=True, exist_ok=True)
        names, t0 = [], time.monotonic()
        for s in range(n_shards):
            vecs = rng.standard_normal((per_shard, dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            rows = [Record(path=f"/archive/{s:05d}/{i:04d}.jpg", root_id=root, kind="image", size=2_500_000,
                             mtime_ns=1, planned=None, status="indexed", digest=f"{s:032x}{i:032x}", width=4000,
                             height=3000, vectors=vecs[i : i + 1]) for i in range(per_shard)]
            names.append(write_shard(folder, "image", rows, dim, idx.bundle.manifest_sha256))
        write_s = time.monotonic() - t0
        size = sum((folder / n).stat().st_size for n in names)
        vectors = idx.vectors
        vectors.begin_writing()
        try:
            run, t0 = Run(idx.catalog, vectors, Encoders(idx.image_encoder, idx.text_encoder), idx.bundle.image_spec), time.monotonic()
            for n in names:  # what the engine does with each shard the cluster reports: read, then commit
                commit(run, read_shard(folder / n, dim, idx.bundle.manifest_sha256))
            commit_s = time.monotonic() - t0
        finally:
            vectors.end_writing()
    photos = n_shards * per_shard
    return {"photos": photos, "dim": dim, "per_shard": per_shard, "shard_bytes": round(size / n_shards),
            "bytes_per_photo": round(size / photos), "shards_written_per_s": round(n_shards / write_s, 1),
            "commit_photos_per_s": round(photos / commit_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--size", default="1600x1200")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--shard-files", type=int, default=32)
    ap.add_argument("--quality", type=int, default=200, help="toy world pictures for the equivalence (0: skip)")
    ap.add_argument("--writer-shards", type=int, default=80, help="shards of 256 photos committed (0: skip)")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="mmsearch-ray-") as tmp:
        work = args.work or Path(tmp)
        result: dict[str, Any] = {"machine": {**common.machine(), "isa": _isa()}, "n": args.n, "size": args.size,
                                  "shard_files": args.shard_files}
        result["scaling"] = scaling(work, args.n, (w, h), args.rounds, args.shard_files)
        if args.quality:
            result["equivalence"] = equivalence(work, args.quality)
        if args.writer_shards:
            result["writer"] = writer(work, args.writer_shards, 256)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
