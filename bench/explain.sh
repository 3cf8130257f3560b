#!/usr/bin/env bash
# Explanations against inference on the seed CNN at 128x128x64 (issue 14's speed goals: Grad-CAM
# <= 3x one inference, occlusion at the default stride <= 60 s on 2 cores). Prints JSON lines;
# BENCHMARKS.md quotes them.
#
#   bench/explain.sh          # median of 3
#   RUNS=5 bench/explain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
# --workspace: the same burn features as the ct3d binary (a lone -p would rebuild burn).
cargo build --release -q --workspace --examples
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(rustc --version)"
target/release/examples/bench_explain "$runs"
