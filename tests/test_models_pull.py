"""`mmsearch models pull` and `import`: ready ONNX models in immich's and transformers.js's layouts made
into bundles, without torch, against a local stand-in for the Hugging Face hub (tests/hubserver.py;
HF_ENDPOINT points at it). The repositories are tiny random towers written with onnx's helper API
(tests/tiny_onnx.py, which names the public source of every file name, input, output, dtype and
shape), so these tests run where torch is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="pulling a model rewrites its graphs with onnx (a dependency of mmsearch)")
pytest.importorskip("huggingface_hub", reason="pulling a model downloads it with huggingface_hub")

import tiny_onnx  # noqa: E402
from engine_helpers import make_collection  # noqa: E402
from hubserver import HubServer, Repo  # noqa: E402

from mmsearch.bundle import load_bundle  # noqa: E402
from mmsearch.models import gates  # noqa: E402

XENOVA = "Xenova/tiny-clip-random"
IMMICH = "immich-app/ViT-Tiny__random"
TEXTS = ["a photo of a cat", "  two red   apples\ton a table ", "x", "Café crème & 42 dogs!!",
         "a " * 40 + "long caption past the context"]

# Runs CLI commands in one process, then says whether torch or transformers were imported.
DRIVER = """
import json, sys
from mmsearch.__main__ import main
for argv in json.loads(sys.argv[1]):
    sys.argv = ["mmsearch", *argv]
    try:
        main()
    except SystemExit as e:
        if e.code:
            raise
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))))
"""


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("repos")
    return {"xenova": tiny_onnx.write_transformers_js(root / "xenova"), "immich": tiny_onnx.write_immich(root / "immich")}


@pytest.fixture(scope="module")
def hub(repos):
    with HubServer() as server:
        server.add(XENOVA, Repo.from_folder(repos["xenova"]))
        server.add(IMMICH, Repo.from_folder(repos["immich"]))
        yield server


def hub_env(hub: HubServer, where: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    return {**env, "HF_ENDPOINT": hub.url, "HF_HOME": str(where / "hf"), "MMSEARCH_HOME": str(where / "home"),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def mmsearch(*args, env, check=True, code: str | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess (`code`: a python -c prelude that runs it instead of the console script)."""
    cmd = [sys.executable, "-c", code, *map(str, args)] if code else [sys.executable, "-m", "mmsearch", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def pulled(hub, tmp_path_factory):
    """Both repositories pulled (immich's at its commit, by --revision) and indexed, in one process."""
    where = tmp_path_factory.mktemp("pulled")
    env = hub_env(hub, where)
    photos = where / "photos"
    make_collection(photos, n_images=4, docs={"note.txt": "a note about a red bicycle"})
    commit = hub.repos[IMMICH].commit
    steps = [["models", "pull", XENOVA, "--json"],
             ["models", "pull", IMMICH, "--revision", commit, "--name", "immich-tiny"],
             ["index", photos, "--index", where / "idx-xenova", "--model", "tiny-clip-random"],
             ["index", photos, "--index", where / "idx-immich", "--model", "immich-tiny"]]
    proc = mmsearch(json.dumps([list(map(str, s)) for s in steps]), env=env, code=DRIVER)
    home = where / "home" / "models"
    return {"env": env, "where": where, "photos": photos, "stdout": proc.stdout, "stderr": proc.stderr,
            "xenova": home / "tiny-clip-random", "immich": home / "immich-tiny", "commit": commit}


# -- the bar: pull without torch, index and query through the CLI ---------------------------------------


def test_pull_and_index_never_import_torch_or_transformers(pulled):
    assert json.loads(pulled["stdout"].strip().splitlines()[-1]) == []


@pytest.mark.parametrize("layout", ["xenova", "immich"])
def test_a_pulled_model_indexes_and_answers_queries(pulled, layout):
    env, photos = pulled["env"], pulled["photos"]
    index = pulled["where"] / f"idx-{layout}"
    hits = json.loads(mmsearch("query", "--image", photos / "img0.jpg", "--index", index, "--json", "-k", "3",
                               env=env).stdout)
    # The picture itself: its cosine 1, the top of the meaning band (docs/search.md).
    assert hits[0]["path"] == str(photos / "img0.jpg") and hits[0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert hits[0]["match"] == "meaning" and hits[0]["score"] == pytest.approx(0.5, abs=1e-3)
    docs = json.loads(mmsearch("query", "red bicycle", "--index", index, "--type", "document", "--json",
                               env=env).stdout)
    assert docs and docs[0]["path"].endswith("note.txt")


def _source_image(folder: Path, layout: str, pixels: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    if layout == "xenova":
        session = ort.InferenceSession(str(folder / "onnx" / "vision_model.onnx"))
        return session.run(["image_embeds"], {"pixel_values": pixels})[0]
    session = ort.InferenceSession(str(folder / "visual" / "model.onnx"))  # immich runs one image at a time
    return np.concatenate([session.run(["embedding"], {"image": pixels[i : i + 1]})[0] for i in range(len(pixels))])


def _source_text(folder: Path, layout: str, texts: list[str]) -> np.ndarray:
    """The text tower as its own reader feeds it: transformers.js's tokenizer padded to the batch's
    longest, input_ids int64; immich's textual.py: clean_text (whitespace runs to one space), the
    tokenizer padded to the context with tokenizer_config.json's pad_token, "text" int32, one text at a time."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    if layout == "xenova":
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.enable_truncation(max_length=tiny_onnx.CONTEXT)
        tok.enable_padding(pad_id=tok.token_to_id(tiny_onnx.EOS), pad_token=tiny_onnx.EOS)
        ids = np.asarray([e.ids for e in tok.encode_batch(texts)], dtype=np.int64)
        session = ort.InferenceSession(str(folder / "onnx" / "text_model.onnx"))
        return session.run(["text_embeds"], {"input_ids": ids})[0]
    tok = Tokenizer.from_file(str(folder / "textual" / "tokenizer.json"))
    pad = json.loads((folder / "textual" / "tokenizer_config.json").read_text())["pad_token"]
    tok.enable_padding(length=tiny_onnx.CONTEXT, pad_token=pad, pad_id=tok.token_to_id(pad))
    tok.enable_truncation(max_length=tiny_onnx.CONTEXT)
    session = ort.InferenceSession(str(folder / "textual" / "model.onnx"))
    out = []
    for text in texts:
        ids = np.array([tok.encode(" ".join(text.split())).ids], dtype=np.int32)
        out.append(session.run(["embedding"], {"text": ids})[0])
    return np.concatenate(out)


@pytest.mark.parametrize("layout", ["xenova", "immich"])
def test_fp32_vectors_equal_the_source_graphs_normalised_outputs(pulled, repos, layout):
    from mmsearch.encoder import ImageEncoder, TextEncoder
    from mmsearch.preprocess import preprocess_image

    bundle = load_bundle(pulled[layout])
    images = [img for img, _ in gates.captioned_images(6, 40, seed=5)]
    pixels = np.stack([preprocess_image(img, bundle.image_spec) for img in images])
    ours = ImageEncoder(bundle, variant="fp32", device="cpu").encode(pixels)
    theirs = _source_image(repos[layout], layout, pixels)
    assert np.abs(np.linalg.norm(ours, axis=1) - 1).max() < 1e-5
    assert gates.cosines(ours, theirs).min() >= 0.99999
    ours = TextEncoder(bundle, variant="fp32", device="cpu").encode(TEXTS)
    theirs = _source_text(repos[layout], layout, TEXTS)
    assert np.abs(np.linalg.norm(ours, axis=1) - 1).max() < 1e-5
    assert gates.cosines(ours, theirs).min() >= 0.99999


def test_the_manifest_says_where_the_model_came_from_and_how_it_was_made(pulled, hub, repos):
    xenova = load_bundle(pulled["xenova"])
    immich = load_bundle(pulled["immich"])
    for bundle, repo_id, folder in ((xenova, XENOVA, repos["xenova"]), (immich, IMMICH, repos["immich"])):
        bundle.verify_all()  # a sha256 for every file, and they hold
        m = bundle.manifest
        assert m["source"] == repo_id and m["pulled"]["commit"] == hub.repos[repo_id].commit
        assert set(bundle.variants) == {"fp32", "fp16", "int8"} and "left_out" not in m
        for name, entry in m["pulled"]["files"].items():  # what was downloaded, byte for byte
            assert entry["sha256"] == tiny_onnx.sha256(folder / name)
        for variant in bundle.variants:
            v = m["variants"][variant]["validation"]
            assert min(v["image_min_cosine"], v["text_min_cosine"], v["batch_vs_single_min_cosine"]) >= \
                gates.MIN_COSINE[variant]
        assert m["variants"]["int8"]["validation"]["top1_agreement_decided"] >= gates.TOP1_AGREEMENT["int8"]
        assert m["variants"]["int8"]["quantization"]["reduce_range"] is True
        fused = m["variants"]["fp32"]["fused"]  # onnxruntime's optimizer ran, its counts are recorded
        assert all(counts.get("SkipLayerNormalization", 0) > 0 and "Attention" in counts for counts in fused.values())
        assert "torch" not in m["exporter"] and "onnx" in m["exporter"]
    assert immich.manifest["pulled"]["revision"] == pulled["commit"]
    # transformers.js: batches in the source, its outputs projected but not normalised, any text length
    assert xenova.manifest["layout"] == "transformers.js" and xenova.text_spec.padding == "longest"
    assert xenova.image_spec.max_batch is None and xenova.text_spec.max_batch is None
    assert xenova.manifest["conversion"]["image"]["normalised"].startswith("added")
    assert xenova.manifest["variants"]["fp32"]["validation"]["text_padding_min_cosine"] >= gates.PADDING_MIN_COSINE
    # immich: frozen at batch 1; the image tower's Reshape rewrite is proven, the text tower's batch is
    # folded into its heads, so it runs one text at a time; padded to the context; already unit length
    assert immich.manifest["layout"] == "immich" and immich.text_spec.padding == "max_length"
    assert immich.image_spec.max_batch is None and "made dynamic" in immich.manifest["conversion"]["image"]["batch"]
    assert immich.text_spec.max_batch == 1 and "one input at a time" in immich.manifest["conversion"]["text"]["batch"]
    assert immich.manifest["conversion"]["image"]["normalised"] == "by the source graph"
    assert immich.manifest["text"]["clean"] == "whitespace"
    # preprocessing translated: CLIP's shortest edge + center crop, bicubic, OpenAI's mean and std
    for bundle in (xenova, immich):
        spec = bundle.image_spec
        assert (spec.resize, spec.resize_size, spec.crop, spec.size, spec.interpolation) == (
            "shortest_edge", 32, "center", (32, 32), "bicubic")
        assert spec.mean == pytest.approx(tiny_onnx.OPENAI_MEAN) and spec.std == pytest.approx(tiny_onnx.OPENAI_STD)


def test_only_the_files_the_runtime_needs_are_downloaded(pulled, hub):
    xenova = set(hub.downloads(XENOVA))
    assert {"onnx/vision_model.onnx", "onnx/text_model.onnx", "tokenizer.json", "preprocessor_config.json"} <= xenova
    assert not any("quantized" in f or "fp16" in f or f.endswith(".md") for f in xenova)
    immich = set(hub.downloads(IMMICH))
    assert {"visual/model.onnx", "textual/model.onnx", "textual/tokenizer_config.json"} <= immich
    assert not any("rknpu" in f for f in immich)


# -- downloads that go wrong ------------------------------------------------------------------------


def test_an_interrupted_download_resumes(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    hub.cut["onnx/vision_model.onnx"] = 16384  # the connection drops after 16 kB of the first GET
    before = len(hub.requests)
    # huggingface_hub writes 10 MB chunks; smaller ones here so a tiny file is cut after some of them
    prelude = ("import sys, huggingface_hub.constants as c; c.DOWNLOAD_CHUNK_SIZE = 4096\n"
               "from mmsearch.__main__ import main; sys.argv = ['mmsearch', *sys.argv[1:]]; main()")
    proc = mmsearch("models", "pull", XENOVA, env=env, code=prelude, check=False)
    if proc.returncode:  # huggingface_hub before 1.0 resumes on the next run, from its .incomplete file
        assert "run the same command again to resume" in one_line_error(proc)
        mmsearch("models", "pull", XENOVA, env=env, code=prelude)
    gets = [r for m, p, r in hub.requests[before:] if m == "GET" and p.endswith("onnx/vision_model.onnx")]
    assert len(gets) == 2 and gets[0] is None and gets[1].startswith("bytes=") and gets[1] != "bytes=0-", gets
    assert load_bundle(tmp_path / "home" / "models" / "tiny-clip-random").variants == ["fp32", "fp16", "int8"]


def test_a_corrupted_download_is_refused_by_name_and_fetched_again_next_time(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    hub.corrupt.add("onnx/text_model.onnx")
    try:
        error = one_line_error(mmsearch("models", "pull", XENOVA, env=env, check=False))
    finally:
        hub.corrupt.clear()
    assert "onnx/text_model.onnx" in error and "checksum" in error
    assert not (tmp_path / "home" / "models" / "tiny-clip-random").exists()
    before = len(hub.requests)
    mmsearch("models", "pull", XENOVA, env=env)  # the damaged file again, nothing else
    assert [p.rsplit("/", 2)[-2:] for m, p, _ in hub.requests[before:] if m == "GET" and "/resolve/" in p] == [
        ["onnx", "text_model.onnx"]]


def test_a_repository_in_neither_layout_gets_a_clear_error(hub, tmp_path):
    hub.add("someone/pytorch-clip", Repo({"config.json": b"{}", "model.safetensors": b"\0" * 64,
                                          "tokenizer.json": b"{}", "README.md": b"hello"}))
    error = one_line_error(mmsearch("models", "pull", "someone/pytorch-clip", env=hub_env(hub, tmp_path), check=False))
    assert "not a ready ONNX CLIP model in either layout" in error and "model.safetensors" in error
    assert "mmsearch export" in error
    assert not (tmp_path / "home" / "models").exists() or not any((tmp_path / "home" / "models").iterdir())


def test_a_missing_piece_is_named(hub, repos, tmp_path):
    files = {k: v for k, v in Repo.from_folder(repos["immich"]).files.items() if k != "textual/tokenizer.json"}
    hub.add("immich-app/ViT-Broken__random", Repo(files))
    error = one_line_error(mmsearch("models", "pull", "immich-app/ViT-Broken__random", env=hub_env(hub, tmp_path),
                                    check=False))
    assert "textual/tokenizer.json is missing" in error
    for bad, words in (("nobody/such-model", "no such model repository"),):
        assert words in one_line_error(mmsearch("models", "pull", bad, env=hub_env(hub, tmp_path), check=False))
    proc = mmsearch("models", "pull", XENOVA, "--revision", "v9", env=hub_env(hub, tmp_path), check=False)
    assert "has no revision 'v9'" in one_line_error(proc)


def test_offline_says_so_in_one_line_and_uses_the_cache(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    photos = tmp_path / "photos"
    make_collection(photos, n_images=1, docs={})
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    error = one_line_error(mmsearch("index", photos, "--index", tmp_path / "index", env=offline, check=False))
    assert "HF_HUB_OFFLINE" in error and str(tmp_path / "hf") in error and "mmsearch models import" in error
    assert not (tmp_path / "index").exists()
    # what to do without the hub: a model folder where it is (the checkout's toy model named), or one
    # installed where mmsearch looks for it
    proc = mmsearch("index", photos, "--index", tmp_path / "index", env=offline, check=False)
    assert "--model DIR" in proc.stderr and "tests/fixtures/toyclip" in proc.stderr
    assert f"mmsearch models import DIR" in proc.stderr and str(tmp_path / "home" / "models" / "NAME") in proc.stderr
    # once in the cache, a pull works offline
    mmsearch("models", "pull", XENOVA, env=env)
    before = len(hub.requests)
    proc = mmsearch("models", "pull", XENOVA, "--name", "again", env=offline)
    assert "Hugging Face cache" in proc.stderr and len(hub.requests) == before
    assert load_bundle(tmp_path / "home" / "models" / "again").manifest["source"] == XENOVA


@pytest.fixture(scope="module")
def default_hub(tmp_path_factory):
    """The catalogue's defaults (and the earlier default) under their real repository ids, tiny towers in
    their real layouts (hubserver.default_repositories)."""
    from hubserver import default_repositories

    with HubServer() as server:
        for repo_id, folder in default_repositories(tmp_path_factory.mktemp("defaults")).items():
            server.add(repo_id, Repo.from_folder(folder))
        yield server


def _record(index: Path) -> str:
    from mmsearch.catalog import Catalog

    catalog = Catalog(index, readonly=True)
    try:
        return catalog.model_record().name
    finally:
        catalog.close()


@pytest.fixture(scope="module")
def first_runs(default_hub, tmp_path_factory):
    """First runs in one MMSEARCH_HOME, as a user's machine sees them: an English locale (English's
    default pulled), then a Chinese one (English's installed default is not taken: the multilingual
    default is pulled), then no language (C.UTF-8) and --language zh under an English locale (both
    installed by then: nothing downloaded)."""
    where = tmp_path_factory.mktemp("first-runs")
    env = {**hub_env(default_hub, where), "LC_ALL": "", "LC_MESSAGES": ""}
    photos = where / "photos"
    make_collection(photos, n_images=2, docs={})
    out: dict = {"env": env, "where": where, "photos": photos, "downloads": {}}
    for key, lang, extra in (("en", "en_US.UTF-8", []), ("zh", "zh_CN.UTF-8", []), ("c", "C.UTF-8", []),
                             ("option", "en_US.UTF-8", ["--language", "zh"])):
        before = len(default_hub.requests)
        proc = mmsearch("index", photos, "--index", where / f"idx-{key}", *extra, env={**env, "LANG": lang})
        out[key] = proc
        out["downloads"][key] = len(default_hub.requests) - before
    return out


@pytest.mark.parametrize("key, expected, said", [
    ("en", "immich-vit-b-32-laion2b", "English (LANG=en_US.UTF-8)"),
    ("zh", "immich-xlm-roberta-b-32", "Chinese (LANG=zh_CN.UTF-8)"),
])
def test_the_first_run_pulls_the_default_for_the_locales_language(first_runs, default_hub, key, expected, said):
    from mmsearch import paths
    from mmsearch.models import catalogue

    entry = catalogue.find(expected)
    assert catalogue.default(key).name == expected and entry.layout == "immich"
    stderr = first_runs[key].stderr
    assert f"No model is installed for {said}. Its default is {expected} ({entry.repo}" in stderr
    assert "MB download" in stderr and "Alternatives" in stderr and "~" in stderr
    assert "added 2" in first_runs[key].stdout
    assert load_bundle(first_runs["where"] / "home" / "models" / expected).manifest["source"] == entry.repo
    assert default_hub.downloads(entry.repo) and _record(first_runs["where"] / f"idx-{key}") == expected
    assert paths.DEFAULT_MODEL == "immich-vit-b-32-laion2b"


def test_an_installed_model_for_the_language_is_used_without_the_hub(first_runs):
    """No language (C.UTF-8) means English: its default, installed, nothing asked of the hub; --language zh
    under an English locale: the installed multilingual default."""
    assert first_runs["downloads"]["c"] == 0 and first_runs["downloads"]["option"] == 0
    assert _record(first_runs["where"] / "idx-c") == "immich-vit-b-32-laion2b"
    assert _record(first_runs["where"] / "idx-option") == "immich-xlm-roberta-b-32"
    env, photos = first_runs["env"], first_runs["photos"]
    bad = mmsearch("index", photos, "--index", first_runs["where"] / "other", "--language", "Klingon 2",
                   env={**env, "LANG": "en_US.UTF-8"}, check=False)
    assert bad.returncode == 2 and "language 'Klingon 2'" in bad.stderr and not (first_runs["where"] / "other").exists()


def test_an_index_keeps_its_model_and_status_names_the_better_default(first_runs, default_hub):
    """An index built with the earlier default (clip-vit-b-32) keeps it after the default changed, with
    the new default installed too: a later run without --model pulls nothing and changes no model;
    status says what is better and what to do."""
    where, env = first_runs["where"], {**first_runs["env"], "LANG": "en_US.UTF-8"}
    photos = where / "photos-old"
    make_collection(photos, n_images=2, docs={})
    index = where / "idx-old"
    mmsearch("models", "pull", "clip-vit-b-32", env=env)
    mmsearch("index", photos, "--index", index, "--model", "clip-vit-b-32", env=env)
    make_collection(photos / "more", n_images=1, docs={})
    before = len(default_hub.requests)
    proc = mmsearch("index", photos, "--index", index, env=env)  # no --model: the index's own
    assert "added 1" in proc.stdout and len(default_hub.requests) == before and _record(index) == "clip-vit-b-32"
    assert (where / "home" / "models" / "immich-vit-b-32-laion2b").is_dir()
    status = json.loads(mmsearch("status", "--index", index, "--json", env=env).stdout)
    assert status["model"] == "clip-vit-b-32"
    better = status["newer_default"]
    assert (better["model"], better["recall"], better["index_recall"]) == ("immich-vit-b-32-laion2b", 68.78, 59.37)
    text = mmsearch("status", "--index", index, env=env).stdout
    assert ("built with clip-vit-b-32; the default is now immich-vit-b-32-laion2b (Crossmodal-3600 recall in "
            "English 68.78% vs 59.37%): re-index into a new folder to use it") in text
    zh = json.loads(mmsearch("status", "--index", index, "--json", env={**env, "LANG": "zh_CN.UTF-8"}).stdout)
    assert zh["newer_default"]["model"] == "immich-xlm-roberta-b-32" and zh["newer_default"]["index_recall"] is None
    # The earlier default still opens it (every file, the relevance floor off: a tiny model's floor hides them).
    ok = mmsearch("query", "a photo", "--index", index, "--json", "--min-similarity", "-1", env=env)
    assert json.loads(ok.stdout)


# -- import, and what needs no server ----------------------------------------------------------------


def test_import_a_folder_in_either_layout(repos, tmp_path):
    from mmsearch.models import import_folder

    for layout in ("xenova", "immich"):
        path = import_folder(repos[layout], name=f"imported-{layout}", models_dir=tmp_path)
        m = load_bundle(path).manifest
        assert m["pulled"]["folder"] == str(repos[layout]) and m["variants"]["fp32"]["validation"]
    assert {p.name for p in tmp_path.iterdir()} == {"imported-xenova", "imported-immich"}  # nothing half-made


TOYCLIP = Path(__file__).parent / "fixtures" / "toyclip"


def test_import_takes_an_mmsearch_bundle_and_lists_it_by_its_folder_name(tmp_path):
    env = {**os.environ, "MMSEARCH_HOME": str(tmp_path / "home")}
    mmsearch("models", "import", TOYCLIP, "--name", "toy", env=env)
    listed = json.loads(mmsearch("models", "--json", env=env).stdout)
    assert [m["name"] for m in listed] == ["toy"] and listed[0]["manifest_name"] == "toyclip"
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    mmsearch("index", photos, "--index", tmp_path / "index", "--model", "toy", env=env)
    # the copy is the same model: an index built with the checkout's folder accepts it
    mmsearch("index", photos, "--index", tmp_path / "index2", "--model", TOYCLIP, env=env)
    mmsearch("query", "a red circle", "--index", tmp_path / "index2", "--model", "toy", env=env)
    # a damaged bundle is refused by name, and nothing is installed
    damaged = tmp_path / "damaged"
    shutil.copytree(TOYCLIP, damaged)
    (damaged / "text.int8.onnx").write_bytes(b"not a graph")
    error = one_line_error(mmsearch("models", "import", damaged, env=env, check=False))
    assert "text.int8.onnx" in error and not (tmp_path / "home" / "models" / "damaged").exists()


def test_import_refuses_a_git_lfs_pointer_by_name(repos, tmp_path):
    from mmsearch.models import import_folder
    from mmsearch.models.layouts import LayoutError

    clone = tmp_path / "clone"
    shutil.copytree(repos["immich"], clone)
    (clone / "visual" / "model.onnx").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n")
    with pytest.raises(LayoutError, match=r"visual/model\.onnx: a Git LFS pointer"):
        import_folder(clone, models_dir=tmp_path / "models")


def test_immich_canonicalize_is_reproduced_by_the_bundles_tokenizer(repos, tmp_path):
    """immich's textual.py cleans text before tokenizing (transforms.py clean_text): whitespace runs to
    one space; with text_cfg.tokenizer_kwargs.clean == "canonicalize" (SigLIP), punctuation removed
    and lower case too. The bundle's tokenizer.json does the same."""
    import string

    from tokenizers import Tokenizer

    from mmsearch.encoder import load_tokenizer
    from mmsearch.models import import_folder

    folder = tmp_path / "siglip-like"
    shutil.copytree(repos["immich"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_cfg"]["tokenizer_kwargs"] = {"clean": "canonicalize"}
    (folder / "config.json").write_text(json.dumps(config))
    bundle = load_bundle(import_folder(folder, models_dir=tmp_path / "models"))
    assert bundle.manifest["text"]["clean"] == "canonicalize"
    theirs = Tokenizer.from_file(str(folder / "textual" / "tokenizer.json"))
    theirs.enable_padding(length=tiny_onnx.CONTEXT, pad_token=tiny_onnx.EOS, pad_id=theirs.token_to_id(tiny_onnx.EOS))
    theirs.enable_truncation(max_length=tiny_onnx.CONTEXT)
    table = str.maketrans("", "", string.punctuation)
    ours = load_tokenizer(bundle)
    for text in ("A Photo, of a DOG!", "  spaced\t\tout  words ", "it's 3:30 (p.m.) -- late", "Café CRÈME"):
        immich = " ".join(text.split()).translate(table).lower()
        assert ours.encode(text).ids == theirs.encode(immich).ids, text


def test_preprocessing_configs_are_translated_as_their_readers_apply_them():
    from mmsearch.models.layouts import LayoutError, hf_image_spec, immich_image_spec

    where = Path("cfg.json")
    siglip = hf_image_spec({"do_resize": True, "size": {"height": 224, "width": 224}, "resample": 2,
                            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                            "image_processor_type": "SiglipImageProcessor"}, where, "siglip", 224, where)
    assert (siglip["resize"], siglip["resize_size"], siglip["crop"], siglip["interpolation"]) == (
        "exact", [224, 224], None, "bilinear")
    clip = hf_image_spec({"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224},
                          "do_center_crop": True}, where, "clip", 224, where)
    assert (clip["resize"], clip["resize_size"], clip["crop"], clip["size"]) == ("shortest_edge", 224, "center", [224, 224])
    assert clip["mean"] == pytest.approx(tiny_onnx.OPENAI_MEAN)
    squash = immich_image_spec({"size": 256, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear",
                                "resize_mode": "squash"}, where)
    assert (squash["resize"], squash["resize_size"], squash["crop"]) == ("exact", [256, 256], None)
    with pytest.raises(LayoutError, match="resize_mode 'longest'"):
        immich_image_spec({"size": 224, "mean": [0.5] * 3, "std": [0.5] * 3, "resize_mode": "longest"}, where)
    with pytest.raises(LayoutError, match="224x224 images but"):
        hf_image_spec({"size": 224, "crop_size": 224}, where, "clip", 336, where)


def test_the_catalogue_lists_known_good_repositories(tmp_path):
    env = {**os.environ, "MMSEARCH_HOME": str(tmp_path)}
    rows = json.loads(mmsearch("models", "--available", "--json", env=env).stdout)
    assert [r["name"] for r in rows if r["default"]] == ["immich-vit-b-32-laion2b"]
    assert {r["name"]: r["default_for"] for r in rows if r["default_for"]} == {
        "immich-vit-b-32-laion2b": ["en"], "immich-xlm-roberta-b-32": ["*"]}
    assert next(r for r in rows if r["name"] == "immich-xlm-roberta-b-32")["recall"]["zh"] == 72.52
    text = mmsearch("models", "--available", env=env).stdout
    assert "(the default for English)" in text and "(the default for every other language)" in text
    assert all(r["layout"] in ("immich", "transformers.js") and "/" in r["repo"] and r["embedding_dim"] > 0
               for r in rows)
    assert any(r["languages"] == "multilingual" for r in rows)
    assert all(r["quality"] is None or "%" in r["quality"] for r in rows)
    proc = mmsearch("models", "pull", "not a repo", env=env, check=False)
    assert proc.returncode == 2 and "Error: " in proc.stderr and "--available" in proc.stderr


def _export_like_transformers_js(checkpoint: Path, out: Path) -> Path:
    """The towers of a CLIPModel checkpoint as transformers.js's conversion exports them (scripts/extra/
    clip.py: the projected embeddings of CLIPVisionModelWithProjection and CLIPTextModelWithProjection,
    plus last_hidden_state, batch and sequence dynamic), beside the checkpoint's own configs."""
    import torch
    from transformers import CLIPModel

    (out / "onnx").mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (checkpoint / name).is_file():
            shutil.copy(checkpoint / name, out / name)
    model = CLIPModel.from_pretrained(checkpoint, attn_implementation="eager").eval()

    class Tower(torch.nn.Module):
        def __init__(self, tower: str):
            super().__init__()
            self.model, self.tower = model, tower

        def forward(self, x):
            if self.tower == "image":
                o = self.model.vision_model(pixel_values=x)
                return self.model.visual_projection(o.pooler_output), o.last_hidden_state
            o = self.model.text_model(input_ids=x)
            return self.model.text_projection(o.pooler_output), o.last_hidden_state

    from mmsearch.models.variants import quiet

    with torch.inference_mode(), quiet():
        torch.onnx.export(Tower("image"), (torch.randn(2, 3, 32, 32),), str(out / "onnx" / "vision_model.onnx"),
                          input_names=["pixel_values"], output_names=["image_embeds", "last_hidden_state"],
                          dynamic_axes={"pixel_values": {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"},
                                        "image_embeds": {0: "batch_size"}, "last_hidden_state": {0: "batch_size"}},
                          opset_version=14, dynamo=False)
        torch.onnx.export(Tower("text"), (torch.tensor([[0, 5, 6, 1], [0, 7, 1, 1]]),), str(out / "onnx" / "text_model.onnx"),
                          input_names=["input_ids"], output_names=["text_embeds", "last_hidden_state"],
                          dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                        "text_embeds": {0: "batch_size"},
                                        "last_hidden_state": {0: "batch_size", 1: "sequence_length"}},
                          opset_version=14, dynamo=False)
    return out


def test_a_transformers_js_export_of_a_clip_checkpoint_gives_pytorchs_vectors(tiny_clip_checkpoint, tmp_path):
    """Graphs made by transformers' own CLIP modules (not tiny_onnx's): the imported bundle's fp32 vectors
    equal PyTorch's get_image_features / get_text_features, normalised, and the optimizer fuses the
    vision tower's attention given the heads and width from config.json."""
    import torch

    from mmsearch.encoder import ImageEncoder, TextEncoder
    from mmsearch.models import import_folder
    from mmsearch.preprocess import preprocess_image
    from mmsearch_export.towers import load_checkpoint, reference_image_embeds, reference_text_embeds

    folder = _export_like_transformers_js(tiny_clip_checkpoint, tmp_path / "repo")
    bundle = load_bundle(import_folder(folder, models_dir=tmp_path / "models"))
    ckpt = load_checkpoint(tiny_clip_checkpoint)
    images = [img for img, _ in gates.captioned_images(6, 40, seed=9)]
    pixels = np.stack([preprocess_image(img, bundle.image_spec) for img in images])
    ours = ImageEncoder(bundle, variant="fp32", device="cpu").encode(pixels)
    theirs = reference_image_embeds(ckpt, torch.from_numpy(pixels)).numpy()
    assert gates.cosines(ours, theirs).min() >= 0.99999
    ours = TextEncoder(bundle, variant="fp32", device="cpu").encode(TEXTS)
    hf = ckpt.tokenizer(TEXTS, padding=True, truncation=True, max_length=bundle.text_spec.context_length,
                        return_tensors="pt")
    theirs = reference_text_embeds(ckpt, {"input_ids": hf["input_ids"]}).numpy()
    assert gates.cosines(ours, theirs).min() >= 0.99999
    assert bundle.variants == ["fp32", "fp16", "int8"] and bundle.text_spec.padding == "longest"
    assert bundle.manifest["variants"]["fp32"]["fused"]["image"]["Attention"] == 2  # one per layer of the tiny ViT


def test_index_asks_on_a_terminal_before_downloading_the_default(hub, repos, tmp_path):
    import select

    from mmsearch.models import catalogue

    default = catalogue.default()
    hub.add(default.repo, Repo.from_folder(repos["immich"]))
    photos = tmp_path / "photos"
    make_collection(photos, n_images=1, docs={})
    before = len(hub.downloads(default.repo))
    master, slave = os.openpty()  # stdin and stderr on a terminal, as a person runs it
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "index", str(photos), "--index", str(tmp_path / "index")],
                            stdin=slave, stdout=subprocess.PIPE, stderr=slave,
                            env={**hub_env(hub, tmp_path), "LANG": "en_US.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""})
    os.close(slave)
    seen = b""
    try:
        while b"Download it now?" not in seen:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, seen.decode(errors="replace")
            seen += os.read(master, 4096)
        os.write(master, b"n\n")
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closes when the command exits
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.wait(timeout=60) == 1
    text = seen.decode(errors="replace")
    assert "MB download" in text and "Nothing was indexed" in text and "Traceback" not in text
    assert len(hub.downloads(default.repo)) == before and not (tmp_path / "index").exists()
    assert not (tmp_path / "home" / "models" / default.name).exists()


def test_configs_that_disagree_with_their_graphs_are_named(repos, tmp_path):
    from mmsearch.models.layouts import LayoutError, read_source

    folder = tmp_path / "immich"
    shutil.copytree(repos["immich"], folder)
    preprocess = folder / "visual" / "preprocess_cfg.json"
    preprocess.write_text(json.dumps({**json.loads(preprocess.read_text()), "size": [224, 224]}))
    with pytest.raises(LayoutError, match=r"visual/model\.onnx takes 32x32 images but .*preprocess_cfg\.json makes 224x224"):
        read_source(folder)
    shutil.copy(repos["immich"] / "visual" / "preprocess_cfg.json", preprocess)
    config = folder / "config.json"
    data = json.loads(config.read_text())
    data["text_cfg"]["context_length"] = 77
    config.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match=r"textual/model\.onnx: takes 16 tokens but .*config\.json says context_length 77"):
        read_source(folder)
    (folder / "textual" / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<nowhere>"}))
    data["text_cfg"]["context_length"] = 16
    config.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match=r"tokenizer\.json: has no token '<nowhere>', the pad_token of"):
        read_source(folder)


def test_a_variant_that_misses_its_bar_is_left_out_and_the_runtime_uses_fp32(repos, tmp_path, monkeypatch):
    from mmsearch.encoder import TextEncoder
    from mmsearch.models import import_folder

    monkeypatch.setitem(gates.MIN_COSINE, "int8", 1.5)  # no int8 tower can reach it
    bundle = load_bundle(import_folder(repos["xenova"], models_dir=tmp_path))
    assert bundle.variants == ["fp32", "fp16"]
    assert "int8 image tower: min cosine" in bundle.manifest["left_out"]["int8"]
    assert not list(tmp_path.glob("*/*.int8.onnx"))
    assert TextEncoder(bundle, device="cpu").variant == "fp32"


def test_a_siglip_export_pools_its_own_output_and_pads_to_the_context(tmp_path):
    """transformers.js's SigLIP towers give pooler_output (scripts/extra/siglip.py); SigLIP's text tower
    is right only at the length it was trained with, so texts are padded to the context (transformers.js
    calls its tokenizer with padding: 'max_length'); SiglipImageProcessor resizes exactly, bilinear."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from mmsearch.encoder import TextEncoder
    from mmsearch.models import import_folder

    folder = tiny_onnx.write_transformers_js(tmp_path / "siglip", siglip=True)
    bundle = load_bundle(import_folder(folder, models_dir=tmp_path / "models"))
    m = bundle.manifest
    assert bundle.family == "siglip" and bundle.text_spec.padding == "max_length"
    assert m["conversion"]["image"]["source_output"] == m["conversion"]["text"]["source_output"] == "pooler_output"
    spec = bundle.image_spec
    assert (spec.resize, spec.resize_size, spec.crop, spec.interpolation, spec.mean) == (
        "exact", (32, 32), None, "bilinear", (0.5, 0.5, 0.5))
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(max_length=tiny_onnx.CONTEXT)
    tok.enable_padding(length=tiny_onnx.CONTEXT, pad_id=tok.token_to_id(tiny_onnx.EOS))
    ids = np.asarray([e.ids for e in tok.encode_batch(TEXTS)], dtype=np.int64)
    theirs = ort.InferenceSession(str(folder / "onnx" / "text_model.onnx")).run(["pooler_output"], {"input_ids": ids})[0]
    ours = TextEncoder(bundle, variant="fp32", device="cpu").encode(TEXTS)
    assert gates.cosines(ours, theirs).min() >= 0.99999


def test_a_pulled_models_fp16_towers_run_on_the_cpu(pulled):
    """fp16 is made for CUDA, and asked for on the CPU it runs there too (`--variant fp16 --device cpu`, or
    CUDA failing under an fp16 run): the CPU session leaves out the layout pass that crashed on traced
    fp16 graphs (runtime.FP16_CPU_DISABLED_OPTIMIZERS)."""
    from mmsearch import Index

    for model in ("immich-tiny", "tiny-clip-random"):
        folder = pulled["where"] / f"fp16-{model}"
        with Index(folder, model=pulled["where"] / "home" / "models" / model, device="cpu", variant="fp16") as idx:
            report = idx.index([pulled["photos"]], ocr=False)
            assert report.added >= 4 and not report.errors
            assert idx.search(image=next(pulled["photos"].glob("*.jpg")), k=1)
