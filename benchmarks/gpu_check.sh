#!/usr/bin/env bash
# The GPU check: on a machine with one GPU, in at most 8 minutes, 200-step fits at precision
# 32 / bf16-mixed / 16-mixed, compile off and on, printed as one markdown table
# (benchmarks/gpu_check.py; also written to runs/gpu_check/table.md, and to $OUT when set).
#
#   make gpu-wheels    # where there is internet: wheels + Fashion-MNIST into .gpu-wheels/
#   make gpu-check     # on the GPU machine, from a copy of the repo (with .gpu-wheels/)
#
# Needs python3 with torch, lightning, torchmetrics and torchvision. The other dependencies,
# when missing, are installed into .gpu-deps/ (on PYTHONPATH, nothing system-wide): from
# .gpu-wheels/ when it is there (no internet needed), else from the package index.
# Arguments are passed to gpu_check.py (e.g. --steps 50, or -- --data.root DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH="$PWD/.gpu-deps:$PWD${PYTHONPATH:+:$PYTHONPATH}"

missing=()
for pair in faiss:faiss-cpu jsonargparse:jsonargparse docstring_parser:docstring-parser \
            typeshed_client:typeshed-client litdata:litdata; do
  "$PY" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  echo "installing into .gpu-deps/: ${missing[*]}"
  if [ -d .gpu-wheels ]; then
    "$PY" -m pip install -q --no-deps --no-index --find-links .gpu-wheels --target .gpu-deps "${missing[@]}"
  else
    "$PY" -m pip install -q --target .gpu-deps "${missing[@]}"
  fi
fi

raw=data/FashionMNIST/raw
if [ ! -f "$raw/train-images-idx3-ubyte" ]; then
  if [ -d .gpu-wheels/fashion-mnist ]; then
    mkdir -p "$raw"
    for gz in .gpu-wheels/fashion-mnist/*.gz; do gunzip -c "$gz" > "$raw/$(basename "$gz" .gz)"; done
  else
    "$PY" -m cpc.data.prepare fashion_mnist --root data
  fi
fi

"$PY" - <<'PYEOF'
import importlib.util, sys
need = ["torch", "torchvision", "lightning", "torchmetrics", "tensorboard", "rich", "yaml",
        "numpy", "faiss", "jsonargparse", "docstring_parser", "typeshed_client"]
missing = [name for name in need if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages: {' '.join(missing)} (pip install them)")
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available())
PYEOF
timeout "${GPU_CHECK_SECONDS:-450}" "$PY" benchmarks/gpu_check.py "$@"
if [ -n "${OUT:-}" ]; then cp runs/gpu_check/table.md "$OUT/"; fi
