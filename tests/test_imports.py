"""The library is safe to import into an app: no global state changed, no environment read, no heavy
modules on a query's path."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = ("mmsearch", "mmsearch.api", "mmsearch.ingest", "mmsearch.search", "mmsearch.preprocess",
           "mmsearch.catalog", "mmsearch.vectors", "mmsearch.encoder", "mmsearch.runtime", "mmsearch.scanner",
           "mmsearch.textfiles", "mmsearch.chunking")


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_the_library_changes_no_global_state_and_reads_no_environment():
    code = f"""
import importlib, os, sys, warnings
import hnswlib, numpy, onnxruntime, tokenizers  # their own import-time filters are theirs
from PIL import Image

read = []

class Recording(type(os.environ)):
    def __getitem__(self, key):
        read.append(key)
        return super().__getitem__(key)

os.environ.__class__ = Recording
before = (Image.MAX_IMAGE_PIXELS, list(warnings.filters), sorted(Image.OPEN), sorted(Image.EXTENSION))
for name in {MODULES!r}:
    importlib.import_module(name)
after = (Image.MAX_IMAGE_PIXELS, list(warnings.filters), sorted(Image.OPEN), sorted(Image.EXTENSION))
assert before == after, "Pillow settings or warning filters changed"
ours = [k for k in read if k.startswith("MMSEARCH")]
assert not ours, ours
print("ok")
"""
    proc = run(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_scan_imports_neither_pillow_nor_pdfium():
    proc = run("import sys, mmsearch.scanner; print([m for m in ('PIL', 'pypdfium2', 'onnxruntime') if m in sys.modules])")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_onnx_and_the_hub_client_load_only_when_a_model_is_pulled():
    proc = run("import sys, mmsearch.cli, mmsearch.models, mmsearch.encoder, mmsearch.ingest; "
               "print([m for m in ('onnx', 'huggingface_hub', 'torch', 'transformers') if m in sys.modules])")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_ray_and_pyarrow_load_only_with_engine_ray():
    proc = run("import sys, mmsearch.cli, mmsearch.api, mmsearch.ingest, mmsearch.multi; "
               "print([m for m in ('ray', 'pyarrow', 'pandas') if m in sys.modules])")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_a_keyword_query_loads_no_model_nor_numpy(tmp_path, toyclip):
    """A words-only query needs no model and no vector: the console script answers it without loading
    numpy, hnswlib, onnxruntime, tokenizers or Pillow (each costs a cold query tens of milliseconds)."""
    from mmsearch import Index

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "walrus.txt").write_text("The walrus keeps its tusks clean in the cold northern sea.")
    (tmp_path / "docs" / "other.txt").write_text("A recipe for lemon cake with three eggs.")
    with Index(tmp_path / "index", model=toyclip, device="cpu") as idx:
        idx.index([tmp_path / "docs"])
    code = f"""
import json, sys
sys.argv = ["mmsearch", "query", "--index", {str(tmp_path / "index")!r}, "--mode", "keyword", "--json", "--", "northern sea"]
from mmsearch.__main__ import main
main()
heavy = ("numpy", "hnswlib", "onnxruntime", "tokenizers", "PIL", "typer")
print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)
"""
    proc = run(code)
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert [h["path"] for h in hits] == [str(tmp_path / "docs" / "walrus.txt")]
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []


def test_ffmpeg_loads_only_when_a_video_is_read():
    """PyAV (FFmpeg's libraries, ~35 MB) is imported when a video is probed or decoded, never by
    importing the library, the CLI, the index run or the search (a cold query's budget)."""
    proc = run("import sys, mmsearch.cli, mmsearch.api, mmsearch.ingest, mmsearch.search, mmsearch.video; "
               "print([m for m in ('av',) if m in sys.modules])")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
