#!/usr/bin/env bash
# What users install, tried as they would: the sdist and the wheel built from this checkout's
# committed files, the wheel installed alone into a fresh virtualenv (`[cpu]`, then `[web]` for
# `serve`), run from a folder outside the checkout. Then the quick start end to end against a local
# stand-in for the model hub (tests/hubserver.py serves the default model's layout with tiny weights):
# `--version`, every module imports, `models pull` of the default by name, `index`, `query`,
# `similar`, `status`, and `serve` answering /api/status.
#   bash scripts/check-wheel.sh            (PYTHON: the interpreter that builds and serves the hub,
#                                          default .venv/bin/python, which needs the dev extra)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=${PYTHON:-$repo/.venv/bin/python}
work=$(mktemp -d)
hub_pid=""
serve_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

step "build the sdist and the wheel from the committed files"
git archive HEAD | tar -x -C "$work" --one-top-level=tree
"$py" -m build --no-isolation --outdir "$work/dist" "$work/tree" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/mmsearch-*.whl)
ls -l "$work/dist"

step "install the wheel alone into a fresh virtualenv: mmsearch[cpu]"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q -c constraints.txt "${wheel}[cpu]"
export PATH="$work/venv/bin:$PATH"
cd "$work"  # no checkout on sys.path from here on
mmsearch --version

step "every module imports (a missing extra is named, never a missing part of the package)"
python - <<'PYEOF'
import importlib, pkgutil, mmsearch, sys
extras = {"starlette", "uvicorn", "ray", "pyarrow", "rapidocr", "pillow_heif", "torch", "transformers", "onnxscript"}
assert "site-packages" in mmsearch.__file__, mmsearch.__file__
names = ["mmsearch"] + [m.name for m in pkgutil.walk_packages(mmsearch.__path__, "mmsearch.")]
needs = {}
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] not in extras:
            sys.exit(f"{name}: {e}")
        needs[name] = e.name
print(f"{len(names) - len(needs)} of {len(names)} modules import; needing an extra: {needs or 'none'}")
PYEOF

step "the stand-in hub serves the default model"
PYTHONPATH="$repo" "$py" "$repo/tests/hubserver.py" --url-file "$work/hub-url" --repo-folder "$work/repo" &
hub_pid=$!
for _ in $(seq 100); do [ -s "$work/hub-url" ] && break; sleep 0.2; done
export HF_ENDPOINT=$(cat "$work/hub-url") HF_HOME="$work/hf" MMSEARCH_HOME="$work/home" HF_HUB_DISABLE_PROGRESS_BARS=1
unset HF_HUB_OFFLINE
default=$(python -c "from mmsearch import paths; print(paths.DEFAULT_MODEL)")

step "the quick start: models pull $default, index, query, similar, status"
mmsearch models pull "$default"
mmsearch models
(cd "$repo" && "$py" -m benchmarks.toyworld --out "$work/photos" --n 12 --caption-docs --max-size 640 >/dev/null)
mmsearch index "$work/photos" --no-ocr
mmsearch query "a red circle"
mmsearch query "a red circle" --json | python -c "import json,sys; hits=json.load(sys.stdin); assert hits, 'no results'"
first=$(ls "$work"/photos/images/* | head -n 1)
mmsearch similar "$first" -k 3
mmsearch query --image "$first" -k 3 --type image
mmsearch status

step "serve (mmsearch[web]) answers /api/status"
python -m pip install -q -c "$repo/constraints.txt" "${wheel}[cpu,web]"
mmsearch serve --port 0 >"$work/serve.log" 2>&1 &
serve_pid=$!
url=""
for _ in $(seq 150); do
  url=$(grep -o 'http://[^ ]*' "$work/serve.log" | head -n 1 || true)
  [ -n "$url" ] && break
  sleep 0.2
done
[ -n "$url" ] || { cat "$work/serve.log"; exit 1; }
python - "$url" <<'PYEOF'
import json, sys, time, urllib.request
for _ in range(50):
    try:
        status = json.load(urllib.request.urlopen(sys.argv[1] + "api/status", timeout=10))
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("the web app did not answer")
assert status["counts"]["image"] == 12, status
print("serve: /api/status answers,", status["counts"])
PYEOF
echo "the installed wheel works"
