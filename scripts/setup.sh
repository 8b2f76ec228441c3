#!/usr/bin/env bash
# Dev setup from scratch: a virtualenv in .venv with the runtime, the export step and the test tools.
# torch is pinned first: a bare `torch` would pull a multi-GB CUDA build where a CPU one is meant.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[export,dev]'
echo "Ready: . .venv/bin/activate"
