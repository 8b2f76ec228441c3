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
