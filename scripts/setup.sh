#!/usr/bin/env bash
# Dev setup from scratch: a virtualenv in .venv with the runtime (CPU onnxruntime), the export step, Ray
# (the distributed extra) and the test tools, at the versions in constraints.txt (what CI last passed
# with; refresh it on purpose with scripts/refresh-constraints.sh). torch is pinned first: a bare
# `torch` would pull a multi-GB CUDA build where a CPU one is meant.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -c constraints.txt -e '.[cpu,export,dev,web,distributed]'
echo "Ready: . .venv/bin/activate"
