#!/usr/bin/env bash
# The volume pipeline against the Python reference (nibabel + scipy, the Keras example's code),
# on the same files, in one run. Prints JSON lines; BENCHMARKS.md quotes them.
#
#   bench/volume.sh              # RUNS=7 timed runs per measurement, SCANS=200 for the dataset part
#   RUNS=3 SCANS=40 bench/volume.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-7}
scans=${SCANS:-200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release -q -p ct3d-cli -p ct3d-volume --example bench_preprocess
bin=target/release/ct3d

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $(rustc --version); $(python3 -c 'import scipy, nibabel, numpy; print(f"scipy {scipy.__version__}, nibabel {nibabel.__version__}, numpy {numpy.__version__}")')"

echo "# one MosMedData-shaped scan: 512x512x50 int16 .nii.gz (phantom)"
"$bin" synth --out "$work/one" --normal 1 --abnormal 0 --depth 50 --seed 1 >/dev/null
scan=$(ls "$work"/one/CT-0/*.nii.gz)
python3 bench/reference_preprocess.py --runs "$runs" --scan "$scan"
target/release/examples/bench_preprocess "$runs" --scan "$scan"

echo "# a dataset of $scans phantom scans (512x512, 30-70 slices): the seed's serial loop vs ct3d prepare"
"$bin" synth --out "$work/data" --normal $((scans / 2)) --abnormal $((scans - scans / 2)) --seed 2 >/dev/null
python3 bench/reference_preprocess.py --runs 1 --scan "$scan" --dataset "$work/data" | grep process_dataset
for pass in cold warm; do
  start=$EPOCHREALTIME
  "$bin" prepare --data "$work/data" --cache "$work/cache" >/dev/null
  end=$EPOCHREALTIME
  ms=$(python3 -c "print(round(($end - $start) * 1000, 1))")
  echo "{\"bench\": \"ct3d_prepare_$pass\", \"files\": $scans, \"threads\": $(nproc), \"total_ms\": $ms}"
done
