"""Picking the execution provider: CUDA only where it really works, the CPU otherwise, said once.

These run where CUDA does not work (this project's CI); on a GPU machine they skip and
test_export.py's GPU test covers the CUDA path.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from mmsearch import runtime


@pytest.fixture()
def no_cuda(monkeypatch):
    ok, why = runtime.cuda_works()
    if ok:
        pytest.skip("CUDA works here; these tests are about machines where it does not")
    # Each test starts as a fresh process would: no failure remembered, nothing said yet.
    monkeypatch.setattr(runtime, "_CUDA_FAILURE", [])
    monkeypatch.setattr(runtime, "_CUDA_WARNED", [])
    return why


def test_auto_without_an_nvidia_gpu_runs_on_the_cpu_quietly(no_cuda, tiny_clip_bundle, monkeypatch, caplog):
    monkeypatch.setattr(runtime, "_nvidia_device_present", lambda: False)
    with caplog.at_level(logging.INFO, logger="mmsearch"):
        _, device = runtime.create_session(tiny_clip_bundle / "image.fp32.onnx", "auto")
    assert device == "cpu"
    assert not [r for r in caplog.records if "CUDA" in r.getMessage()]  # no GPU is the normal case


def test_auto_with_a_gpu_cuda_cannot_use_says_why_once(no_cuda, tiny_clip_bundle, monkeypatch, caplog):
    if not runtime.cuda_listed():
        pytest.skip("this onnxruntime has no CUDA provider to fail")
    monkeypatch.setattr(runtime, "_nvidia_device_present", lambda: True)  # a GPU, but no working CUDA
    with caplog.at_level(logging.INFO, logger="mmsearch"):
        for tower in ("image", "text"):
            _, device = runtime.create_session(tiny_clip_bundle / f"{tower}.fp32.onnx", "auto")
            assert device == "cpu"
    said = [r.getMessage() for r in caplog.records if "CUDA is not usable" in r.getMessage()]
    assert len(said) == 1 and "running on the CPU" in said[0]
    assert runtime.expected_device("auto") == "cpu"  # later sessions skip the failed attempt


def test_device_cuda_where_it_does_not_work_is_a_clear_error(no_cuda, tiny_clip_bundle):
    with pytest.raises(runtime.DeviceError, match="--device cuda: "):
        runtime.create_session(tiny_clip_bundle / "image.fp32.onnx", "cuda")
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda"):
        runtime.create_session(tiny_clip_bundle / "image.fp32.onnx", "gpu")


def test_cli_index_with_device_cuda_fails_clearly(no_cuda, tiny_clip_bundle, tmp_path):
    from engine_helpers import make_collection

    make_collection(tmp_path / "photos", n_images=2, docs={})
    proc = subprocess.run(
        [sys.executable, "-m", "mmsearch", "index", str(tmp_path / "photos"), "--index", str(tmp_path / "index"),
         "--model", str(tiny_clip_bundle), "--device", "cuda"], capture_output=True, text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "--device cuda:" in proc.stderr and "Traceback" not in proc.stderr
    doctor = subprocess.run([sys.executable, "-m", "mmsearch", "doctor", "--json"], capture_output=True, text=True)
    assert doctor.returncode == 0
    info = json.loads(doctor.stdout)
    assert info["cuda"] is False and info["cuda_reason"] == no_cuda


def test_decode_plan_follows_the_device(monkeypatch):
    from mmsearch.ingest import images

    monkeypatch.setattr(images.os, "cpu_count", lambda: 16)
    assert images.decode_plan("cpu", None, None) == (8, 32)  # the encoder needs cores too
    assert images.decode_plan("cuda", None, None) == (16, 128)  # it does not: decoding takes them all
    assert images.decode_plan("cuda", 3, 7) == (3, 7)  # what the caller asks for wins


@pytest.mark.gpu
def test_index_and_search_on_cuda_agree_with_the_cpu(tiny_clip_bundle, tmp_path):
    """The CUDA path end to end: fp16 towers with IO binding, the decode plan for CUDA, one result set."""
    import numpy as np

    from engine_helpers import make_collection
    from mmsearch import Index

    ok, why = runtime.cuda_works()
    if not ok:
        pytest.skip(f"CUDA provider does not work here: {why}")
    photos = tmp_path / "photos"
    make_collection(photos)
    with Index(tmp_path / "gpu", model=tiny_clip_bundle, device="cuda") as gpu:
        report = gpu.index([photos])
        assert report.device == "cuda" and not report.errors
        assert gpu.image_encoder().variant == "fp16"
        hits = gpu.search(image=photos / "img0.jpg", k=3, type="image")
        assert hits[0].path == str(photos / "img0.jpg")
        gpu_vectors = dict(zip(*next(gpu.catalog.all_vectors())))
    with Index(tmp_path / "cpu", model=tiny_clip_bundle, device="cpu", variant="fp32") as cpu:
        cpu.index([photos])
        cpu_vectors = dict(zip(*next(cpu.catalog.all_vectors())))
    assert len(gpu_vectors) == len(cpu_vectors)
    for a, b in zip(gpu_vectors.values(), cpu_vectors.values()):  # same files in the same order
        assert float(np.dot(a, b)) > 0.999
