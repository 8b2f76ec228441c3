#!/usr/bin/env bash
# Rewrite constraints.txt from a fresh install of the newest releases the project's ranges allow, then
# run the tests against them: commit the file only if they pass.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q torch==2.13.0
"$tmp/venv/bin/python" -m pip install -q -e '.[cpu,export,dev,web,distributed]'
{ echo "# Versions CI installs (scripts/setup.sh -c). Refreshed by scripts/refresh-constraints.sh."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^mmsearch'; } > constraints.txt
"$tmp/venv/bin/python" -m pytest -q
rm -rf "$tmp"
