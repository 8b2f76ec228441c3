"""The default model, chosen by measurement: every model of the catalogue (mmsearch/models/catalogue.py)
with its published recall, its download and its cost on this CPU after `mmsearch models pull`.

    python -m benchmarks.default_model                 # every catalogued model; writes nothing
    python -m benchmarks.default_model --write-docs    # and the table in docs/models.md
    python -m benchmarks.default_model --only immich-vit-b-32-laion2b clip-vit-b-32

No machine here reaches the hub, so each repository is an architecture-sized stand-in with random
weights in its real layout (benchmarks/standins.py: file names, input and output names and shapes,
dtypes; immich's graphs frozen at batch 1 as immich's exporter writes them), served by the local
stand-in for the hub (tests/hubserver.py) and installed with the real `mmsearch models pull` in a
subprocess. Random weights cost what real ones cost. Stand-ins and pulled bundles are cached under
.work/bench/default-model/ (the first run writes and pulls them: about an hour on 2 cores; later runs
only measure, a few minutes).

Measured per model, int8 (what the CPU runs) and fp32, each tower as the runtime runs it (a graph that
takes no batch runs one input at a time, its real throughput):
- images/s at batch 32 (ingestion's batch of photos), pixels already decoded;
- texts/s at batch 64 (ingestion's batch of document chunks), chunks that fill the context;
- query ms: one short text, batch 1, warm;
each timed once per round (after a warm-up) in --rounds rounds over every model in alternating order,
the best round kept: few batches, so that the whole run fits in about 15 minutes on 2 cores;
- cold query s: `mmsearch query "red car"` as a fresh process on a 4-photo index built with the
  model (median of --cold runs; onnxruntime's optimised-graph cache and the int8 verdict already made,
  as after any earlier query).
Recall: immich's published Crossmodal-3600 table (docs/docs/features/searching.md in immich's
repository), as the catalogue records it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import BENCH_DIR, ROOT, machine, say, table, write_json

WORK = BENCH_DIR / "default-model"
IMAGE_BATCH = 32
TEXT_BATCH = 64

# Each catalogued model's stand-in: (layout writer, its argument).
STANDINS: dict[str, tuple[str, Any]] = {
    "clip-vit-b-32": ("transformers.js", ("clip", "vit-b-32")),
    "clip-vit-l-14": ("transformers.js", ("clip", "vit-l-14")),
    "siglip-b-16": ("transformers.js", ("siglip", "vit-b-16")),
    "chinese-clip-b-16": ("transformers.js", ("chinese_clip", "vit-b-16")),
    "immich-vit-b-32-openai": ("immich", "vit-b-32-openai"),
    "immich-vit-b-32-laion2b": ("immich", "vit-b-32-laion2b"),
    "immich-siglip-b-16": ("immich", "siglip-b-16"),
    "immich-siglip2-b-16": ("immich", "siglip2-b-16"),
    "immich-xlm-roberta-b-32": ("immich", "xlm-roberta-b-32"),
}


def instruction_set() -> str:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    return "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else "neither AVX2 nor VNNI"


def _env(home: Path, hub_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(MMSEARCH_HOME=str(home), HF_HOME=str(home.parent / "hf"), HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HUB_DOWNLOAD_TIMEOUT="300", HF_HUB_ETAG_TIMEOUT="300")  # a busy machine serves slowly
    if hub_url:
        env["HF_ENDPOINT"] = hub_url
    return env


def stand_in(name: str) -> Path:
    from . import standins

    layout, arg = STANDINS[name]
    out = WORK / name / "repo"
    if layout == "immich":
        return standins.write_immich(arg, out)
    return standins.write_transformers_js(arg[0], arg[1], out)


def pulled(name: str) -> Path:
    """The bundle `mmsearch models pull NAME` installs from the stand-in (pulled once, then cached)."""
    from mmsearch.models import catalogue

    home = WORK / name / "home"
    bundle = home / "models" / name
    if (bundle / "manifest.json").is_file():
        return bundle
    repo = stand_in(name)
    sys.path.insert(0, str(ROOT / "tests"))
    from hubserver import HubServer, Repo

    entry = catalogue.find(name)
    assert entry is not None
    with HubServer() as hub:
        hub.add(entry.repo, Repo.from_folder(repo))
        say(f"mmsearch models pull {name} (from the stand-in hub)")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mmsearch", "models", "pull", name], env=_env(home, hub.url),
                              capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"pull of {name} failed:\n{proc.stderr}")
    say(f"pulled {name} in {time.perf_counter() - t0:.0f} s")
    return bundle


def _texts(n: int, seed: int) -> list[str]:
    """Document chunks: long enough to fill any tower's context (as ingestion's chunks do)."""
    from mmsearch_export.tiny import sample_texts

    words = " ".join(sample_texts(n * 8, seed=seed)).split()
    return [" ".join(words[i * 60:(i + 1) * 60]) for i in range(n)]


def measure(name: str, bundle_path: Path, batches: int) -> dict[str, Any]:
    from mmsearch.bundle import load_bundle
    from mmsearch.encoder import ImageEncoder, TextEncoder

    bundle = load_bundle(bundle_path)
    m = bundle.manifest
    size = bundle.image_spec.size
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((IMAGE_BATCH, 3, size[0], size[1])).astype(np.float32)
    texts = _texts(TEXT_BATCH, seed=2)
    row: dict[str, Any] = {
        "download_mb": round(sum(f["bytes"] for f in m["pulled"]["files"].values()) / 1e6),
        "image_batch": "1 at a time" if m["image"].get("max_batch") == 1 else "batches",
        "text_batch": "1 at a time" if m["text"].get("max_batch") == 1 else "batches",
        "text_padding": m["text"].get("padding"),
        "variants": bundle.variants,
    }
    for variant in ("int8", "fp32"):
        if variant not in bundle.variants:
            row[f"{variant}_left_out"] = (m.get("left_out") or {}).get(variant)
            continue
        say(f"{name} {variant}: images")
        image = ImageEncoder(bundle, variant=variant, device="cpu")
        image.encode(pixels[:2])  # load and warm up
        t0 = time.perf_counter()
        for _ in range(batches):
            image.encode(pixels)
        row[f"{variant}_images_s"] = round(batches * IMAGE_BATCH / (time.perf_counter() - t0), 1)
        del image
        say(f"{name} {variant}: texts")
        text = TextEncoder(bundle, variant=variant, device="cpu")
        text.encode(texts[:2])
        t0 = time.perf_counter()
        for _ in range(batches):
            text.encode(texts)
        row[f"{variant}_texts_s"] = round(batches * TEXT_BATCH / (time.perf_counter() - t0), 1)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            text.encode(["red car"])
            times.append(time.perf_counter() - t0)
        row[f"{variant}_query_ms"] = round(1000 * statistics.median(times), 1)
        del text
    return row


def cold_query(name: str, runs: int) -> float:
    """Median wall time of `mmsearch query "red car"` in a fresh process on a 4-photo index."""
    home = WORK / name / "home"
    index = WORK / name / "index"
    env = _env(home)
    if not (index / "catalog.db").exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from engine_helpers import make_collection

        photos = WORK / "photos"
        if not photos.exists():
            make_collection(photos, n_images=4, docs={"note.txt": "a note about a red car"})
        subprocess.run([sys.executable, "-m", "mmsearch", "index", str(photos), "--index", str(index), "--model", name,
                        "--no-ocr", "--json"], env=env, check=True, capture_output=True)
    cmd = [sys.executable, "-m", "mmsearch", "query", "red car", "--index", str(index), "-k", "3"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)  # the graph cache and int8 verdict, once
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    return round(statistics.median(walls), 3)


COLUMNS = ["model", "recall_en", "recall_zh", "download_mb", "int8_images_s", "fp32_images_s", "int8_texts_s",
           "fp32_texts_s", "int8_query_ms", "cold_query_s", "batch"]


def rows_for(names: list[str], rounds: int, cold_runs: int) -> list[dict[str, Any]]:
    """Every model measured once per round, in alternating order (the machine's other load falls on all
    alike); each figure is the best round's (the least disturbed)."""
    from mmsearch.models import catalogue

    bundles = {name: pulled(name) for name in names}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            runs[name].append(measure(name, bundles[name], 1))
    rows = []
    for name in names:
        entry = catalogue.find(name)
        assert entry is not None, name
        row: dict[str, Any] = {"model": name, "recall_en": entry.recall.get("en"), "recall_zh": entry.recall.get("zh")}
        row.update(runs[name][0])
        for key in runs[name][0]:
            values = [run[key] for run in runs[name] if isinstance(run.get(key), (int, float))]
            if values and key.endswith(("_images_s", "_texts_s")):
                row[key] = max(values)
            elif values and key.endswith("_query_ms"):
                row[key] = min(values)
        row["cold_query_s"] = cold_query(name, cold_runs)
        row["batch"] = "image " + row["image_batch"] + ", text " + row["text_batch"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], rounds: int) -> str:
    def cell(v: Any) -> str:
        return "—" if v is None else str(v)

    base = next((r for r in rows if r["model"] == "clip-vit-b-32"), None)

    def versus(r: dict[str, Any], key: str) -> str:
        if base is None or not base.get(key) or not r.get(key):
            return ""
        return f" ({r[key] / base[key]:.2f}x)"

    head = ("| model | recall en / zh (%) | download MB | images/s int8 (vs clip-vit-b-32) / fp32 | texts/s int8 "
            "(vs clip-vit-b-32) / fp32 | query ms int8 | cold query s | batches |")
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        recall = f"{cell(r['recall_en'])} / {cell(r['recall_zh'])}"
        lines.append(
            f"| `{r['model']}` | {recall} | {r['download_mb']} | {cell(r.get('int8_images_s'))}"
            f"{versus(r, 'int8_images_s')} / {cell(r.get('fp32_images_s'))} | {cell(r.get('int8_texts_s'))}"
            f"{versus(r, 'int8_texts_s')} / {cell(r.get('fp32_texts_s'))} | {cell(r.get('int8_query_ms'))} | "
            f"{cell(r.get('cold_query_s'))} | {r['batch']} |")
    lines.append("")
    lines.append(f"{info['cpu']}, {info['cores']} cores, {info['instruction_set']}, onnxruntime "
                 f"{info.get('onnxruntime')}, {info['date']} (load average {info.get('load_avg_at_start')} at the "
                 f"start: a shared machine); one timed batch of {IMAGE_BATCH} images and of {TEXT_BATCH} "
                 f"context-filling chunks per tower and variant after a warm-up, in each of {rounds} rounds over "
                 f"every model in alternating order, the best round kept; `python -m benchmarks.default_model "
                 f"--write-docs`.")
    return "\n".join(lines)


BEGIN, END = "<!-- default-model table: begin -->", "<!-- default-model table: end -->"


def write_docs(text: str) -> None:
    path = ROOT / "docs" / "models.md"
    doc = path.read_text()
    if BEGIN not in doc:
        raise SystemExit(f"{path}: no {BEGIN} marker")
    before, rest = doc.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    path.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")
    say(f"wrote the table in {path}")


def main() -> None:
    from mmsearch.models import catalogue

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", help="these catalogue names only")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over every model, one timed batch per tower "
                                                           "and variant each (default 2; the best is kept)")
    ap.add_argument("--cold", type=int, default=3, help="cold query runs (default 3)")
    ap.add_argument("--prepare", action="store_true", help="write the stand-ins and pull them; measure nothing")
    ap.add_argument("--pulled-only", action="store_true", help="measure the models already pulled, pull none")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/models.md")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    names = args.only or [e.name for e in catalogue.CATALOGUE]
    unknown = [n for n in names if n not in STANDINS]
    if unknown:
        raise SystemExit(f"no stand-in for {', '.join(unknown)}")
    if args.prepare:
        for name in names:
            pulled(name)
        return
    if args.pulled_only:
        names = [n for n in names if (WORK / n / "home" / "models" / n / "manifest.json").is_file()]
        say(f"measuring the pulled models only: {', '.join(names)}")
    info = {**machine(), "instruction_set": instruction_set()}
    rows = rows_for(names, args.rounds, args.cold)
    print(table(rows, COLUMNS, title=f"\n{info['cpu']}, {info['cores']} cores, {info['instruction_set']}"))
    text = markdown(rows, info, args.rounds)
    print("\n" + text)
    if args.write_docs:
        write_docs(text)
    write_json(args.json, {"benchmark": "default_model", "machine": info, "rows": rows})


if __name__ == "__main__":
    main()
