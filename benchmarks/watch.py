"""What a live index costs: `mmsearch watch` idle over a quiet minute, and a burst of new files.

    python -m benchmarks.watch [--photos 200] [--quiet-s 60] [--burst 10000] [--json OUT]

Starts `mmsearch watch` on a folder of generated photos (toyclip), waits for its first run, then
measures the watch process's CPU time over `--quiet-s` seconds in which nothing changes (the idle
cost), then copies `--burst` small text files into the folder at once and counts the runs the watch
makes before all are searchable, and the seconds it takes. Ctrl-C ends the watch, as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchmarks.common import machine, photo_collection, say, write_json

ROOT = Path(__file__).resolve().parent.parent
TOYCLIP = ROOT / "tests" / "fixtures" / "toyclip"


def _documents(index: Path) -> int:
    out = subprocess.run([sys.executable, "-m", "mmsearch", "status", "--index", str(index), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)["counts"]["document"])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--quiet-s", type=float, default=60.0)
    ap.add_argument("--burst", type=int, default=10_000)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mmsearch-watch-bench-"))
    photos, index, source = work / "photos", work / "index", work / "source"
    photo_collection(photos, args.photos, 640, 480)
    source.mkdir()
    for i in range(args.burst):
        (source / f"note{i:05d}.txt").write_text(f"note number {i}: the ferry timetable, item{i}")
    env = {**os.environ, "MMSEARCH_HOME": str(work / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "watch", str(photos), "--index", str(index),
                             "--model", str(TOYCLIP), "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    events: list[dict] = []
    reader = threading.Thread(target=lambda: events.extend(json.loads(line) for line in iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        while not any(e["kind"] == "reconciled" for e in events):
            if proc.poll() is not None:
                raise SystemExit(f"the watch ended with {proc.returncode} before its first run")
            time.sleep(0.2)
        say(f"first run done ({args.photos} photos); measuring {args.quiet_s:g} s of quiet")
        watcher = psutil.Process(proc.pid)
        before = watcher.cpu_times()
        time.sleep(args.quiet_s)
        after = watcher.cpu_times()
        idle_cpu_s = (after.user - before.user) + (after.system - before.system)

        say(f"copying {args.burst} files at once")
        t0 = time.monotonic()
        shutil.copytree(source, photos / "copied")
        while _documents(index) < args.burst:
            time.sleep(1.0)
        burst_s = time.monotonic() - t0
        time.sleep(5.0)  # a last settle, so a straggling run is counted
        runs = [e for e in events if e["kind"] == "indexed"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(5)
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "machine": machine(),
        "photos": args.photos,
        "quiet_s": args.quiet_s,
        "idle_cpu_s": round(idle_cpu_s, 3),
        "idle_cpu_percent": round(100 * idle_cpu_s / args.quiet_s, 3),
        "burst_files": args.burst,
        "burst_runs": len(runs),
        "burst_paths_per_run": [e.get("paths") for e in runs],
        "burst_searchable_s": round(burst_s, 1),
        "stopped_cleanly": proc.returncode == 0,
    }
    print(json.dumps(result, indent=2))
    write_json(args.json_out, result)
    return result


if __name__ == "__main__":
    main()
