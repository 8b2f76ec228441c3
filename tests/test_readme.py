"""The README is for users: short, opening with what mmsearch is, its two development commands the
ones CI runs, and every link it gives pointing at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_short_and_opening_with_the_product():
    assert len(README.encode()) < 15_000
    first = README.split("```")[0]
    assert "photos and documents" in first  # what it is comes before any command


def test_the_development_commands_are_the_ones_ci_runs():
    block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    setup, tests = (line.split("#")[0].strip() for line in block.strip().splitlines()[:2])
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup == "bash scripts/setup.sh && bash scripts/try.sh" and "bash scripts/setup.sh" in ci
    assert tests == ".venv/bin/python -m pytest -q" and "python -m pytest -q" in ci


def test_every_link_and_picture_exists():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.startswith("http"):
                assert (doc.parent / target).exists() or (ROOT / target).exists(), (doc.name, target)


def test_no_merge_conflict_is_left_in_the_tracked_text():
    """A README or a doc with a merge's conflict markers reads as garbage to the person who opens it."""
    import subprocess

    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "*.md", "*.py", "*.js", "*.css", "*.html", "*.toml"],
                             capture_output=True, text=True)
    if tracked.returncode != 0:  # not a git checkout (an unpacked sdist): the docs folder alone
        files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")] + ["README.md"]
    else:
        files = tracked.stdout.split()
    marked = [name for name in files if (ROOT / name).is_file() and re.search(
        r"^(<{7}|>{7})( |$)|^={7}$", (ROOT / name).read_text(errors="replace"), re.M)]
    assert marked == []
