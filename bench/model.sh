#!/usr/bin/env bash
# The seed model on ct3d (burn, flex CPU backend) against TensorFlow/Keras on the same machine, in one
# run: batch-2 training step, one-scan inference, one epoch of 140 + 60 scans at 128x128x64, and the
# peak RSS of that epoch. BENCHMARKS.md quotes its output.
#
# Shared machines drift by 10-20 % within minutes, so the step and inference measurements run in
# ROUNDS rounds, each timing ct3d (default kernels), ct3d with --no-avx512-kernels and TensorFlow
# back to back: compare the ratios within a round, not absolute times across runs.
#
#   PYTHON=/tmp/tfenv/bin/python bench/model.sh     # a Python with tensorflow-cpu and scipy
#   REPEATS=5 ROUNDS=3 EPOCH=0 bench/model.sh       # step and inference only
#   BURN_OPS=1 bench/model.sh                       # also burn's generic ops (slow)
#   BEFORE=/tmp/old/ct3d bench/model.sh             # also an older build, in every round
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
repeats=${REPEATS:-5}
rounds=${ROUNDS:-3}
epoch=${EPOCH:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release -q -p ct3d-cli
bin=target/release/ct3d
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/ {print $2}') GiB"
echo "# $(rustc --version); $("$python" -c 'import tensorflow as tf; print("tensorflow", tf.__version__)' 2>/dev/null)"
echo "# AVX-512: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"

for round in $(seq "$rounds"); do
  echo "# round $round: ct3d bench (random data), default kernels (AVX-512 ones where the CPU has them)"
  "$bin" bench --repeats "$repeats"
  echo "# round $round: ct3d bench --no-avx512-kernels (the general fused kernels only)"
  "$bin" bench --repeats "$repeats" --no-avx512-kernels
  if [ -n "${BEFORE:-}" ]; then
    echo "# round $round: $BEFORE bench (an older build)"
    "$BEFORE" bench --repeats "$repeats"
  fi
  echo "# round $round: TensorFlow/Keras"
  "$python" bench/reference_keras.py --repeats "$repeats" 2>/dev/null
done
if [ "${BURN_OPS:-0}" = 1 ]; then
  echo "# ct3d bench (random data), burn's generic ops (--burn-ops: what ct3d ran before the fused kernels)"
  "$bin" bench --repeats "$repeats" --burn-ops
fi

if [ "$epoch" = 1 ]; then
  echo "# TensorFlow/Keras: one epoch of 140 + 60 scans (its script also repeats the step timings)"
  "$python" bench/reference_keras.py --repeats "$repeats" --epoch 2>/dev/null
  echo "# ct3d: one epoch of 140 + 60 phantom scans at 128x128x64 (cache prepared beforehand)"
  "$bin" synth --out "$work/data" --normal 100 --abnormal 100 --seed 3 >/dev/null
  "$bin" prepare --data "$work/data" --cache "$work/cache" >/dev/null
  /usr/bin/time -v -o "$work/time.txt" "$bin" train --data "$work/data" --cache "$work/cache" \
    --out "$work/run" --epochs 1 --seed 0 >/dev/null
  seconds=$(tail -n 1 "$work/run/history.csv" | cut -d, -f7)
  rss_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time.txt")
  python3 -c "import json; print(json.dumps({'bench': 'ct3d_epoch', 'train': 140, 'validation': 60, 'seconds': round($seconds, 2), 'peak_rss_gib': round($rss_kib / 2**20, 3)}))"
fi
