#!/usr/bin/env bash
# The main job on a toy collection, without any download: draw pictures and documents, index them,
# query them. Uses the project's own trained model (tests/fixtures/toyclip) when it is there; a
# fresh checkout without it gets a tiny random-weight CLIP, which shows the plumbing, not the search.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
work=${1:-/tmp/mmsearch-try}
model=tests/fixtures/toyclip
if [ ! -f "$model/manifest.json" ]; then
  model="$work/tiny-clip"
  [ -f "$model/manifest.json" ] || python -c "
from pathlib import Path; import sys
from mmsearch_export import export_bundle
from mmsearch_export.tiny import make_clip_checkpoint
w = Path(sys.argv[1]); export_bundle(make_clip_checkpoint(w / 'tiny-ckpt'), w / 'tiny-clip', variants=('fp32', 'int8'), overwrite=True)
" "$work"
  echo "note: tests/fixtures/toyclip is missing; using a tiny random-weight CLIP (results are not meaningful)" >&2
fi
python -m benchmarks.toyworld --out "$work/photos" --n 200 --seed 7 --caption-docs --max-size 1600
mmsearch index "$work/photos" --index "$work/index" --model "$model"
mmsearch query "a large red circle" --index "$work/index" --type image -k 5
