"""Crashes: `mmsearch index` SIGKILLed at every phase, restarted each time, ends equal to a clean run.

The harness is benchmarks/killtest.py (a larger run: `python -m benchmarks.killtest`); here 20 kills
over 200 pictures (6 with words), 6 text files and a scanned PDF, aimed in turn at scanning, encoding,
reading words (OCR), an open catalog transaction and the save of the vector files (the index
command's hidden --trace-steps and --hold-steps).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mmsearch import ocr


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.killtest import run_killtest  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(not ocr.installed(), reason=f"the OCR phase is killed too: {ocr.INSTALL_HINT}")
def test_sigkill_at_every_phase_then_resume_equals_a_clean_run(tmp_path, bundle):
    result = run_killtest(tmp_path, bundle, n_images=200, n_docs=6, kills=20, seed=1)
    print({k: v for k, v in result.items() if k != "final_run"})
    assert result["problems"] == []
    assert result["kills"] >= 20
    # Kills landed in every phase: scanning, encoding, reading words, inside a catalog transaction,
    # inside an ANN save.
    assert all(result["landed"].get(p, 0) >= 3 for p in ("scan", "encode", "ocr", "commit", "save")), result["landed"]
    assert result["pictures_with_words"] == 6  # the words were read (and compared with the clean run's)
    # Every killed run is recorded as interrupted by the run after it.
    assert result["runs"].get("interrupted", 0) == result["kills"]
    # Nothing committed before a kill was encoded again: checked in compare() by item ids running
    # 1..N without gaps (AUTOINCREMENT ids; an uncommitted transaction takes none).
