#!/usr/bin/env bash
# The augmentation transforms against numpy + scipy (and MONAI's Compose when MONAI=1 and the
# Python has monai and torch), on one 128x128x64 volume, one thread each, in one run. Prints JSON
# lines; BENCHMARKS.md quotes them.
#
#   bench/augment.sh                       # RUNS=21 timed runs per measurement
#   RUNS=7 PYTHON=/path/to/python bench/augment.sh
#   MONAI=1 PYTHON=/venv-with-monai/bin/python bench/augment.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-21}
python=${PYTHON:-python3}

cargo build --release -q -p ct3d-volume --example bench_augment
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $(rustc --version); $("$python" --version 2>&1)"
echo "# ct3d (one rayon thread)"
RAYON_NUM_THREADS=1 target/release/examples/bench_augment "$runs"
echo "# numpy + scipy (single-threaded)"
monai_flag=()
[ -n "${MONAI:-}" ] && monai_flag=(--monai)
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$python" bench/reference_augment.py --runs "$runs" "${monai_flag[@]}"
