#!/usr/bin/env bash
# ResNet-18 (MedicalNet layout) on the CPU: ct3d against PyTorch (oneDNN) in one run, one
# training step (batch 2, 128x128x64) and a one-volume prediction. BENCHMARKS.md quotes it.
#
#   PYTHON=/tmp/torchenv/bin/python bench/resnet.sh    # a Python with torch (CPU) and monai
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
repeats=${REPEATS:-3}
cargo build --release -q -p ct3d-cli
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# ct3d bench --arch resnet18"
target/release/ct3d bench --arch resnet18 --repeats "$repeats"
echo "# PyTorch + MONAI resnet18"
"$python" bench/reference_torch_resnet.py --repeats "$repeats"
