"""The int8 check: a bundle's int8 tower is compared with its fp32 outputs on the CPU it runs on,
once, and replaced by fp32 where it is off (mmsearch/int8_check.py).

The damaged tower is the committed toyclip fixture's int8 image tower with one weight initializer
negated (the manifest's checksum updated, so only the check can tell): its vectors are far from
fp32's on any CPU, which is what an int8 tower whose kernels saturate looks like on one without VNNI.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmsearch import int8_check
from mmsearch.bundle import BundleError, load_bundle, sha256_file
from mmsearch.encoder import ImageEncoder, TextEncoder
from mmsearch.runtime import DeviceError

FIXTURE = Path(__file__).parent / "fixtures" / "toyclip"

pytestmark = pytest.mark.skipif(not (FIXTURE / "manifest.json").exists(), reason="tests/fixtures/toyclip is missing")


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A fresh MMSEARCH_HOME: no verdict cached yet, as on a machine the bundle has never run on."""
    path = tmp_path / "home"
    monkeypatch.setenv("MMSEARCH_HOME", str(path))
    return path


def _install(home: Path, name: str = "toyclip") -> Path:
    folder = home / "models" / name
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns(".verified.json"))
    return folder


def _rewrite_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _damage(folder: Path, tower: str = "image") -> None:
    """Negate the first int8 weight of the tower and record the new file's checksum in the manifest."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    path = folder / f"{tower}.int8.onnx"
    model = onnx.load(str(path))
    weight = next(i for i in model.graph.initializer
                  if i.name.endswith("_quantized") and i.data_type == onnx.TensorProto.INT8)
    negated = np.clip(-numpy_helper.to_array(weight).astype(np.int16), -127, 127).astype(np.int8)
    weight.CopyFrom(numpy_helper.from_array(negated, weight.name))
    onnx.save(model, str(path))

    def rehash(m):
        m["variants"]["int8"][tower].update(sha256=sha256_file(path), bytes=path.stat().st_size)

    _rewrite_manifest(folder, rehash)


def _pixels(bundle) -> np.ndarray:
    arrays = int8_check.reference_inputs(bundle)
    return int8_check.tower_feeds(bundle, "image", arrays)[bundle.image_spec.input]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mmsearch" and r.levelno >= logging.WARNING]


def _doctor(*args: str) -> str:
    """`mmsearch doctor` in this process (MMSEARCH_HOME as the test set it): a subprocess would be
    another CPU where this one is emulated, and verdicts are per CPU."""
    from typer.testing import CliRunner

    from mmsearch.cli import app

    result = CliRunner().invoke(app, ["doctor", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_an_intact_int8_bundle_passes_and_is_used(home, caplog):
    bundle = load_bundle(_install(home))
    with caplog.at_level(logging.INFO, logger="mmsearch"):
        image, text = ImageEncoder(bundle), TextEncoder(bundle)
    assert image.variant == "int8" and text.variant == "int8"
    assert _warnings(caplog) == []
    for tower in ("image", "text"):
        verdict = int8_check.cached_verdict(bundle, "int8", tower)
        assert verdict is not None and verdict.passed and verdict.min_cosine >= 0.98
        assert verdict.references == "bundle" and verdict.isa == int8_check.isa_summary()
    checks = json.loads(_doctor("--json"))["int8_checks"]
    assert {(c["model"], c["tower"], c["verdict"]) for c in checks} == {("toyclip", "image", "pass"),
                                                                        ("toyclip", "text", "pass")}


def test_a_damaged_int8_tower_gives_way_to_fp32_says_so_once_and_is_remembered(home, caplog, monkeypatch):
    folder = _install(home)
    _damage(folder, "image")
    bundle = load_bundle(folder)
    with caplog.at_level(logging.INFO, logger="mmsearch"):
        image = ImageEncoder(bundle)
        text = TextEncoder(bundle)
    assert image.variant == "fp32" and text.variant == "int8"  # only the damaged tower is replaced
    said = _warnings(caplog)
    assert len(said) == 1, said
    assert "int8 image tower of 'toyclip'" in said[0] and int8_check.isa_summary() in said[0]
    assert "min cosine 0." in said[0] and "using fp32" in said[0]
    pixels = _pixels(bundle)
    np.testing.assert_array_equal(image.encode(pixels), ImageEncoder(bundle, variant="fp32").encode(pixels))

    verdict = int8_check.cached_verdict(bundle, "int8", "image")
    assert verdict is not None and not verdict.passed and verdict.min_cosine < 0.98 and verdict.bar == 0.98

    # A later session reads the verdict: no second check, nothing said again.
    def no_second_check(*args, **kwargs):
        raise AssertionError("the cached verdict should have been used")

    monkeypatch.setattr(int8_check, "check", no_second_check)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mmsearch"):
        assert ImageEncoder(bundle).variant == "fp32"
    assert _warnings(caplog) == []

    checks = {c["tower"]: c for c in json.loads(_doctor("--json"))["int8_checks"]}
    assert checks["image"]["verdict"] == "fail" and checks["image"]["min_cosine"] == verdict.min_cosine
    assert checks["text"]["verdict"] == "pass"
    assert checks["image"]["isa"] == int8_check.isa_summary()
    assert "toyclip int8 image tower on this CPU: failed, fp32 used instead" in _doctor()


def test_int8_asked_for_by_name_is_refused_where_it_fails(home):
    folder = _install(home)
    _damage(folder, "text")
    bundle = load_bundle(folder)
    with pytest.raises(DeviceError, match=r"--variant int8: the int8 text tower of 'toyclip' is off on this CPU"):
        TextEncoder(bundle, variant="int8")
    assert ImageEncoder(bundle, variant="int8").variant == "int8"  # the intact tower is still had


def test_a_bundle_without_references_is_checked_against_its_own_fp32_tower(home):
    def forget_references(m):
        del m["references"]
        del m["files"]["references.npz"]

    intact = _install(home, "intact")
    _rewrite_manifest(intact, forget_references)
    (intact / "references.npz").unlink()
    assert TextEncoder(load_bundle(intact)).variant == "int8"
    verdict = int8_check.cached_verdict(load_bundle(intact), "int8", "text")
    assert verdict is not None and verdict.passed and verdict.references == "fp32 tower"

    damaged = _install(home, "damaged")
    _rewrite_manifest(damaged, forget_references)
    _damage(damaged, "image")
    assert ImageEncoder(load_bundle(damaged)).variant == "fp32"


def test_the_verdict_belongs_to_the_cpu_it_was_reached_on(home, monkeypatch):
    bundle = load_bundle(_install(home))
    ImageEncoder(bundle)
    assert int8_check.cached_verdict(bundle, "int8", "image") is not None
    other = ("x86_64", "AVX", "AVX2", "FMA3", "SSE2")  # an AVX2-only CPU
    monkeypatch.setattr(int8_check, "isa_flags", lambda: other)
    assert int8_check.cached_verdict(bundle, "int8", "image") is None
    assert int8_check.isa_summary(other) == "x86_64 AVX2, no VNNI"


def test_damaged_references_are_a_damaged_bundle(home):
    folder = _install(home)
    data = bytearray((folder / "references.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "references.npz").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="references.npz"):
        ImageEncoder(load_bundle(folder))


def test_the_committed_fixture_carries_references_that_match_its_fp32_towers():
    import onnxruntime as ort

    bundle = load_bundle(FIXTURE)
    path = bundle.references_path()
    assert path is not None and bundle.manifest["references"]["min_cosine"] == 0.98
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape[1:] == (64, 64, 3)
    for tower in ("image", "text"):
        session = ort.InferenceSession(str(FIXTURE / f"{tower}.fp32.onnx"), providers=["CPUExecutionProvider"])
        out = session.run(None, int8_check.tower_feeds(bundle, tower, arrays))[0]
        np.testing.assert_allclose(out, arrays[f"{tower}_embeds"], atol=1e-5)


@pytest.fixture()
def fresh_cpu_identity():
    """The CPU identity is read once per process; these tests change what CPUID says and read it again."""
    from mmsearch import runtime

    def clear():
        for cached in (runtime.cpu_identity, getattr(runtime, "cpuid_features", None), int8_check.isa_flags):
            if cached is not None:
                cached.cache_clear()

    clear()
    yield
    clear()


def test_the_optimised_graph_cache_follows_what_cpuid_says(home, monkeypatch, fresh_cpu_identity):
    """The cached optimised graph holds layouts for the instruction set it was made on (the patch
    embedding's Conv in blocks of 16 channels with AVX-512, 8 with AVX2): an image tower optimised with
    AVX-512, loaded under an emulated AVX2-only CPU (which shows the host's /proc/cpuinfo), gave
    vectors at cosine -0.31 from fp32's. So the key follows what CPUID says."""
    from mmsearch import runtime

    path = FIXTURE / "image.int8.onnx"
    here = runtime._optimized_cache_path(path, runtime.session_options(1))
    assert here is not None
    core = getattr(np, "_core", None) or getattr(np, "core")
    features = core._multiarray_umath.__cpu_features__
    hidden = [name for name, present in features.items() if present and name.startswith(("AVX2", "AVX512"))]
    if not hidden:
        pytest.skip("this CPU reports no AVX2 to hide")
    for name in hidden:  # the same /proc/cpuinfo, CPUID without AVX2 and AVX-512
        monkeypatch.setitem(features, name, False)
    for cached in (runtime.cpu_identity, getattr(runtime, "cpuid_features", None)):
        if cached is not None:
            cached.cache_clear()
    assert runtime._optimized_cache_path(path, runtime.session_options(1)) != here
