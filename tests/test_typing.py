"""The runtime package ships py.typed: its annotations must hold (mypy, as configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mmsearch_type_checks(tmp_path):
    pytest.importorskip("mypy", reason="mypy comes with the dev extra (pip install -e '.[dev]')")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
