"""The web app's speed: warm searches over HTTP on a 100,000-item index, thumbnails of 12 MP JPEGs on
one core, and the first page load with 50 results in a browser.

    python -m benchmarks.web [--n 100000] [--warm 200] [--photos 60] [--loads 5] [--json FILE]

Rows:
- `/api/search` warm: `mmsearch serve` in its own process over the 100k-item index of benchmarks.query
  (ViT-B/32-sized random bundle, 512-d vectors), a client on one kept-alive connection sending varied
  texts, after a few warm-up queries; p50/p95 of the round trip, beside the library's own search()
  in this process on the same index. Bar: p50 <= 30 ms.
- thumbnails: realistic 4000x3000 JPEGs (benchmarks.common.photo_collection) indexed with the toyclip
  model; the thumbnail code (`Thumbnails.get`) timed in this process pinned to one core: the first
  thumbnail of each photo (empty cache, file in the page cache), then the cached one. Bars: first
  <= 80 ms, cached <= 2 ms. The same through HTTP against a server pinned to one core.
- first page load: Debian's Chromium (Playwright) opens `/?q=...&type=image` on a fresh context (no
  browser cache) and the time from navigation start until all 50 thumbnails have loaded is read in
  the page; once with the server's thumbnail cache empty, once with it full.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np

from benchmarks.common import BENCH_DIR, machine, photo_collection, say, table, vitb32_bundle, write_json

ROOT = Path(__file__).resolve().parent.parent
TOYCLIP = ROOT / "tests" / "fixtures" / "toyclip"
TEXTS = ["red car", "a dog on the beach", "sunset over the mountains", "birthday cake with candles",
         "an old wooden boat", "two cats sleeping on a sofa", "snow in the city at night", "a bowl of fruit"]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def isa() -> str:
    from mmsearch.int8_check import isa_summary

    return isa_summary()


class Served:
    """`mmsearch serve` in a process of its own (optionally pinned to some cores)."""

    def __init__(self, index: Path, cores: set[int] | None = None):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--index", str(index), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if " at http" not in line:
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {line}{self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = line.split(" at ")[1].split(" ")[0]
        u = urlsplit(self.url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=120)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {body[:300]!r}")
    return body


def pct(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "n": len(ms)}


# -- warm searches on 100k items -------------------------------------------------------------------


def search_rows(n: int, warm: int) -> list[dict]:
    from benchmarks.query import build_index

    index = build_index(BENCH_DIR / f"query-index-{n}", n, vitb32_bundle())
    rows = []
    served = Served(index)
    try:
        conn = served.connection()
        for text in TEXTS:  # the text tower's session, the vectors mapped, the graph loaded
            get(conn, "/api/search?" + urlencode({"q": text}))
        for name, extra in (("hybrid (the default)", {}), ("type=image", {"type": "image"}),
                            ("k=50", {"k": 50})):
            times = []
            for i in range(warm):
                q = TEXTS[i % len(TEXTS)] + ("" if i < len(TEXTS) else f" {i}")
                t = time.perf_counter()
                body = get(conn, "/api/search?" + urlencode({"q": q, **extra}))
                times.append((time.perf_counter() - t) * 1000)
                assert body.startswith(b"[{")
            rows.append({"what": f"GET /api/search warm, {name}, {n:,} items", **pct(times)})
        conn.close()
    finally:
        served.close()
    from mmsearch import Index

    with Index(index) as idx:
        for text in TEXTS:
            idx.search(text)
        times = []
        for i in range(warm):
            t = time.perf_counter()
            idx.search(TEXTS[i % len(TEXTS)] + f" {i}")
            times.append((time.perf_counter() - t) * 1000)
    rows.append({"what": f"library Index.search warm, hybrid, {n:,} items (no HTTP)", **pct(times)})
    return rows


# -- thumbnails of 12 MP JPEGs ---------------------------------------------------------------------


def photo_index(count: int) -> tuple[Path, list[Path]]:
    from mmsearch import Index

    photos = photo_collection(BENCH_DIR / "web" / "photos", count, 4000, 3000)
    folder = BENCH_DIR / "web" / "index"
    with Index(folder, model=TOYCLIP) as idx:
        report = idx.index([photos[0].parent])
        assert not report.errors, report.errors
    return folder, photos


def thumbnail_rows(folder: Path, photos: list[Path]) -> list[dict]:
    from mmsearch import Index
    from mmsearch.web.thumbs import Thumbnails

    rows = []
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})  # one core
    try:
        with Index(folder, readonly=True) as idx:
            by_path = {it.fs_path: it for it in map(idx.catalog.item_file, idx.catalog.item_ids_matching(kind="image"))
                       if it is not None}
            items = [by_path[str(p)] for p in photos]
        cache = BENCH_DIR / "web" / "thumbnail-timing"
        for size in ("small", "large"):
            shutil.rmtree(cache, ignore_errors=True)
            thumbs = Thumbnails(cache)
            thumbs.get(items[0], size)  # imports and Pillow's first JPEG
            shutil.rmtree(cache, ignore_errors=True)
            thumbs = Thumbnails(cache)
            first, cached = [], []
            for it in items:
                t = time.perf_counter()
                thumbs.get(it, size)
                first.append((time.perf_counter() - t) * 1000)
            for _ in range(5):
                for it in items:
                    t = time.perf_counter()
                    thumbs.get(it, size)
                    cached.append((time.perf_counter() - t) * 1000)
            rows.append({"what": f"first thumbnail ({size}), 4000x3000 JPEG, one core", **pct(first)})
            rows.append({"what": f"cached thumbnail ({size}), one core", **pct(cached)})
    finally:
        os.sched_setaffinity(0, before)
    shutil.rmtree(folder / "thumbs", ignore_errors=True)
    served = Served(folder, cores={min(before)})
    try:
        conn = served.connection()
        get(conn, "/api/status")
        ids = [it.item_id for it in items]
        first, cached = [], []
        for i in ids:
            t = time.perf_counter()
            get(conn, f"/api/thumb/{i}")
            first.append((time.perf_counter() - t) * 1000)
        for _ in range(5):
            for i in ids:
                t = time.perf_counter()
                get(conn, f"/api/thumb/{i}")
                cached.append((time.perf_counter() - t) * 1000)
        rows.append({"what": "GET /api/thumb first (small), server on one core", **pct(first)})
        rows.append({"what": "GET /api/thumb cached (small), server on one core", **pct(cached)})
        conn.close()
    finally:
        served.close()
    return rows


# -- first page load in the browser ----------------------------------------------------------------


def page_rows(folder: Path, loads: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    rows = []
    served = Served(folder)
    try:
        url = served.url + "?" + urlencode({"q": "a photo", "type": "image"})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            for cache in ("empty", "full"):
                times, marks = [], []
                for _ in range(loads):
                    if cache == "empty":
                        shutil.rmtree(folder / "thumbs", ignore_errors=True)
                    context = browser.new_context(viewport={"width": 1280, "height": 860})  # no browser cache
                    page = context.new_page()
                    page.goto(url)
                    page.wait_for_function("""() => {
                        const imgs = [...document.querySelectorAll('#grid img')];
                        if (imgs.length < 50 || !imgs.every((i) => i.complete && i.naturalWidth > 0)) return false;
                        window.__loaded = window.__loaded || performance.now();
                        return true;
                    }""", timeout=60_000)
                    times.append(page.evaluate("() => window.__loaded"))
                    # Where the time went: the page's own files, then the search's answer.
                    marks.append(page.evaluate("""() => [
                        performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
                        performance.getEntriesByType('resource').find((e) => e.name.includes('/api/search')).responseEnd]"""))
                    assert page.locator("#grid img").count() == 50
                    context.close()
                dom, answered = (statistics.median(m[i] for m in marks) for i in (0, 1))
                rows.append({"what": f"first page load, 50 photo results, thumbnail cache {cache} (navigation start "
                                     "to every thumbnail loaded)", **pct(times),
                             "detail": f"page ready {dom:.0f} ms, search answered {answered:.0f} ms"})
            browser.close()
    finally:
        served.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="items in the search index")
    parser.add_argument("--warm", type=int, default=200, help="warm searches per series")
    parser.add_argument("--photos", type=int, default=60, help="4000x3000 photos for thumbnails and the page")
    parser.add_argument("--loads", type=int, default=5, help="page loads per series")
    parser.add_argument("--skip", action="append", default=[], choices=["search", "thumbnails", "page"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    info = machine()
    info["isa"] = isa()
    rows: list[dict] = []
    if "search" not in args.skip:
        say("warm searches over HTTP")
        rows += search_rows(args.n, args.warm)
    if "thumbnails" not in args.skip or "page" not in args.skip:
        folder, photos = photo_index(args.photos)
        if "thumbnails" not in args.skip:
            say("thumbnails")
            rows += thumbnail_rows(folder, photos[:20])
        if "page" not in args.skip:
            say("first page loads in Chromium")
            rows += page_rows(folder, args.loads)
    print(table(rows, ["what", "p50_ms", "p95_ms", "n", "detail"],
                title=f"\nmmsearch serve ({info['cpu']}, {info['cores']} cores, {info['isa']}, load average at start "
                      f"{info.get('load_avg_at_start')})"))
    write_json(args.json, {"benchmark": "web", "machine": info, "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
