"""The installed `mmsearch` console script, run as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from engine_helpers import DOCS, make_collection

MMSEARCH = shutil.which("mmsearch") or os.path.join(os.path.dirname(sys.executable), "mmsearch")


def run(*args, env=None, check=True):
    proc = subprocess.run([MMSEARCH, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"mmsearch {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture()
def env(tmp_path):
    return {**os.environ, "MMSEARCH_HOME": str(tmp_path / "home")}


def test_index_query_status_forget_json(tmp_path, bundle, env):
    photos = tmp_path / "photos"
    make_collection(photos)
    index = tmp_path / "index"
    out = json.loads(run("index", photos, "--index", index, "--model", bundle, "--json", env=env).stdout)
    assert {"added", "updated", "removed", "unchanged", "errors"} <= out.keys()
    assert out["added"] == 6 + len(DOCS) and out["errors"] == []
    again = json.loads(run("index", photos, "--index", index, "--json", env=env).stdout)
    assert again["unchanged"] == 6 + len(DOCS) and again["added"] == 0

    hits = json.loads(run("query", "--image", photos / "img0.jpg", "--index", index, "-k", "3", "--json", env=env).stdout)
    assert hits[0]["path"] == str(photos / "img0.jpg") and hits[0]["kind"] == "image"
    assert {"path", "kind", "score", "rank"} <= hits[0].keys()
    text = DOCS["garden.txt"]
    docs = json.loads(run("query", text, "--index", index, "--type", "document", "--json", env=env).stdout)
    assert docs[0]["path"] == str(photos / "docs" / "garden.txt") and docs[0]["snippet"]
    table = run("query", "lemon cake", "--index", index, env=env).stdout
    assert "recipe.md" in table

    status = json.loads(run("status", "--index", index, "--json", env=env).stdout)
    assert status["counts"]["image"] == 6 and status["roots"] == [str(photos)]
    forgot = json.loads(run("forget", photos, "--index", index, "--json", env=env).stdout)
    assert forgot["files"] == 6 + len(DOCS)


def test_missing_model_says_how_to_install(tmp_path, env):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=1, docs={})
    # no model installed and the hub switched off (conftest sets HF_HUB_OFFLINE): the default cannot be pulled
    proc = run("index", photos, "--index", tmp_path / "index", env=env, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "HF_HUB_OFFLINE" in proc.stderr and "mmsearch models import" in proc.stderr
    assert not (tmp_path / "index").exists()  # a failed first run leaves no empty index behind
    proc = run("index", photos, "--index", tmp_path / "index", "--model", "clip-vit-b-32", env=env, check=False)
    assert proc.returncode == 1 and "mmsearch models pull clip-vit-b-32" in proc.stderr
    for command in (["status"], ["forget", photos], ["query", "red car"]):
        proc = run(*command, env=env, check=False)  # the default index, which does not exist
        assert proc.returncode == 1 and "no index here" in proc.stderr, (command, proc.stderr)
    assert "mmsearch index PATH\n" in run("query", "x", env=env, check=False).stderr  # no --index to repeat


def test_status_and_forget_work_without_the_model(tmp_path, bundle, env):
    photos, index, model = tmp_path / "photos", tmp_path / "index", tmp_path / "model"
    make_collection(photos, n_images=2, docs={})
    shutil.copytree(bundle, model)
    run("index", photos, "--index", index, "--model", model, env=env)
    shutil.rmtree(model)  # the bundle was deleted (or lives on an unplugged drive)
    status = json.loads(run("status", "--index", index, "--json", env=env).stdout)
    assert status["counts"]["image"] == 2 and status["model"] == "toyclip"
    assert json.loads(run("forget", photos, "--index", index, "--json", env=env).stdout)["files"] == 2
    proc = run("query", "red car", "--index", index, env=env, check=False)  # a query does need it
    assert proc.returncode == 1 and "not installed" in proc.stderr and "Traceback" not in proc.stderr


def test_query_without_index_is_a_clear_error(tmp_path, env):
    proc = run("query", "red car", "--index", tmp_path / "nothing", env=env, check=False)
    assert proc.returncode == 1 and "no index here" in proc.stderr and "mmsearch index" in proc.stderr


@pytest.mark.parametrize("command", ["index", "query", "similar", "status", "forget", "models", "export", "doctor"])
def test_every_command_has_help(command):
    proc = run(command, "--help")
    assert "Usage" in proc.stdout and len(proc.stdout) > 200


def test_query_and_index_never_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from mmsearch.cli import app; "
        "CliRunner().invoke(app, ['doctor']); import mmsearch.api, mmsearch.search, mmsearch.ingest; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_similar_uses_stored_vectors_and_leaves_the_file_out(tmp_path, bundle, env):
    photos, index, model = tmp_path / "photos", tmp_path / "index", tmp_path / "model"
    make_collection(photos)
    shutil.copytree(bundle, model)
    run("index", photos, "--index", index, "--model", model, env=env)
    by_image = json.loads(run("query", "--image", photos / "img0.jpg", "--index", index, "--type", "image", "-k", "4",
                              "--json", env=env).stdout)
    shutil.rmtree(model)  # no model needed: the file's vector is in the catalog
    hits = json.loads(run("similar", photos / "img0.jpg", "--index", index, "--type", "image", "-k", "3", "--json",
                          env=env).stdout)
    assert [h["path"] for h in hits] == [h["path"] for h in by_image[1:]]  # the same ranking, itself left out
    assert [h["rank"] for h in hits] == [1, 2, 3]
    proc = run("similar", tmp_path / "elsewhere.jpg", "--index", index, env=env, check=False)
    assert proc.returncode == 1 and "not in this index" in proc.stderr
