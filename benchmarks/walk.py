"""The cost of what a walk leaves out: `scanner.walk` over a made tree of folders and files (no catalog,
no model), with the default excludes off and on, with a `.mmsearchignore` at the root, and optionally
another commit's walk on the same tree, in alternating rounds.

    python -m benchmarks.walk [--folders 2000] [--files 25] [--rounds 5] [--against GIT_REF]

The tree: `folders` folders of `files` files each (a third pictures' and documents' suffixes, the rest
types mmsearch does not read), one folder in fifty a `node_modules` with as many files again. Times
are the median of the rounds, warm (the tree in the page cache), with the ratio to the first mode.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IGNORE = "drafts/\n*.tmp\nsecret*\n!secret-keep.txt\n/top-only.txt\n"


def load_scanner(ref: str | None) -> Any:
    if ref is None:
        from mmsearch import scanner

        return scanner
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:mmsearch/scanner.py"], capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "scanner_ref.py"
    path.write_text(source.replace("from .catalog", "from mmsearch.catalog").replace("from .media", "from mmsearch.media")
                    .replace("from . import ignore", "from mmsearch import ignore"))
    spec = importlib.util.spec_from_file_location("scanner_ref", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["scanner_ref"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def make_tree(root: Path, folders: int, files: int) -> int:
    suffixes = [".jpg", ".txt", ".pdf", ".key", ".pages", ".docx", ".zip", ".csv", ""]
    n = 0
    for i in range(folders):
        folder = root / f"d{i // 100}" / f"f{i}"
        if i % 50 == 7:
            folder = folder / "node_modules" / "pkg"
        folder.mkdir(parents=True)
        for j in range(files):
            (folder / f"file{j}{suffixes[j % len(suffixes)]}").write_bytes(b"x")
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folders", type=int, default=2000)
    ap.add_argument("--files", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--against", help="a git ref whose scanner.walk runs on the same tree")
    args = ap.parse_args()
    scanner = load_scanner(None)
    with tempfile.TemporaryDirectory() as tmp:
        plain, ignored = Path(tmp) / "plain", Path(tmp) / "ignored"
        total = make_tree(plain, args.folders, args.files)
        make_tree(ignored, args.folders, args.files)
        (ignored / ".mmsearchignore").write_text(IGNORE)
        modes: dict[str, Any] = {}
        if args.against:
            old = load_scanner(args.against)
            modes[f"{args.against} walk"] = lambda: sum(1 for _ in old.walk(str(plain)))
        modes["default excludes off"] = lambda: sum(1 for _ in scanner.walk(str(plain), default_excludes=False))
        modes["default excludes on"] = lambda: sum(1 for _ in scanner.walk(str(plain)))
        modes["on, counting not read"] = lambda: sum(1 for _ in scanner.walk(str(plain), not_read=Counter()))
        modes["on, a .mmsearchignore"] = lambda: sum(1 for _ in scanner.walk(str(ignored), not_read=Counter()))
        times: dict[str, list[float]] = {m: [] for m in modes}
        found: dict[str, int] = {}
        for fn in modes.values():
            fn()  # warm the page cache
        for _ in range(args.rounds):
            for name, fn in modes.items():
                t = time.perf_counter()
                found[name] = fn()
                times[name].append(time.perf_counter() - t)
    first = statistics.median(next(iter(times.values())))
    print(f"{total} files in {args.folders} folders, {args.rounds} rounds, median")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:28s} {med * 1000:8.1f} ms  {med / first:5.2f}x  ({found[name]} files found)")


if __name__ == "__main__":
    main()
