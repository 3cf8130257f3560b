#!/usr/bin/env bash
# Prepares the LLVM that burn's `cuda` feature links (cubecl-llvm, LLVM 23.1) without GitHub access,
# for machines that reach PyPI (or a PyPI mirror) but not github.com, where burn's build script
# would download its LLVM bundle. Usage:
#
#   tools/gpu/offline-llvm.sh [DIR]          # default DIR: ~/.cache/ct3d-llvm
#   XDG_DATA_HOME=DIR/xdg cargo build --release --features cuda
#
# With internet access none of this is needed: `cargo build --release --features cuda` downloads
# the bundle itself. The build needs no CUDA toolkit; the binary needs only the NVIDIA driver
# (libcuda.so.1) at run time: kernels are compiled to PTX in-process.
set -euo pipefail
dir=${1:-$HOME/.cache/ct3d-llvm}
version=23.1.1.post0           # LLVM 23.1 static libraries, built by the MLC project
bundle=tracel-llvm-23.1.0-4    # the folder name tracel-llvm-bundler 23.1.0-4 looks for
python=${PYTHON:-python3}

mkdir -p "$dir/wheels" "$dir/unpacked" "$dir/xdg/tracel"
"$python" -m pip download --no-deps --only-binary=:all: -d "$dir/wheels" \
  "mlc-llvm-static==$version" "mlc-llvm-static-extra-targets==$version"
for wheel in "$dir"/wheels/mlc_llvm_static*-"$version"-*.whl; do
  "$python" -m zipfile -e "$wheel" "$dir/unpacked"
done
llvm="$dir/unpacked/mlc_llvm_static/static"
chmod +x "$llvm"/bin/*
# The bundler skips its download when this sentinel exists in the folder it expects.
touch "$llvm/.tracel-llvm-installed"
ln -sfn "$llvm" "$dir/xdg/tracel/$bundle"
"$llvm/bin/llvm-config" --version
echo
echo "LLVM ready. Build with:"
echo "  XDG_DATA_HOME=$dir/xdg cargo build --release --features cuda"
