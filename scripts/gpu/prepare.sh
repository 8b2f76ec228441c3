#!/usr/bin/env bash
# Run HERE (not on the GPU machine), before a GPU session: the GPU machine reaches no package index,
# so this fetches what it lacks, for its Python 3.12, into .gpuwhl/ (ignored by git):
#   .gpuwhl/c0 .. c5   onnxruntime-gpu 1.31.1 (CUDA 13) in six parts of <= 45 MiB: one per `run`
#                      call, since a call carries 64 MiB at most, the working tree (~9 MiB) included
#   .gpuwhl/deps       the runtime's other dependencies (wheels; hnswlib as an sdist, built there)
# Then, on the GPU machine, six `run` calls back to back (the machine keeps its files while warm;
# if a reply says warm: false, start again from the first):
#   calls 1-5: carry [".gpuwhl/cN"], command: bash scripts/gpu/run.sh stash
#   call 6:    carry [".gpuwhl/c5", ".gpuwhl/deps"], command: bash scripts/gpu/run.sh tests
#   then, no carry needed while the machine stays warm: bash scripts/gpu/run.sh encoders, then ingest
#   (each fits the 10-minute limit of one call; `all` does the three in one call and may not)
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
rm -rf .gpuwhl && mkdir -p .gpuwhl/ort .gpuwhl/deps
"$py" -m pip download -q --no-deps "${plat[@]}" -d .gpuwhl/ort onnxruntime-gpu==1.31.1
(cd .gpuwhl/ort && split -b 45M -d onnxruntime_gpu-*.whl part && ls onnxruntime_gpu-*.whl > name && rm onnxruntime_gpu-*.whl)
for i in 0 1 2 3 4 5; do
  mkdir -p .gpuwhl/c$i
  if [ -f .gpuwhl/ort/part0$i ]; then mv .gpuwhl/ort/part0$i .gpuwhl/c$i/; fi
done
mv .gpuwhl/ort/name .gpuwhl/c5/wheel-name
[ -z "$(ls .gpuwhl/ort)" ] || { echo "onnxruntime-gpu needs more than six parts" >&2; exit 1; }
rmdir .gpuwhl/ort
# What the machine has (tests/test_gpu_scripts.py holds the two lists to pyproject's dependencies)
machine_has="numpy pillow torch sympy packaging typing-extensions transformers onnx huggingface-hub opencv-python-headless"
# and what it lacks, with their own requirements: the runtime's, the web app's (starlette, uvicorn),
# OCR's (rapidocr) and the tests' own; scripts/gpu/run.sh checks every import.
fetch="tokenizers chardet six
  typer click shellingham annotated-doc pydantic pydantic-core annotated-types typing-inspection
  rich markdown-it-py mdurl pygments platformdirs filelock watchdog pathspec pypdfium2 striprtf onnxscript onnx-ir ml-dtypes av
  starlette anyio idna sniffio uvicorn h11
  rapidocr colorlog omegaconf antlr4-python3-runtime pyclipper shapely pyyaml tqdm requests
  pytest pypdf fpdf2 fonttools defusedxml psutil"
echo "the GPU machine has: $machine_has"
# shellcheck disable=SC2086
"$py" -m pip download -q --no-deps "${plat[@]}" -d .gpuwhl/deps $fetch
# hnswlib ships only an sdist; reading its metadata needs pybind11 (kept out of the dev venv).
pb=$(mktemp -d)
"$py" -m pip install -q --target "$pb" pybind11
PYTHONPATH=$pb "$py" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d .gpuwhl/deps hnswlib
rm -rf "$pb"
du -sh .gpuwhl/c* .gpuwhl/deps
