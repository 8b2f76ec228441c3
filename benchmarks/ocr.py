"""OCR: how well words in pictures are found, and what reading them costs beside a whole index run.

    python -m benchmarks.ocr quality [--n 300] [--seed 2027] [--pages 0] [--model tests/fixtures/toyclip]
                                     [--work DIR] [--json FILE] [--check]
    python -m benchmarks.ocr speed [--n 24] [--sets photo:4000x3000,any:1920x1080] [--device cpu|cuda] [--json FILE]

quality
  The set (benchmarks/textpictures.py): --n pictures with words rendered in the system's fonts (1 to
  3 words each, no word in two pictures) at sizes from 3% to 14% of the short side, in contrasting
  colours, turned up to 15 degrees, over realistic photos, noise, gradients and flat colour, JPEG and
  PNG; and --n pictures of the same kinds without words. They are indexed by the real command
  (`mmsearch index SET --json`; the model does not matter to keyword queries: the committed toyclip by
  default). Every rendered word is then a keyword query (`Index.search(word, mode="keyword", k=3)`,
  what `mmsearch query WORD --mode keyword -k 3` calls): its picture must be among the 3.
  Bars: >= 90% of words bring their picture back in the top 3; >= 95% of the pictures without words
  get no words. Misses are broken down by size, background and turn.

  Real pages: every page of the two Debian manuals (benchmarks/real_corpus.py; --pages N: the first N
  of each) rendered by pypdfium2 at 96 dpi and saved as PNG (screenshots of a document), and the same
  pages saved as image-only PDFs, one per manual (scans, at 150 dpi), each kind in an index of its own.
  For each page, up to 8 words of 6 letters or more that its text layer holds and no other page's:
  the screenshot, or the scan with that page number, must be among the 3 first keyword hits.
  Reported without a bar.

speed
  Pictures with and without words (the same generator), --n of each, for each of --sets: a background
  kind (`photo`: generated photo-like scenes, benchmarks.common.realistic_photo; `any`: the quality set's mix of photos, noise, gradients and flat
  colour) and a size. Each set is indexed into a fresh index in-process (`Index.index`, what the command calls) with the
  ViT-B/32-sized bundle (int8 on the CPU, fp16 on CUDA). A run with --no-ocr (Index.index(ocr=False))
  of the same pictures is timed beside it: ocr_cost_s, the difference, is what reading words costs the
  run (the glance happens in the images step, as each picture is decoded). The words step is timed
  from the progress events the run sends: images/s of that step, for pictures with words and without,
  and its share of the whole run; ms_per_picture, the step's time less the models' load (once a run,
  reported apart) per picture it read, and read_in_full, how many pictures went past the glance and its
  boxes' check to the full read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_DIR, machine, say, table, write_json

ROOT = Path(__file__).resolve().parent.parent
TOYCLIP = ROOT / "tests" / "fixtures" / "toyclip"
BARS = {"words_top3": 0.90, "no_text_clean": 0.95}


def _isa() -> str:
    from mmsearch.int8_check import isa_summary

    return isa_summary()


def _index_command(folder: Path, index: Path, model: Path, device: str = "cpu") -> dict[str, Any]:
    from benchmarks.quality import mmsearch_command

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(mmsearch_command() + ["index", str(folder), "--index", str(index), "--model", str(model),
                                               "--device", device, "--json"],
                         capture_output=True, text=True, timeout=7200, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"mmsearch index failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout)


# -- quality -----------------------------------------------------------------------------------------


def _size_bucket(font_px: int, size: tuple[int, int]) -> str:
    share = font_px / min(size)
    return "3-6%" if share < 0.06 else "6-10%" if share < 0.10 else "10-14%"


def _turn_bucket(angle: float) -> str:
    a = abs(angle)
    return "0-5" if a < 5 else "5-10" if a < 10 else "10-15"


def quality(n: int, seed: int, model: Path, work: Path, pages: int, log=say) -> dict[str, Any]:
    from benchmarks.textpictures import system_fonts, write_set
    from mmsearch import Index

    folder = work / "set"
    shutil.rmtree(folder, ignore_errors=True)
    log(f"drawing {n} pictures with words and {n} without ({len(system_fonts())} fonts) in {folder}")
    with_text = write_set(folder, n, seed=seed, with_text=True)
    without = write_set(folder, n, seed=seed + 1, with_text=False)
    index = work / "index-set"
    shutil.rmtree(index, ignore_errors=True)
    t = time.monotonic()
    summary = _index_command(folder, index, model)
    log(f"indexed in {time.monotonic() - t:.1f}s: read {summary['ocr_read']}, {summary['ocr_with_words']} with words")
    words = hits = 0
    by: dict[str, dict[str, list[int]]] = {k: defaultdict(lambda: [0, 0]) for k in ("size", "background", "turn")}
    misses = []
    with Index(index, readonly=True) as idx:
        for p in with_text:
            target = str(folder / p.name)
            for w in p.words:
                found = target in [h.path for h in idx.search(w, mode="keyword", k=3)]
                words += 1
                hits += found
                for key, value in (("size", _size_bucket(p.font_px, p.size)), ("background", p.background),
                                   ("turn", _turn_bucket(p.angle))):
                    by[key][value][0] += found
                    by[key][value][1] += 1
                if not found:
                    misses.append({"picture": p.name, "word": w, "font": p.font, "font_px": p.font_px, "angle": p.angle,
                                   "background": p.background, "size": p.size,
                                   "read": idx.catalog.ocr_text(idx.catalog.file_by_path(target).id)})  # type: ignore[union-attr]
        wrong = []
        for p in without:
            row = idx.catalog.file_by_path(str(folder / p.name))
            assert row is not None
            text = idx.catalog.ocr_text(row.id)
            if text is not None:
                wrong.append({"picture": p.name, "background": p.background, "read": text})
    out: dict[str, Any] = {
        "pictures_with_words": n, "pictures_without": n, "words": words,
        "words_top3": round(hits / max(1, words), 4),
        "no_text_clean": round(1 - len(wrong) / max(1, n), 4),
        "by": {k: {v: {"found": f, "of": t, "share": round(f / t, 3)} for v, (f, t) in sorted(d.items())}
               for k, d in by.items()},
        "misses": misses, "no_text_read_as_words": wrong, "index_run": {k: summary[k] for k in
                                                                         ("seconds", "ocr_read", "ocr_with_words")},
    }
    out["real_pages"] = real_pages(work, model, pages, log)
    return out


def _page_words(texts: dict[tuple[str, int], str], per_page: int = 8) -> dict[tuple[str, int], list[str]]:
    """Per page: up to `per_page` words of 6+ letters its text holds and no other page's, in a fixed order."""
    import hashlib

    seen: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for key, text in texts.items():
        for w in re.findall(r"\b[A-Za-z]{6,}\b", text):
            seen[w.lower()].add(key)
    out = {}
    for key, text in texts.items():
        own = sorted({w.lower() for w in re.findall(r"\b[A-Za-z]{6,}\b", text) if seen[w.lower()] == {key}},
                     key=lambda w: hashlib.sha256(w.encode()).hexdigest())
        out[key] = own[:per_page]
    return out


def real_pages(work: Path, model: Path, limit: int, log=say) -> dict[str, Any]:
    from benchmarks.real_corpus import PDFS, pdf
    from mmsearch import Index
    from mmsearch.textfiles import extract_pages, render_page

    shots, scans = work / "screenshots", work / "scans"
    for d in (shots, scans):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    texts: dict[tuple[str, int], str] = {}
    for name in PDFS:
        source = pdf(name)
        stem = Path(name).stem
        pages = [p for p in extract_pages(source) if p.number is not None]
        if limit:
            pages = pages[:limit]
        scanned = []
        for page in pages:
            assert page.number is not None
            texts[(stem, page.number)] = page.text
            # 96 dpi: US Letter is 816 x 1056 pixels, a screen's view of the page.
            render_page(source, page.number, 1056).save(shots / f"{stem}-p{page.number:02d}.png")
            scanned.append(render_page(source, page.number, 1650))  # 150 dpi
        scanned[0].save(scans / f"{stem}.pdf", save_all=True, append_images=scanned[1:], resolution=150)
    wanted = _page_words(texts)
    out: dict[str, Any] = {"pages": len(texts), "words": sum(len(v) for v in wanted.values())}
    for kind, folder in (("screenshots", shots), ("scans", scans)):
        index = work / f"index-{kind}"
        shutil.rmtree(index, ignore_errors=True)
        t = time.monotonic()
        summary = _index_command(folder, index, model)
        log(f"{kind}: indexed in {time.monotonic() - t:.1f}s, read {summary['ocr_read']}")
        found = total = 0
        with Index(index, readonly=True) as idx:
            for (stem, number), words in wanted.items():
                for w in words:
                    hits = idx.search(w, mode="keyword", k=3)
                    if kind == "screenshots":
                        ok = str(folder / f"{stem}-p{number:02d}.png") in [h.path for h in hits]
                    else:
                        ok = (str(folder / f"{stem}.pdf"), number) in [(h.path, h.page) for h in hits]
                    found += ok
                    total += 1
        out[kind] = {"words_top3": round(found / max(1, total), 4), "found": found, "of": total,
                     "index_seconds": summary["seconds"], "read": summary["ocr_read"]}
    return out


# -- speed -------------------------------------------------------------------------------------------


class _Phases:
    """When each phase of a run began, from its progress events."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: dict[str, float] = {}
        self.total: dict[str, int] = {}

    def __call__(self, ev: Any) -> None:
        self.first.setdefault(ev.phase, time.perf_counter())
        self.total[ev.phase] = ev.total


def _timed_run(folder: Path, index: Path, bundle: Path, device: str, ocr: bool, load_s: float = 0.0) -> dict[str, Any]:
    """One run into a fresh index, timed by phase. `load_s`: what loading the OCR models costs (once a
    run), taken off the phase's time for the per-picture figure."""
    from mmsearch import Index

    shutil.rmtree(index, ignore_errors=True)
    phases = _Phases()
    steps: dict[str, int] = defaultdict(int)
    with Index(index, model=bundle, device=device) as idx:
        report = idx.index([folder], progress=phases, ocr=ocr, observe=lambda step: steps.__setitem__(step, steps[step] + 1))
    end = time.perf_counter()
    total = end - phases.start
    out: dict[str, Any] = {"total_s": round(total, 2), "pictures": report.added, "device": report.device}
    out.update(read=report.ocr_read, with_words=report.ocr_with_words, ocr_device=report.ocr_device)
    if "reading text" in phases.first:  # the words step ran: the pictures the glance let through
        ocr_s = end - phases.first["reading text"]
        looked = phases.total.get("reading text", 0)
        out.update(ocr_s=round(ocr_s, 2), ocr_share=round(ocr_s / total, 3), words_step_pictures=looked,
                   ocr_images_per_s=round(looked / max(ocr_s, 1e-9), 2),
                   # the "ocr" step: once as the step starts, then once per picture read in full
                   read_in_full=max(0, steps["ocr"] - 1),
                   ms_per_picture=round(1000 * max(0.0, ocr_s - load_s) / max(1, looked), 1))
    return out


def speed(n: int, sets: list[tuple[str, tuple[int, int]]], device: str, work: Path, log=say) -> dict[str, Any]:
    from benchmarks.common import vitb32_bundle
    from benchmarks.textpictures import write_set

    from mmsearch.ocr import TextReader

    bundle = vitb32_bundle()
    t = time.perf_counter()
    TextReader(device)  # the models' load, once per run: apart from the per-picture figure
    load_s = time.perf_counter() - t
    log(f"OCR models loaded in {load_s:.2f}s")
    rows = []
    for background, (w, h) in sets:
        for with_text in (True, False):
            kind = "with words" if with_text else "without words"
            folder = BENCH_DIR / "ocr-speed" / f"{background}-{w}x{h}-{'text' if with_text else 'plain'}-{n}"
            if not folder.exists():
                log(f"drawing {n} pictures {kind} of {w}x{h} in {folder}")
                write_set(folder.with_suffix(".tmp"), n, seed=7000 + w + with_text, with_text=with_text, size=(w, h),
                          background=None if background == "any" else background, jpeg_only=True)
                folder.with_suffix(".tmp").rename(folder)
            plain = _timed_run(folder, work / "index-speed", bundle, device, ocr=False)
            full = _timed_run(folder, work / "index-speed", bundle, device, ocr=True, load_s=load_s)
            row = {"set": f"{background} {w}x{h}", "pictures": kind, "n": n, "index_no_ocr_s": plain["total_s"],
                   "index_s": full["total_s"], "ocr_cost_s": round(full["total_s"] - plain["total_s"], 2),
                   **{k: full.get(k) for k in ("ocr_s", "ocr_share", "ocr_images_per_s", "read", "with_words",
                                               "words_step_pictures", "device", "ocr_device", "read_in_full",
                                               "ms_per_picture")}}
            log(json.dumps(row))
            rows.append(row)
    return {"rows": rows, "load_s": round(load_s, 2),
            "model": "ViT-B/32-sized bundle (random weights), " + ("int8" if device == "cpu" else "fp16")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--n", type=int, default=300)
    q.add_argument("--seed", type=int, default=2027)
    q.add_argument("--pages", type=int, default=0, help="the first N pages of each manual (0: all)")
    q.add_argument("--model", type=Path, default=TOYCLIP)
    q.add_argument("--check", action="store_true", help="exit 1 when a bar is missed")
    s = sub.add_parser("speed")
    s.add_argument("--n", type=int, default=24)
    s.add_argument("--sets", default="photo:4000x3000,any:1920x1080")
    s.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    for p in (q, s):
        p.add_argument("--work", type=Path, default=BENCH_DIR / "ocr")
        p.add_argument("--json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    info = {**machine(), "isa": _isa()}
    say(f"machine: {info}")
    if args.what == "quality":
        result = quality(args.n, args.seed, args.model, args.work, args.pages)
        print(table([{"set": "drawn: words in top 3", "value": result["words_top3"], "bar": BARS["words_top3"]},
                     {"set": "drawn: no-text pictures left without words", "value": result["no_text_clean"],
                      "bar": BARS["no_text_clean"]},
                     {"set": "real pages, screenshots (96 dpi PNG): words in top 3",
                      "value": result["real_pages"]["screenshots"]["words_top3"]},
                     {"set": "real pages, scans (150 dpi image-only PDF): words in top 3, right page",
                      "value": result["real_pages"]["scans"]["words_top3"]}],
                    ["set", "value", "bar"], title=f"OCR quality ({args.n} + {args.n} pictures, "
                    f"{result['words']} words; {result['real_pages']['pages']} pages, "
                    f"{result['real_pages']['words']} words)", formats={"value": ".3f"}))
        for key, d in result["by"].items():
            print(table([{key: k, **v} for k, v in d.items()], [key, "found", "of", "share"]))
        write_json(args.json, {"machine": info, "args": vars(args) | {"work": str(args.work)}, "result": result})
        if args.check and (result["words_top3"] < BARS["words_top3"] or result["no_text_clean"] < BARS["no_text_clean"]):
            sys.exit(1)
    else:
        sets = [(b, tuple(int(v) for v in size.split("x"))) for b, size in (x.split(":") for x in args.sets.split(","))]
        result = speed(args.n, sets, args.device, args.work)  # type: ignore[arg-type]
        print(table(result["rows"], ["set", "pictures", "n", "ocr_cost_s", "index_s", "index_no_ocr_s",
                                     "ocr_images_per_s", "ms_per_picture", "read_in_full", "ocr_s", "ocr_share",
                                     "with_words", "device"],
                    title=f"OCR phase speed ({info['cpu']}, {info['cores']} cores, {info['isa']}; {result['model']}; "
                          f"OCR models loaded once a run in {result['load_s']} s, not in ms_per_picture)"))
        write_json(args.json, {"machine": info, "args": vars(args) | {"work": str(args.work)}, "result": result})


if __name__ == "__main__":
    main()
