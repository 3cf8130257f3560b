#!/usr/bin/env bash
# Cost of `ct3d train --recompute-batch-norm` ("precise BN"): the same training run without and
# with the flag, back to back on the demo's phantoms (48³, the recipe of README's "What the maps
# show, measured"). Prints each run's epoch seconds (from history.csv) and the last epoch's line:
# the training loss must be identical, only the validation columns differ.
#
#   bench/precise_bn.sh             # 10 epochs, seed 0
#   EPOCHS=30 SEED=1 bench/precise_bn.sh
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${EPOCHS:-10}
seed=${SEED:-0}
cargo build --release -q --workspace
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(rustc --version)"
target/release/ct3d demo --out "$work/demo" > /dev/null
for flag in "" --recompute-batch-norm; do
    run="$work/run${flag:+-precise}"
    target/release/ct3d train --data "$work/demo/data" --size 48,48,48 --batch-size 4 \
        --learning-rate 1e-3 --batch-norm-momentum 0.9 --epochs "$epochs" --patience "$epochs" \
        --seed "$seed" --out "$run" --augment rotate,flip,affine,intensity,noise $flag > /dev/null
    seconds=$(awk -F, 'NR > 1 { s += $7 } END { printf "%.1f", s }' "$run/history.csv")
    echo "${flag:-plain}: $epochs epochs in $seconds s; last epoch $(tail -n 1 "$run/history.csv")"
done
