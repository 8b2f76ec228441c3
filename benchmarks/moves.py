"""The plan of an index run after a reorganisation: every file moved to a new name, the moves found
by content hash. Times `mmsearch.scanner.plan` alone (in memory, no disk), this checkout and
optionally another commit side by side.

    python -m benchmarks.moves [--counts 16000,100000] [--against GIT_REF]

With --against, GIT_REF's scanner.py runs on the same input in the same process, for the counts up to
--against-max (a quadratic plan at 100k moves would take minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_scanner(ref: str | None):
    if ref is None:
        from mmsearch import scanner

        return scanner
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:mmsearch/scanner.py"], capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "scanner_ref.py"
    # The ref's relative imports, pointed at today's modules (only suffix tables and FileRow are used).
    path.write_text(source.replace("from .catalog", "from mmsearch.catalog")
                    .replace("from .documents import DOCUMENT_SUFFIXES", "from mmsearch.media import DOCUMENT_SUFFIXES")
                    .replace("from .preprocess import IMAGE_SUFFIXES", "from mmsearch.media import image_suffixes")
                    .replace("IMAGE_SUFFIXES", "image_suffixes()").replace("import image_suffixes()", "import image_suffixes"))
    spec = importlib.util.spec_from_file_location("scanner_ref", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["scanner_ref"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def seconds(scanner, n: int, seed: int = 0) -> float:
    from mmsearch.catalog import FileRow

    rows = [FileRow(i + 1, f"/r/old/{i}.jpg", f"/r/old/{i}.jpg", 1000 + i % 5000, 1, f"h{i}", "image", "indexed")
            for i in range(n)]
    order = list(range(n))
    random.Random(seed).shuffle(order)
    found = [scanner.FoundFile(f"/r/new/{i}.jpg", 1000 + i % 5000, 2, "image") for i in order]
    digest = {f"/r/new/{i}.jpg": f"h{i}" for i in range(n)}
    t0 = time.perf_counter()
    p = scanner.plan(iter(found), lambda paths: {}, lambda: iter(rows), digest.get)
    elapsed = time.perf_counter() - t0
    assert len(p.moved) == n and not p.missing
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="16000,100000")
    ap.add_argument("--against", default=None, help="a git commit to compare with")
    ap.add_argument("--against-max", type=int, default=16000)
    args = ap.parse_args()
    now = load_scanner(None)
    ref = load_scanner(args.against) if args.against else None
    print(f"{'moves':>8}  {'this checkout':>14}" + (f"  {args.against:>14}  ratio" if ref else ""))
    for n in (int(c) for c in args.counts.split(",")):
        a = seconds(now, n)
        line = f"{n:>8}  {a:>13.2f}s"
        if ref is not None and n <= args.against_max:
            b = seconds(ref, n)
            line += f"  {b:>13.2f}s  {b / a:5.0f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
