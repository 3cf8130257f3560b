#!/usr/bin/env bash
# Throughput of predicting a folder: `ct3d predict` over SCANS phantom scans (512×512, 30–70
# slices, gzip NIfTI: MosMedData's geometry) against the Keras example's loop (nibabel + scipy
# process_scan, then model.predict per scan) on the same files, in one run. Both at the seed's
# 128×128×64; ct3d reads and preprocesses a scan ahead while the network runs on the one before.
#
#   PYTHON=/path/to/venv/bin/python bench/predict.sh      # tensorflow-cpu, scipy, nibabel
#   SCANS=50 bench/predict.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
scans=${SCANS:-200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release -q -p ct3d-cli
bin=target/release/ct3d
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/ {print $2}') GiB"
echo "# $(rustc --version); $("$python" -c 'import tensorflow as tf; print("tensorflow", tf.__version__)' 2>/dev/null)"

half=$((scans / 2))
"$bin" synth --out "$work/data" --normal "$half" --abnormal "$((scans - half))" --seed 7 >/dev/null
# A run to predict with: the seed CNN at 128×128×64, one epoch on a few scans (its weights do not
# change the speed).
"$bin" synth --out "$work/small" --normal 3 --abnormal 3 --seed 8 >/dev/null
"$bin" train --data "$work/small" --out "$work/run" --epochs 1 --seed 1 >/dev/null
files=$(ls "$work"/data/CT-0/*.nii.gz "$work"/data/CT-23/*.nii.gz)

echo "# ct3d predict --csv over $scans scans (files read from the page cache after a first pass)"
"$bin" predict --run "$work/run" $files --csv >/dev/null   # warm the page cache
start=$(date +%s.%N)
"$bin" predict --run "$work/run" $files --csv >/dev/null
end=$(date +%s.%N)
python3 -c "import json; s=$end-$start; print(json.dumps({'bench': 'ct3d_predict', 'scans': $scans, 'seconds': round(s, 2), 'scans_per_second': round($scans / s, 3)}))"

echo "# The Keras example's loop (process_scan + model.predict per scan)"
"$python" bench/reference_predict.py $files 2>/dev/null
