#!/usr/bin/env bash
# Run ON THE GPU MACHINE, from the repository root (see scripts/gpu/prepare.sh for the calls).
#   stash      keep this call's onnxruntime-gpu part in /tmp/ortw (calls 1-5)
#   setup      stash, then install everything into /tmp/site and check that CUDA works
#   tests      setup, then the GPU tests (pytest -m gpu) and the CLI's doctor
#   encoders   setup, then benchmarks.encoders --device cuda
#   ingest     setup, then benchmarks.ingest --device cuda (4000x3000 and 640x480)
#   all        tests, encoders and ingest (may outrun one call's 10 minutes)
# Results go to $OUT (the device tool brings that folder back).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/ortw "$OUT"
cp .gpuwhl/c*/part* /tmp/ortw/ 2>/dev/null || true
if [ -f .gpuwhl/c5/wheel-name ]; then cp .gpuwhl/c5/wheel-name /tmp/ortw/; fi
step=${1:-all}
[ "$step" = stash ] && { ls /tmp/ortw; exit 0; }

if [ ! -f /tmp/site/.ready ]; then
  n=$(ls /tmp/ortw/part0* | wc -l)
  [ "$n" = 6 ] || { echo "have $n of 6 onnxruntime-gpu parts (the machine went back between calls?): start again" >&2; exit 1; }
  wheel=/tmp/$(cat /tmp/ortw/wheel-name)
  cat /tmp/ortw/part0* > "$wheel"
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$wheel" .gpuwhl/deps/*.whl
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .gpuwhl/deps/hnswlib-*.tar.gz
  touch /tmp/site/.ready
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export MMSEARCH_HOME=/tmp/mmsearch-home
python3 -c "import onnxruntime, tokenizers, hnswlib, typer, rich, pypdfium2, platformdirs, filelock, watchdog, chardet, \
numpy, PIL, av, starlette, uvicorn, rapidocr, pypdf, fpdf, psutil, mmsearch.api, mmsearch.cli, mmsearch.web.app; \
print('runtime imports ok')"
python3 -c "import torch, transformers, onnx, onnxscript, mmsearch_export; print('export imports ok')"
python3 -m mmsearch doctor | tee "$OUT/doctor.txt"
python3 -m mmsearch doctor --json | python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin)['cuda'] else 1)" \
  || { echo "CUDA does not work here: see doctor above" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" || true

run_tests() { python3 -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tee "$OUT/tests-gpu.txt"; }
run_encoders() { python3 -m benchmarks.encoders --device cuda --json "$OUT/encoders-cuda.json" 2>&1 | tee "$OUT/encoders-cuda.txt"; }
run_ingest() {
  python3 -m benchmarks.ingest --device cuda --n 256 --sizes 4000x3000,640x480 --repeat 1 \
    --json "$OUT/ingest-cuda.json" 2>&1 | tee "$OUT/ingest-cuda.txt"
}
case "$step" in
  setup) ;;
  tests) run_tests ;;
  encoders) run_encoders ;;
  ingest) run_ingest ;;
  all) run_tests; run_encoders; run_ingest ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
esac
