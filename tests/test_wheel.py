"""The package users install: the wheel and the sdist built from this tree hold every subpackage and
the files the package reads at run time (the web app's page, py.typed), and nothing of the checkout
is needed beside them. The end-to-end run of an installed wheel (a fresh virtualenv, the quick start
against the stand-in hub) is scripts/check-wheel.sh, which CI runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mmsearch", "mmsearch_export")


def source_files() -> set[str]:
    """Every file of the two packages in the checkout that the package needs: code, typing marker,
    the page's static files (caches and compiled files left out)."""
    out = set()
    for top in PACKAGES:
        for p in (ROOT / top).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                out.add(p.relative_to(ROOT).as_posix())
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The sdist, then the wheel from the unpacked sdist (what `python -m build` does with no flag),
    from a copy of the checkout's own files: what pip-installing left in it (an egg-info, a build/
    folder) cannot fill a gap in either."""
    tree = tmp_path_factory.mktemp("tree")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(tree)],
                   check=True, capture_output=True, text=True)
    return out


def test_the_wheel_holds_every_file_of_the_packages(built):
    wheel = next(built.glob("mmsearch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = source_files() - names
    assert not missing, f"the wheel lacks {sorted(missing)}"
    # every folder with code is a package in the wheel, the web app's page and py.typed among them
    assert {"mmsearch/models/__init__.py", "mmsearch/web/static/index.html", "mmsearch/py.typed",
            "mmsearch_export/__init__.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "scripts/"))]


def test_the_sdist_holds_the_same_package(built):
    sdist = next(built.glob("mmsearch-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = source_files() - names
    assert not missing, f"the sdist lacks {sorted(missing)}"
    assert "pyproject.toml" in names and "README.md" in names


def test_the_wheel_says_its_version_and_extras(built):
    import mmsearch

    wheel = next(built.glob("mmsearch-*.whl"))
    assert wheel.name.startswith(f"mmsearch-{mmsearch.__version__}-")
    meta = zipfile.ZipFile(wheel).read(f"mmsearch-{mmsearch.__version__}.dist-info/METADATA").decode()
    extras = {line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Provides-Extra:")}
    # every extra serves the product; none only a benchmark
    assert extras == {"cpu", "gpu", "export", "heif", "ocr", "web", "distributed", "dev"}
