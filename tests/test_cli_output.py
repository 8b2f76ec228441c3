"""What the CLI prints, held to golden files (tests/golden/*.txt): the user's file names come out as
they are, never read as markup, and piped output is not wrapped. After a deliberate change to the
output, `pytest tests/test_cli_output.py --update-golden` rewrites the files; review the diff.

Paths are written relative to a `$TMP` placeholder, times and sizes masked, column padding folded (it
follows the length of the temporary folder's name); the query table uses
keyword mode, whose scores (BM25) do not depend on the CPU's arithmetic."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine_helpers import picture

GOLDEN = Path(__file__).parent / "golden"
MMSEARCH = shutil.which("mmsearch") or os.path.join(os.path.dirname(sys.executable), "mmsearch")
LONG = "a folder whose name is long enough to pass eighty columns on its own, as real ones do"


def run(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80"}  # as a narrow terminal would say; the output is piped anyway
    return subprocess.run([MMSEARCH, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def world(tmp_path_factory, toyclip):
    tmp = tmp_path_factory.mktemp("golden")
    photos = tmp / "photos"
    (photos / "a[/x]b").mkdir(parents=True)
    (photos / LONG).mkdir()
    picture(1).save(photos / "[red]sunset.png")
    picture(2).save(photos / LONG / "boat.png")
    (photos / "a[/x]b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    (photos / "[bold]notes.txt").write_text("The harbour at dawn: fishing boats along the quay.\n")
    (photos / LONG / "harbour.md").write_text("# Harbour\n\nGulls circle over the harbour while boats come in.\n")
    return tmp, photos, toyclip


def normalise(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "$TMP")
    text = re.sub(r"\(\d+\.\ds(, cpu)?\)", r"(<seconds>\1)", text)
    text = re.sub(r"\(\d+\.\d MB\)", "(<size>)", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "<time>", text)
    return re.sub(r"(?<=\S)  +", "  ", text)  # column padding follows the temporary folder's name


def check(name: str, proc: subprocess.CompletedProcess, tmp: Path, request) -> None:
    got = f"exit {proc.returncode}\n--- stdout\n{normalise(proc.stdout, tmp)}--- stderr\n{normalise(proc.stderr, tmp)}"
    path = GOLDEN / f"{name}.txt"
    if request.config.getoption("--update-golden"):
        path.write_text(got)
    assert path.exists(), f"{path} is missing: run pytest with --update-golden once and review it"
    assert got == path.read_text(), f"{name}: the CLI's output changed (see {path})"


def test_golden_outputs(world, request):
    tmp, photos, model = world
    index = tmp / "index"
    steps = [
        ("index", ["index", photos, "--index", index, "--model", model, "--device", "cpu", "--variant", "fp32"]),
        ("index-again", ["index", photos, "--index", index]),
        ("query-keyword", ["query", "harbour boats", "--index", index, "--mode", "keyword"]),
        ("query-none", ["query", "zebra", "--index", index, "--mode", "keyword"]),
        ("status", ["status", "--index", index]),
        ("similar-in-error", ["similar", photos / "a[/x]b" / "broken.jpg", "--index", index]),
        ("bad-device", ["query", "boats", "--index", index, "--device", "gpu"]),
        ("bad-k", ["query", "boats", "--index", index, "-k", "0"]),
        ("blank-query", ["query", "  ", "--index", index]),
        ("bad-date", ["query", "boats", "--index", index, "--after", "last tuesday"]),
        ("missing-path", ["index", tmp / "nowhere", "--index", index]),
    ]
    for name, args in steps:
        check(name, run(*args), tmp, request)


def test_markup_in_names_is_printed_as_is(world):
    """The golden files hold this too; said here in words, for whoever updates them."""
    tmp, photos, model = world
    index = tmp / "index-plain"
    proc = run("index", photos, "--index", index, "--model", model, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert f"{photos / 'a[/x]b' / 'broken.jpg'}: " in proc.stdout  # `[/x]` once made rich raise after the run
    status = run("status", "--index", index).stdout
    assert "a[/x]b" in status
    hits = run("query", "sunset", "--index", index, "--type", "image", "-k", "5", "--mode", "vector").stdout
    assert "[red]sunset.png" in hits  # a `[red]` segment once vanished
    assert any(len(line) > 80 and LONG in line for line in hits.splitlines())  # one line per hit, not wrapped
