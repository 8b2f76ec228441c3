"""The export step: tiny CLIP and SigLIP checkpoints -> bundles that mmsearch/bundle.py reads.

The towers are compared with PyTorch here directly through onnxruntime (not through the gate the
export runs), so a gate that passed everything would not hide a bad export.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the export step needs torch (pip install mmsearch[export])")
pytest.importorskip("transformers", reason="the export step needs transformers")
ort = pytest.importorskip("onnxruntime")

from mmsearch.bundle import BundleError, load_bundle, sha256_file  # noqa: E402
from mmsearch_export import ExportError, export_bundle  # noqa: E402
from mmsearch_export import validate as validate_mod  # noqa: E402
from mmsearch_export.hub import looks_like_hub_id  # noqa: E402

TEXTS = [
    "a photo of a cat",
    "two red apples on a wooden table, taken at night",
    "x",
    "Café crème & 42 dogs!!",
    "a " * 100 + "very long caption past the context length",
]


def _session(path: Path) -> "ort.InferenceSession":
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def _leftovers(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


# -- manifest --------------------------------------------------------------------------------------


def test_clip_manifest(tiny_clip_bundle: Path) -> None:
    m = _manifest(tiny_clip_bundle)
    assert m["format_version"] == 1
    assert m["name"] == "tiny-clip"
    assert m["family"] == "clip"
    assert Path(m["source"]).name == "tiny-clip"
    assert m["embedding_dim"] == 16
    assert m["logit_scale"] == pytest.approx(math.exp(2.6592), rel=1e-4)
    assert m["logit_bias"] is None
    assert m["opset"] == 17
    assert set(m["exporter"]) >= {"mmsearch", "torch", "transformers", "onnx", "onnxruntime"}
    assert m["created"].endswith("Z")

    image = m["image"]
    assert image["input"] == "pixel_values" and image["output"] == "image_embeds"
    assert image["size"] == [32, 32]
    assert image["resize"] == "shortest_edge" and image["resize_size"] == 32
    assert image["interpolation"] == "bicubic"
    assert image["crop"] == "center"
    assert image["rescale_factor"] == pytest.approx(1 / 255)
    assert image["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert image["std"] == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    assert image["channel_order"] == "RGB" and image["layout"] == "NCHW"

    text = m["text"]
    assert text["inputs"] == ["input_ids"]
    assert text["output"] == "text_embeds"
    assert text["context_length"] == 77
    assert text["padding"] == "longest"
    assert text["pad_id"] == 1
    assert text["tokenizer"] == "tokenizer.json"

    assert set(m["variants"]) == {"fp32", "fp16", "int8"}
    for variant, entry in m["variants"].items():
        for tower in ("image", "text"):
            f = tiny_clip_bundle / entry[tower]["file"]
            assert entry[tower]["file"] == f"{tower}.{variant}.onnx"
            assert entry[tower]["bytes"] == f.stat().st_size
            assert entry[tower]["sha256"] == sha256_file(f)
        v = entry["validation"]
        assert v["image_min_cosine"] >= validate_mod.MIN_COSINE[variant]
        assert v["text_min_cosine"] >= validate_mod.MIN_COSINE[variant]
        assert v["images"] >= 64 and v["texts"] >= 64
    assert m["variants"]["int8"]["validation"]["top1_agreement_decided"] >= 0.95
    assert m["variants"]["fp32"]["validation"]["text_padding_min_cosine"] >= 0.99999
    # the manifest's preprocessing spec reproduces the checkpoint's image processor
    assert_preprocessing_reproduced(m["variants"]["fp32"]["validation"])
    tok = tiny_clip_bundle / "tokenizer.json"
    assert m["files"]["tokenizer.json"] == {"sha256": sha256_file(tok), "bytes": tok.stat().st_size}
    assert sorted(p.name for p in tiny_clip_bundle.iterdir() if not p.name.startswith(".")) == sorted(
        ["manifest.json", "tokenizer.json", "references.npz"]
        + [f"{t}.{v}.onnx" for t in ("image", "text") for v in ("fp32", "fp16", "int8")]
    )


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_the_bundle_carries_references_for_the_int8_check(family: str, request: pytest.FixtureRequest) -> None:
    """A few inputs with the fp32 towers' outputs, so the runtime can check int8 on the CPU it runs on."""
    from mmsearch import int8_check

    bundle_dir = request.getfixturevalue(f"tiny_{family}_bundle")
    m = _manifest(bundle_dir)
    ref = bundle_dir / "references.npz"
    assert m["references"] == {"file": "references.npz", "images": 8, "texts": 16,
                                "min_cosine": validate_mod.MIN_COSINE["int8"]}
    assert m["files"]["references.npz"] == {"sha256": sha256_file(ref), "bytes": ref.stat().st_size}
    bundle = load_bundle(bundle_dir)
    with np.load(ref) as data:
        arrays = {k: data[k] for k in data.files}
    assert arrays["images"].shape == (8, 32, 32, 3) and arrays["input_ids"].shape[0] == 16
    for tower in ("image", "text"):
        feeds = int8_check.tower_feeds(bundle, tower, arrays)
        np.testing.assert_allclose(_session(bundle_dir / f"{tower}.fp32.onnx").run(None, feeds)[0],
                                   arrays[f"{tower}_embeds"], atol=1e-5)
        int8 = _session(bundle_dir / f"{tower}.int8.onnx").run(None, feeds)[0]
        assert _cos(int8, arrays[f"{tower}_embeds"]).min() >= 0.98


def assert_preprocessing_reproduced(figures: dict) -> None:
    # Within one 8-bit level (1/255/std) and off at all for a rare value; a wrong spec is off by far more.
    assert figures["preprocess_max_abs_diff"] <= 0.016 and figures["preprocess_share_off"] <= 1e-3


def test_clip_towers_have_fused_attention(tiny_clip_bundle: Path) -> None:
    fused = _manifest(tiny_clip_bundle)["variants"]["fp32"]["fused"]
    # two layers per tower: the text tower's causal attention fuses too
    assert fused["image"]["Attention"] == 2
    assert fused["text"]["Attention"] == 2
    assert fused["text"]["SkipLayerNormalization"] > 0
    int8 = _manifest(tiny_clip_bundle)["variants"]["int8"]["fused"]
    # int8 is quantized from the plain export and keeps the patch-embedding Conv in float
    assert int8["image"]["MatMulInteger"] > 0 and int8["text"]["MatMulInteger"] > 0
    assert "ConvInteger" not in int8["image"]
    import onnx

    g = onnx.load(str(tiny_clip_bundle / "text.fp32.onnx")).graph
    attention = [n for n in g.node if n.op_type == "Attention"]
    assert all(any(a.name == "unidirectional" and a.i == 1 for a in n.attribute) for n in attention)


def test_siglip_towers_have_fused_attention(tiny_siglip_bundle: Path) -> None:
    # The image tower's attention-pooling head is written out in mmsearch_export/towers.py so that shape
    # inference, and with it every fusion in the tower, works (transformers' head blocked them all).
    fused = _manifest(tiny_siglip_bundle)["variants"]["fp32"]["fused"]
    assert fused["image"]["Attention"] == 2 and fused["image"]["SkipLayerNormalization"] > 0
    assert fused["text"]["Attention"] == 2


def test_siglip_manifest(tiny_siglip_bundle: Path) -> None:
    m = _manifest(tiny_siglip_bundle)
    assert m["family"] == "siglip"
    assert m["name"] == "tiny-siglip"
    assert isinstance(m["logit_bias"], float)
    assert m["embedding_dim"] == 32
    image = m["image"]
    assert image["resize"] == "exact" and image["resize_size"] == [32, 32] and image["crop"] is None
    assert image["size"] == [32, 32]
    assert image["mean"] == [0.5, 0.5, 0.5] and image["std"] == [0.5, 0.5, 0.5]
    text = m["text"]
    assert text["padding"] == "max_length" and text["context_length"] == 64
    assert text["inputs"] == ["input_ids"]
    assert text["pad_id"] == 1
    assert set(m["variants"]) == {"fp32", "fp16", "int8"}
    assert_preprocessing_reproduced(m["variants"]["fp32"]["validation"])


# -- the towers against PyTorch, through onnxruntime alone ----------------------------------------


def _hf(checkpoint: Path):
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    config = json.loads((checkpoint / "config.json").read_text())
    cls = {"clip": transformers.CLIPModel, "siglip": transformers.SiglipModel}[config["model_type"]]
    model = cls.from_pretrained(checkpoint).eval()
    return model, AutoTokenizer.from_pretrained(checkpoint), AutoImageProcessor.from_pretrained(checkpoint)


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_towers_match_pytorch(family: str, request: pytest.FixtureRequest) -> None:
    checkpoint = request.getfixturevalue(f"tiny_{family}_checkpoint")
    bundle = request.getfixturevalue(f"tiny_{family}_bundle")
    m = _manifest(bundle)
    model, tokenizer, processor = _hf(checkpoint)
    images = [img for img, _ in validate_mod.captioned_images(5, 32, seed=99)]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    context = m["text"]["context_length"]
    if family == "clip":
        enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=context, return_tensors="pt")
        feeds = {"input_ids": enc["input_ids"]}
        ref_kwargs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    else:
        enc = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=context, return_tensors="pt")
        feeds = ref_kwargs = {"input_ids": enc["input_ids"]}
    with torch.inference_mode():
        image_ref = torch.nn.functional.normalize(_features(model.get_image_features(pixel_values=pixels)), dim=-1).numpy()
        text_ref = torch.nn.functional.normalize(_features(model.get_text_features(**ref_kwargs)), dim=-1).numpy()

    bars = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.98}
    for variant, bar in bars.items():
        image_session = _session(bundle / f"image.{variant}.onnx")
        text_session = _session(bundle / f"text.{variant}.onnx")
        assert [i.name for i in image_session.get_inputs()] == ["pixel_values"]
        assert [o.name for o in image_session.get_outputs()] == ["image_embeds"]
        assert [i.name for i in text_session.get_inputs()] == ["input_ids"]
        assert [o.name for o in text_session.get_outputs()] == ["text_embeds"]
        assert image_session.get_inputs()[0].type == "tensor(float)"
        assert image_session.get_outputs()[0].type == "tensor(float)"  # fp16 keeps float32 I/O
        image_out = image_session.run(None, {"pixel_values": pixels.numpy()})[0]
        text_out = text_session.run(None, {k: v.numpy() for k, v in feeds.items()})[0]
        assert image_out.dtype == np.float32 and text_out.dtype == np.float32
        assert image_out.shape == (5, m["embedding_dim"]) and text_out.shape == (len(TEXTS), m["embedding_dim"])
        np.testing.assert_allclose(np.linalg.norm(image_out, axis=1), 1.0, atol=1e-3)
        np.testing.assert_allclose(np.linalg.norm(text_out, axis=1), 1.0, atol=1e-3)
        assert _cos(image_out, image_ref).min() >= bar, variant
        assert _cos(text_out, text_ref).min() >= bar, variant
        # dynamic batch: one at a time gives the same vectors
        one = image_session.run(None, {"pixel_values": pixels[:1].numpy()})[0]
        assert _cos(one, image_out[:1]).min() > 0.999


def test_clip_text_tower_takes_any_length(tiny_clip_bundle: Path) -> None:
    """Causal mask + first-end-token pooling: unpadded ids and ids padded to 77 give one embedding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_clip_bundle / "tokenizer.json"))
    tok.enable_truncation(max_length=77)
    session = _session(tiny_clip_bundle / "text.fp32.onnx")
    for text in TEXTS:
        ids = np.asarray([tok.encode(text).ids], dtype=np.int64)
        padded = np.full((1, 77), 1, dtype=np.int64)  # pad id = <|endoftext|>
        padded[0, : ids.shape[1]] = ids[0]
        short = session.run(None, {"input_ids": ids})[0]
        full = session.run(None, {"input_ids": padded})[0]
        assert _cos(short, full)[0] > 0.99999, (text, ids.shape)
    # and a batch padded to its longest text, as the runtime sends it
    tok.enable_padding(pad_id=1)
    batch = np.asarray([e.ids for e in tok.encode_batch(TEXTS[:4])], dtype=np.int64)
    assert batch.shape[1] < 77
    together = session.run(None, {"input_ids": batch})[0]
    alone = np.concatenate(
        [session.run(None, {"input_ids": np.asarray([tok.encode(t).ids], dtype=np.int64)})[0] for t in TEXTS[:1]]
    )
    assert _cos(together[:1], alone)[0] > 0.99999


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_tokenizer_json_adds_special_tokens(family: str, request: pytest.FixtureRequest) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    checkpoint = request.getfixturevalue(f"tiny_{family}_checkpoint")
    bundle = request.getfixturevalue(f"tiny_{family}_bundle")
    hf = AutoTokenizer.from_pretrained(checkpoint)
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    context = _manifest(bundle)["text"]["context_length"]
    tok.enable_truncation(max_length=context)
    for text in TEXTS:
        assert tok.encode(text).ids == hf(text, truncation=True, max_length=context)["input_ids"], text
    # no padding or truncation saved in the file: the runtime sets them from the manifest
    raw = json.loads((bundle / "tokenizer.json").read_text())
    assert raw["padding"] is None and raw["truncation"] is None
    assert raw["post_processor"] is not None


def test_chinese_clip_exports_with_an_attention_mask(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, ChineseCLIPModel

    from mmsearch_export.tiny import make_chinese_clip_checkpoint

    checkpoint = make_chinese_clip_checkpoint(tmp_path / "tiny-cn-clip")
    bundle = export_bundle(checkpoint, tmp_path / "bundle", variants=("fp32", "int8"))
    m = _manifest(bundle)
    assert m["family"] == "chinese_clip"
    assert m["text"]["inputs"] == ["input_ids", "attention_mask"]
    assert m["text"]["padding"] == "longest" and m["text"]["context_length"] == 52 and m["text"]["pad_id"] == 0
    assert m["variants"]["fp32"]["fused"]["text"]["Attention"] == 2  # BERT attention, fused as model_type bert
    with np.load(bundle / "references.npz") as refs:  # its text tower takes the mask: the check feeds it
        assert refs["attention_mask"].shape == refs["input_ids"].shape
    model = ChineseCLIPModel.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    texts = ["一张猫的照片", "a photo of a red cat in the park", "狗"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(
            _features(model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])), dim=-1
        ).numpy()
    session = _session(bundle / "text.fp32.onnx")
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    out = session.run(None, {"input_ids": enc["input_ids"].numpy(), "attention_mask": enc["attention_mask"].numpy()})[0]
    assert _cos(out, ref).min() > 0.99999


# -- int8 on a CPU without VNNI -------------------------------------------------------------------

@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_int8_weights_cannot_saturate_16_bit_sums(family: str, request: pytest.FixtureRequest) -> None:
    """Without VNNI (AVX2, AVX-512 without it) onnxruntime's int8 kernels add pairs of u8 x s8 products
    in 16 bits: with |weight| <= 64 two products stay below 2^15 (2 x 255 x 64 = 32640); 8-bit weights
    (up to 127) overflow it and the tower's vectors drift from fp32's on those CPUs only."""
    import onnx
    from onnx import numpy_helper

    bundle = request.getfixturevalue(f"tiny_{family}_bundle")
    q = _manifest(bundle)["variants"]["int8"]["quantization"]
    assert q["reduce_range"] is True and q["weight_type"] == "QInt8"
    for tower in ("image", "text"):
        graph = onnx.load(str(bundle / f"{tower}.int8.onnx")).graph
        weights = [numpy_helper.to_array(i) for i in graph.initializer
                   if i.name.endswith("_quantized") and i.data_type == onnx.TensorProto.INT8]
        assert weights, tower
        assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64, tower


_AVX2_ONLY = "Haswell-noTSX-IBRS"  # qemu's model of an AVX2 CPU without AVX-512 or VNNI
_MEASURE_EMULATED = """
import sys, numpy as np, onnxruntime as ort
from mmsearch import int8_check
from mmsearch.bundle import load_bundle
bundle = load_bundle(sys.argv[1])
arrays = int8_check.reference_inputs(bundle)
arrays["images"] = np.stack([int8_check._picture(i, *bundle.image_spec.size) for i in range(40)])
worst = {}
for tower in ("image", "text"):
    feeds = int8_check.tower_feeds(bundle, tower, arrays)
    fp32, int8 = (ort.InferenceSession(str(bundle.tower_path(v, tower)), providers=["CPUExecutionProvider"])
                  .run(None, feeds)[0] for v in ("fp32", "int8"))
    worst[tower] = float(((fp32 * int8).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)).min())
print(int8_check.isa_summary(), worst["image"], worst["text"])
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or platform.machine() != "x86_64",
                    reason="emulating a CPU without VNNI needs qemu-user (apt-get install qemu-user)")
@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_int8_holds_on_a_cpu_without_vnni(family: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """onnxruntime's int8 kernels for AVX2 sum pairs of u8 x s8 products in 16 bits, which saturate
    where VNNI's do not; the export's int8 must stay within the bar there too. qemu's user-mode
    emulation of an AVX2-only CPU makes onnxruntime pick those kernels (the process's CPUID says so)."""
    import subprocess
    import sys

    bundle = request.getfixturevalue(f"tiny_{family}_bundle")
    script = tmp_path / "measure.py"
    script.write_text(_MEASURE_EMULATED)
    proc = subprocess.run(["qemu-x86_64", "-cpu", _AVX2_ONLY, sys.executable, str(script), str(bundle)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MMSEARCH_NO_ORT_CACHE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    *_, image, text = proc.stdout.split()
    assert proc.stdout.strip().startswith("x86_64 AVX2, no VNNI"), proc.stdout
    assert float(image) >= 0.98 and float(text) >= 0.98, proc.stdout


# -- the runtime's reader ---------------------------------------------------------------------------


def test_load_bundle_accepts_it_and_refuses_a_tampered_tower(tiny_clip_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_clip_bundle)
    assert bundle.name == "tiny-clip" and bundle.family == "clip" and bundle.embedding_dim == 16
    assert bundle.variants == ["fp32", "fp16", "int8"]
    assert bundle.text_spec.padding == "longest" and bundle.image_spec.crop == "center"
    for variant in bundle.variants:
        for tower in ("image", "text"):
            assert bundle.tower_path(variant, tower).is_file()
    assert bundle.tokenizer_path().name == "tokenizer.json"

    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip_bundle, copy)
    target = copy / "text.int8.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    tampered = load_bundle(copy)
    tampered.tower_path("fp32", "text")  # the others still load
    with pytest.raises(BundleError, match="text.int8.onnx"):
        tampered.tower_path("int8", "text")


def test_unknown_format_version_is_refused(tiny_clip_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip_bundle, copy)
    m = _manifest(copy)
    m["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="format_version 99"):
        load_bundle(copy)


# -- failures leave nothing behind ------------------------------------------------------------------


def test_a_folder_that_is_not_an_image_text_model(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(bert)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"bert.*model_type 'bert' is not an image-text model"):
        export_bundle(bert, out)
    assert not out.exists() and not _leftovers(tmp_path, "out")


def test_an_empty_folder_and_a_missing_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"empty: no config.json"):
        export_bundle(empty, out)
    assert not out.exists() and not _leftovers(tmp_path, "out")
    missing = tmp_path / "nope" / "clip"
    with pytest.raises(ExportError, match=r"nope/clip: no such folder"):
        export_bundle(missing, out)
    with pytest.raises(ExportError, match="no such folder"):
        export_bundle("./certainly-not-here/clip", out)
    assert not out.exists()
    with pytest.raises(ExportError, match="unknown variant"):
        export_bundle(empty, out, variants=("fp8",))


def test_hub_ids_are_told_from_paths() -> None:
    assert looks_like_hub_id("openai/clip-vit-base-patch32")
    assert looks_like_hub_id("google/siglip-base-patch16-224")
    assert not looks_like_hub_id("/abs/path")
    assert not looks_like_hub_id("./rel/path")
    assert not looks_like_hub_id("a/b/c")
    assert not looks_like_hub_id("clip")


def test_a_failing_gate_is_an_export_error(tiny_clip_checkpoint: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(validate_mod.MIN_COSINE, "int8", 1.5)  # no int8 tower can reach it
    out = tmp_path / "out"
    messages: list[str] = []
    with pytest.raises(ExportError, match=r"int8 (image|text) tower: min cosine vs PyTorch 0\.\d+ < bar 1\.5"):
        export_bundle(tiny_clip_checkpoint, out, variants=("fp32", "int8"), progress=messages.append)
    assert not out.exists() and not _leftovers(tmp_path, "out")
    assert "exporting image tower" in messages and "exporting text tower" in messages
    assert any(m.startswith("validated fp32") for m in messages)
    assert any(m.startswith("validating int8") for m in messages)


def test_a_broken_tower_fails_the_gate(tiny_clip_checkpoint: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrapper that gets the math wrong is caught by the comparison with transformers' own output."""
    from mmsearch_export import towers

    monkeypatch.setattr(towers, "l2_normalize", lambda x: x / torch.linalg.vector_norm(x, dim=-1, keepdim=True) + 0.05)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"validation failed: fp32 (image|text) tower: min cosine"):
        export_bundle(tiny_clip_checkpoint, out, variants=("fp32",))
    assert not out.exists() and not _leftovers(tmp_path, "out")


def test_fp16_survives_large_embeddings(tiny_clip_checkpoint: Path, tmp_path: Path) -> None:
    """Unnormalised embeddings with a norm far past 256 would overflow a float16 sum of squares.

    On the CPU provider the fp16 graph's reductions may run in float32 anyway; the gate runs fp16
    on the CUDA provider where it works, and there this is the case that breaks."""
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(tiny_clip_checkpoint)
    with torch.no_grad():
        model.visual_projection.weight.mul_(2000.0)
        model.text_projection.weight.mul_(2000.0)
    big = tmp_path / "big"
    model.save_pretrained(big)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(tiny_clip_checkpoint / name, big / name)
    bundle = export_bundle(big, tmp_path / "bundle", variants=("fp32", "fp16"))
    v = _manifest(bundle)["variants"]["fp16"]["validation"]
    assert v["image_min_cosine"] >= 0.999 and v["text_min_cosine"] >= 0.999


def test_existing_output_is_refused_unless_overwrite(tiny_clip_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        export_bundle(tiny_clip_checkpoint, out, variants=("fp32",))
    assert (out / "something").read_text() == "mine"
    path = export_bundle(tiny_clip_checkpoint, out, name="again", variants=("fp32",), overwrite=True)
    assert path == out and not (out / "something").exists()
    m = _manifest(out)
    assert m["name"] == "again" and list(m["variants"]) == ["fp32"]
    assert not _leftovers(tmp_path, "out")
    load_bundle(out).verify_all()


# -- the ViT-B/32 architecture: fused attention in both towers (slow: builds 150M parameters) --------


@pytest.mark.slow
def test_vit_b_32_fuses_attention_in_both_towers(tmp_path: Path) -> None:
    from mmsearch_export import to_onnx
    from mmsearch_export.tiny import make_clip_checkpoint
    from mmsearch_export.towers import build_towers, load_checkpoint

    ckpt = load_checkpoint(make_clip_checkpoint(tmp_path / "b32", preset="vit-b-32"))
    image, text = build_towers(ckpt)
    ids = ckpt.tokenizer(["a photo of a cat", "a dog"], padding=True, return_tensors="pt")["input_ids"]
    raw = to_onnx.export_tower(text, [ids], tmp_path / "text.onnx", ["input_ids"], "text_embeds",
                               {"input_ids": {0: "batch", 1: "sequence"}, "text_embeds": {0: "batch"}})
    text_counts = to_onnx.optimize(raw, tmp_path / "text.opt.onnx", num_heads=8, hidden_size=512)
    raw = to_onnx.export_tower(image, [torch.randn(2, 3, 224, 224)], tmp_path / "image.onnx", ["pixel_values"],
                               "image_embeds", {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
    image_counts = to_onnx.optimize(raw, tmp_path / "image.opt.onnx", num_heads=12, hidden_size=768)
    assert image_counts["Attention"] == 12
    assert text_counts["Attention"] == 12


# -- GPU -------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_fp16_on_the_cuda_provider(tiny_clip_bundle: Path) -> None:
    from mmsearch.runtime import create_session, cuda_works

    ok, why = cuda_works()
    if not ok:
        pytest.skip(f"CUDA provider does not work here: {why}")
    fp32 = _session(tiny_clip_bundle / "image.fp32.onnx")
    session, device = create_session(tiny_clip_bundle / "image.fp16.onnx", "cuda")
    assert device == "cuda"
    pixels = np.random.default_rng(0).normal(size=(8, 3, 32, 32)).astype(np.float32)
    ref = fp32.run(None, {"pixel_values": pixels})[0]
    got = session.run(None, {"pixel_values": pixels})[0]
    assert got.dtype == np.float32
    assert _cos(got, ref).min() >= 0.999
