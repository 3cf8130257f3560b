#!/usr/bin/env bash
# ct3d on an NVIDIA GPU against PyTorch + cuDNN on the same card, in one run. BENCHMARKS.md quotes
# its output. Needs a ct3d built with `--features cuda` (README: "GPU builds"), python3 with torch
# and scipy, and the NVIDIA driver; no CUDA toolkit.
#
#   bench/gpu.sh [CT3D_BINARY]          # default: target/release/ct3d
#   REPEATS=10 SKIP_TORCH=1 bench/gpu.sh
#   T_CHECK=200 T_EPOCHS=200 T_TORCH=120 bench/gpu.sh   # per-step time limits in seconds
#
# Steps, each under its own time limit so one slow part cannot eat the others:
#   1. the same weights on the CPU and the GPU agree (bench --check-cpu, fails above 1e-3 relative),
#      then the batch-2 training step and one-scan inference at 128x128x64 (median of REPEATS);
#   2. three epochs of 140 + 60 phantom scans (cache prepared beforehand), each epoch's seconds
#      and the time the GPU waited for data (the first epoch includes kernel compilation);
#   3. PyTorch: the same measurements in fp32 (TF32 off), then step and inference in TF32 and bf16.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/ct3d}
repeats=${REPEATS:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "# gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
echo "# cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $("$bin" --version); $(python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1)"

echo "## 1. ct3d: CPU/GPU agreement, training step, inference"
timeout "${T_CHECK:-200}" "$bin" bench --device cuda --check-cpu --repeats "$repeats"
echo "exit $?"

echo "## 2. ct3d: epochs of 140 + 60 phantom scans on the GPU"
"$bin" synth --out "$work/data" --normal 100 --abnormal 100 --seed 3 --size-xy 128 >/dev/null &&
  "$bin" prepare --data "$work/data" --cache "$work/cache" >/dev/null &&
  timeout "${T_EPOCHS:-200}" "$bin" train --device cuda --data "$work/data" --cache "$work/cache" \
    --out "$work/run" --epochs 3 --patience 100 --seed 0
echo "exit $?"
[ -f "$work/run/history.csv" ] && cat "$work/run/history.csv"

if [ -z "${SKIP_TORCH:-}" ]; then
  echo "## 3. PyTorch + cuDNN on the same card"
  timeout "${T_TORCH:-120}" python3 bench/reference_torch.py --precision fp32 --repeats "$repeats" --epoch
  for precision in tf32 bf16; do
    timeout 60 python3 bench/reference_torch.py --precision "$precision" --repeats "$repeats"
  done
fi
