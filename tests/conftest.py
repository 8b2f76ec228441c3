"""Session fixtures shared by the test files: tiny random checkpoints and their exported bundles.

Each is built once per session under pytest's tmp_path_factory (a few seconds each on two cores).
They need the export extra (torch, transformers, onnx); where it is missing the tests that use
them are skipped with that reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory):
    """Every test (and every `mmsearch` subprocess it starts) uses a throwaway MMSEARCH_HOME, so the
    suite never writes models, indexes or the optimised-graph cache into the user's own; and a
    throwaway Hugging Face cache with the hub switched off (HF_HUB_OFFLINE), so no test reaches the
    real hub: the pull tests point HF_ENDPOINT at a local stand-in (tests/hubserver.py)."""
    import os

    values = {"MMSEARCH_HOME": str(tmp_path_factory.mktemp("mmsearch-home")),
              "HF_HOME": str(tmp_path_factory.mktemp("hf-home")), "HF_HUB_OFFLINE": "1",
              "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_CACHE": None, "HF_ENDPOINT": None}
    old = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _need_export_extra() -> None:
    for name in ("torch", "transformers", "onnx"):
        pytest.importorskip(name, reason=f"the export step needs {name} (pip install mmsearch[export])")


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CLIPModel folder (32 px, hidden 32, embedding 16, context 77)."""
    _need_export_extra()
    from mmsearch_export.tiny import make_clip_checkpoint

    return make_clip_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_siglip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight SiglipModel folder (32 px, hidden 32, context 64, padding to max length)."""
    _need_export_extra()
    from mmsearch_export.tiny import make_siglip_checkpoint

    return make_siglip_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-siglip")


@pytest.fixture(scope="session")
def tiny_clip_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_clip_checkpoint: Path) -> Path:
    """The tiny CLIP exported and validated: fp32, fp16 and int8 (name "tiny-clip")."""
    from mmsearch_export import export_bundle

    return export_bundle(tiny_clip_checkpoint, tmp_path_factory.mktemp("bundles") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_siglip_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_siglip_checkpoint: Path) -> Path:
    """The tiny SigLIP exported and validated: fp32, fp16 and int8 (name "tiny-siglip")."""
    from mmsearch_export import export_bundle

    return export_bundle(tiny_siglip_checkpoint, tmp_path_factory.mktemp("bundles") / "tiny-siglip")


TOYCLIP = ROOT / "tests" / "fixtures" / "toyclip"


@pytest.fixture(scope="session")
def toyclip() -> Path:
    """The small CLIP the project trained and committed (benchmarks/train_toyclip.py): a real bundle
    that needs no torch, context 32 tokens, 128-d vectors."""
    assert (TOYCLIP / "manifest.json").is_file(), f"{TOYCLIP} is missing (python -m benchmarks.train_toyclip makes it)"
    return TOYCLIP


@pytest.fixture(scope="session")
def bundle(toyclip: Path) -> Path:
    """The model engine tests index and search with: the committed toyclip, so they run where only the
    runtime is installed (no torch)."""
    return toyclip


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/*.txt from what the CLI prints now (review the diff)")
    parser.addoption("--update-screenshots", action="store_true",
                     help="write the web app's screenshots into docs/images/ (the README shows them)")
