"""The query fast path: exact scans of the saved ANN file, and the `mmsearch query` parser."""

from __future__ import annotations

import json
from pathlib import PurePath

import numpy as np
import pytest


DIM = 16


def test_index_queries_scan_the_saved_flat_file(tmp_path, bundle):
    """A cold query ranks by an exact scan of the last save's flat file (no graph load), current with
    the catalog: what a run in another process committed since is scanned from the catalog."""
    from engine_helpers import make_collection, picture

    from mmsearch import Index

    photos = tmp_path / "photos"
    make_collection(photos)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([photos])
        graph_hits = idx.search(image=photos / "img0.jpg", k=3)
    with Index(tmp_path / "index", readonly=True) as idx:
        hits = idx.search(image=photos / "img0.jpg", k=3)
        assert idx.vectors._graph is None  # answered from the flat file
        assert [h.path for h in hits] == [h.path for h in graph_hits]
        under = idx.search(image=photos / "img0.jpg", k=10, under=str(photos / "sub"), type="image")
        assert under and all("/sub/" in h.path for h in under)
    picture(77).save(photos / "late.png")
    with Index(tmp_path / "index") as idx:  # committed, but the vector files not saved again (a crash)
        from mmsearch.ingest import run

        real_save = run._save
        run._save = lambda vectors, observe: None
        try:
            idx.index([photos])
        finally:
            run._save = real_save
    with Index(tmp_path / "index", readonly=True) as idx:
        late = idx.search(image=photos / "late.png", k=1)
        assert late[0].path == str(photos / "late.png") and idx.vectors._graph is None


ARGUMENT_LINES = [
    ["red car"],
    ["red car", "--index", "/x", "-k", "3", "--json", "--type=image", "--under", "/p"],
    ["--image", "/photos/cat.jpg", "--top", "7", "--mode", "vector", "--device", "cpu", "--variant", "fp32"],
    ["boats", "--after", "2024-05-01", "--before=2024-06-01T12:00", "--model", "clip", "--index=/i"],
    ["--", "-k"],  # a query that starts with a dash
    ["cake", "-k", "0"],  # parsed alike; the library refuses it
    ["boats", "--index", "/a", "--index=/b", "--index", "/c"],  # several indexes searched as one
]


@pytest.mark.parametrize("args", ARGUMENT_LINES)
def test_fast_parser_and_typer_make_the_same_call(args, monkeypatch):
    """Both parsers come from one declaration (cli_query.QUERY_OPTIONS); the same line gives run_query
    the same keywords, defaults included (a path as typer's pathlib.Path, or as the text it was typed as)."""
    from typer.testing import CliRunner

    from mmsearch import cli_query
    from mmsearch.cli import app

    calls: list[dict] = []
    monkeypatch.setattr(cli_query, "run_query", lambda **kw: calls.append(kw))
    result = CliRunner().invoke(app, ["query", *args])
    assert result.exit_code == 0, result.output
    assert [as_text(call) for call in calls] == [cli_query.parse_query_args(args)]


def as_text(call: dict) -> dict:
    def text(value):
        if isinstance(value, list):
            return [text(v) for v in value]
        return str(value) if isinstance(value, PurePath) else value

    return {key: text(value) for key, value in call.items()}


def test_fast_parser_hands_odd_lines_to_typer():
    from mmsearch.cli_query import parse_query_args

    for odd in (["--help"], ["a", "-k", "x"], ["a", "b"], ["a", "--index"], ["a", "--nope"], ["a", "--json=1"]):
        assert parse_query_args(odd) is None  # typer's job


def test_a_plain_query_line_loads_no_cli_framework(tmp_path, bundle):
    """`mmsearch query "..."` is answered without typer, click or rich (a fifth of a cold query's
    budget), and gives the same hits as the typer command."""
    import subprocess
    import sys

    from engine_helpers import make_collection

    from mmsearch import Index

    photos = tmp_path / "photos"
    make_collection(photos)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([photos])
    args = ["query", "a garden with roses", "--index", str(tmp_path / "index"), "-k", "3", "--min-similarity=-1",
            "--json"]
    code = (
        "import sys, json; sys.argv = ['mmsearch', *json.loads(sys.argv[1])]\n"
        "from mmsearch.__main__ import main\n"
        "main()\n"
        "heavy = [m for m in ('typer', 'click', 'rich', 'torch') if m in sys.modules]\n"
        "sys.stderr.write('LOADED ' + json.dumps(heavy))"
    )
    fast = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    assert fast.returncode == 0, fast.stderr
    assert fast.stderr.strip().endswith("LOADED []")
    via_typer = subprocess.run([sys.executable, "-m", "mmsearch.cli", *args], capture_output=True, text=True)
    assert via_typer.returncode == 0, via_typer.stderr
    assert len(json.loads(fast.stdout)) == 3 and json.loads(fast.stdout) == json.loads(via_typer.stdout)


def test_cpu_sessions_reuse_the_optimised_graph(tmp_path, bundle, monkeypatch):
    from mmsearch.bundle import load_bundle
    from mmsearch.runtime import CACHED_MODEL, CACHED_WEIGHTS, _optimized_cache_path, create_session, session_options

    monkeypatch.setenv("MMSEARCH_HOME", str(tmp_path))
    model = load_bundle(bundle).tower_path("fp32", "image")
    entry = _optimized_cache_path(model, session_options())
    first, _ = create_session(model, "cpu")
    assert (entry / CACHED_MODEL).is_file() and (entry / CACHED_WEIGHTS).stat().st_size > 0  # weights apart
    second, _ = create_session(model, "cpu")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    name = first.get_inputs()[0].name
    assert np.allclose(first.run(None, {name: x})[0], second.run(None, {name: x})[0], atol=1e-5)
    (entry / CACHED_WEIGHTS).write_bytes(b"truncated")  # damaged: dropped and rebuilt
    third, _ = create_session(model, "cpu")
    assert np.allclose(first.run(None, {name: x})[0], third.run(None, {name: x})[0], atol=1e-5)
    assert (entry / CACHED_WEIGHTS).stat().st_size > len(b"truncated")


def test_optimised_graph_cache_stays_bounded(tmp_path, bundle, monkeypatch):
    """A re-exported model replaces its old cache entry; beyond the budget, least recently used go first."""
    import os
    import shutil

    from mmsearch import runtime
    from mmsearch.bundle import load_bundle

    monkeypatch.setenv("MMSEARCH_HOME", str(tmp_path / "home"))
    bundle = load_bundle(bundle)
    model = tmp_path / "text.fp32.onnx"
    shutil.copy(bundle.tower_path("fp32", "text"), model)
    runtime.create_session(model, "cpu")
    cache_dir = tmp_path / "home" / "cache" / "ort"
    (cache_dir / "stale-from-an-old-version.onnx").write_bytes(b"x")
    first = sorted(cache_dir.iterdir())
    assert len(first) == 2
    os.utime(model, ns=(0, 10**18))  # the same path, re-exported
    runtime.create_session(model, "cpu")
    second = sorted(cache_dir.iterdir())
    assert len(second) == 1 and second[0] not in first

    other = tmp_path / "image.fp32.onnx"
    shutil.copy(bundle.tower_path("fp32", "image"), other)
    one_entry = sum(f.stat().st_size for f in second[0].iterdir())
    monkeypatch.setattr(runtime, "ORT_CACHE_BYTES", one_entry + 1)  # room for about one entry
    runtime.create_session(other, "cpu")
    assert [p.name.split(".")[0] for p in cache_dir.iterdir()] == ["image"]


def test_kind_filters_over_the_scan(tmp_path, bundle):
    from engine_helpers import DOCS, make_collection

    from mmsearch import Index

    photos = tmp_path / "photos"
    make_collection(photos)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([photos])
    with Index(tmp_path / "index", readonly=True) as idx:
        assert idx.vectors.searcher().scans_exactly
        docs = idx.search("a garden with roses", k=10, type="document", mode="vector")
        assert len(docs) == len(DOCS) and {h.kind for h in docs} == {"document"}
        images = idx.search("a garden with roses", k=3, type="image", mode="vector")
        assert len(images) == 3 and {h.kind for h in images} == {"image"}


def test_sessions_open_where_the_cache_cannot_be_written(tmp_path, bundle, monkeypatch):
    """An unwritable MMSEARCH_HOME (here: below a plain file) costs the cache, never the session."""
    from mmsearch.bundle import load_bundle
    from mmsearch.runtime import create_session

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("MMSEARCH_HOME", str(blocker / "home"))
    model = load_bundle(bundle).tower_path("int8", "text")
    session, device = create_session(model, "cpu")
    out = session.run(None, {"input_ids": np.array([[1, 5, 2]], np.int64)})[0]
    assert device == "cpu" and out.shape[0] == 1 and np.isfinite(out).all()


INDEX_LINES = [
    ["/photos"],
    ["/photos", "/docs", "--index", "/i", "--model", "toyclip", "--device=cpu", "--variant", "fp32", "--json"],
    ["/p", "--exclude", "*.tmp", "--exclude=build", "--hidden", "--no-default-excludes", "--workers", "3", "-y"],
    ["/p", "--engine", "ray", "--ray-address", "h:1", "--shard-dir", "/s", "--shard-files", "9", "--no-wait"],
    ["/p", "--language", "zh", "--no-ocr", "--include-hidden", "--trace-steps", "/t", "--hold-steps", "0.5"],
    ["--", "-odd-name"],
]


@pytest.mark.parametrize("args", INDEX_LINES)
def test_index_fast_parser_and_typer_make_the_same_call(args, monkeypatch):
    """`mmsearch index` is parsed without typer from the same declarations (cli_index.OPTIONS)."""
    from typer.testing import CliRunner

    from mmsearch import cli_index
    from mmsearch.cli import app

    calls: list[dict] = []
    monkeypatch.setattr(cli_index, "run_index", lambda **kw: calls.append(kw))
    result = CliRunner().invoke(app, ["index", *args])
    assert result.exit_code == 0, result.output
    assert [as_text(call) for call in calls] == [cli_index.parse_index_args(args)]


def test_index_fast_parser_hands_odd_lines_to_typer():
    from mmsearch.cli_index import parse_index_args

    for odd in ([], ["--help"], ["/p", "--workers", "x"], ["/p", "--nope"], ["/p", "--json=1"], ["--index", "/i"]):
        assert parse_index_args(odd) is None  # typer's job
