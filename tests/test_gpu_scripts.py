"""scripts/gpu/ brings to the GPU machine what it lacks: every dependency of the runtime, the web app,
OCR and the test tools is either on that machine already or fetched by prepare.sh, and run.sh imports
nothing the project no longer depends on. (The machine reaches no package index: a gap found there
costs a whole try.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREPARE = (ROOT / "scripts" / "gpu" / "prepare.sh").read_text()
RUN = (ROOT / "scripts" / "gpu" / "run.sh").read_text()


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def _listed(variable: str) -> set[str]:
    body = re.search(rf'^{variable}="([^"]*)"', PREPARE, re.M | re.S)
    assert body, variable
    return set(body.group(1).lower().replace("_", "-").split())


def test_every_dependency_is_on_the_machine_or_fetched():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    needed = _names(project["dependencies"]) | _names(extras["web"]) | _names(extras["ocr"]) | _names(extras["dev"])
    # hnswlib: built there from its sdist; import-linter: the architecture test checks the same layers
    # over the source without it (and CPU CI runs it); PySide6: the desktop example's test, a CPU one.
    needed -= {"hnswlib", "build", "setuptools", "mypy", "playwright", "import-linter", "pyside6-essentials"}
    there = _listed("machine_has") | _listed("fetch")
    assert needed <= there, f"neither on the GPU machine nor fetched: {sorted(needed - there)}"


def test_run_imports_only_what_the_project_uses():
    line = RUN[RUN.index('python3 -c "import onnxruntime'):]
    imported = set(re.findall(r"\b([a-z_]+)\b", line.split("print(")[0].replace("import", "")))
    assert "sqlite_utils" not in imported and {"chardet", "starlette", "rapidocr"} <= imported
