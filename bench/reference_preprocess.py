#!/usr/bin/env python3
"""Reference timings of the Keras example's preprocessing with nibabel + scipy.

Times, on the shapes ct3d benchmarks (`cargo run --release -p ct3d-volume --example
bench_preprocess`):

- `process_scan`: the seed's whole per-scan step (nib.load + get_fdata + normalize + rotate 90 +
  zoom) on a 512x512x50 int16 `.nii.gz` this script writes to a temporary directory (or on
  `--scan FILE`);
- `process_array`: the same without file reading (normalize + resize on the in-memory array),
  the part `ct3d_volume::preprocess::process_volume` replaces;
- `read_only`: nib.load + get_fdata alone;
- `rotate_augment`: the seed's `scipy_rotate` (ndimage.rotate(reshape=False) + clip) of a
  128x128x64 float32 volume, cycling through the seed's angles;
- `process_dataset` (with `--dataset DIR`): the seed's serial list comprehension over a dataset.

Prints one JSON object per measurement (median and minimum of --runs runs, in milliseconds).
The functions below are the seed's code (3d-image-classification-from-ct-scans.txt), unchanged
except for names.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import nibabel as nib
import numpy as np
import scipy
from scipy import ndimage


def read_nifti_file(filepath):
    """Read and load volume"""
    scan = nib.load(filepath)
    scan = scan.get_fdata()
    return scan


def normalize(volume):
    """Normalize the volume"""
    min = -1000
    max = 400
    volume[volume < min] = min
    volume[volume > max] = max
    volume = (volume - min) / (max - min)
    volume = volume.astype("float32")
    return volume


def resize_volume(img):
    """Resize across z-axis"""
    desired_depth = 64
    desired_width = 128
    desired_height = 128
    current_depth = img.shape[-1]
    current_width = img.shape[0]
    current_height = img.shape[1]
    depth = current_depth / desired_depth
    width = current_width / desired_width
    height = current_height / desired_height
    depth_factor = 1 / depth
    width_factor = 1 / width
    height_factor = 1 / height
    img = ndimage.rotate(img, 90, reshape=False)
    img = ndimage.zoom(img, (width_factor, height_factor, depth_factor), order=1)
    return img


def process_scan(path):
    """Read and resize volume"""
    volume = read_nifti_file(path)
    volume = normalize(volume)
    volume = resize_volume(volume)
    return volume


ANGLES = [-20, -10, -5, 5, 10, 20]


def scipy_rotate(volume, angle):
    volume = ndimage.rotate(volume, angle, reshape=False)
    volume[volume < 0] = 0
    volume[volume > 1] = 1
    return volume


def phantom_hu(shape, seed=0):
    """A chest-like int16 HU phantom: air, body, lungs, bone ring, noise."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    u = (np.arange(nx)[:, None, None] / nx - 0.5) * 2
    v = (np.arange(ny)[None, :, None] / ny - 0.5) * 2
    z = np.arange(nz)[None, None, :]
    body = (u / 0.9) ** 2 + (v / 0.75) ** 2 < 1
    vol = np.where(body, 40.0, -1024.0) * np.ones(shape)
    vol = np.where(body & ((u / 0.8) ** 2 + (v / 0.65) ** 2 > 1), 900.0, vol)
    for cx in (-0.4, 0.35):
        vol = np.where(((u - cx) / 0.3) ** 2 + (v / (0.45 + 0.002 * z)) ** 2 < 1, -850.0, vol)
    vol = vol + rng.uniform(-40, 40, shape)
    return np.round(vol).astype(np.int16)


def timed(runs, fn):
    fn(0)  # warm-up
    times = []
    for run in range(runs):
        start = time.perf_counter()
        fn(run)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def report(name, shape, runs, result):
    median, best = result
    print(json.dumps({
        "bench": name, "shape": list(shape), "runs": runs,
        "median_ms": round(median, 3), "min_ms": round(best, 3),
        "scipy": scipy.__version__, "nibabel": nib.__version__,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--scan", help="time process_scan on this file instead of a generated phantom")
    parser.add_argument("--dataset", help="also time the seed's serial loop of process_scan over "
                        "every .nii/.nii.gz file under this folder (once)")
    args = parser.parse_args()

    scan_shape = (512, 512, 50)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.scan
        if path is None:
            path = os.path.join(tmp, "scan.nii.gz")
            affine = np.diag([0.7, 0.7, 8.0, 1.0])
            nib.save(nib.Nifti1Image(phantom_hu(scan_shape), affine), path)
        scan_shape = nib.load(path).shape

        report("process_scan", scan_shape, args.runs, timed(args.runs, lambda _: process_scan(path)))
        report("read_only", scan_shape, args.runs, timed(args.runs, lambda _: read_nifti_file(path)))
        hu = read_nifti_file(path)
        report("process_array", scan_shape, args.runs,
               timed(args.runs, lambda _: resize_volume(normalize(hu.copy()))))
        unit = resize_volume(normalize(hu.copy()))

    report("rotate_augment", unit.shape, args.runs,
           timed(args.runs, lambda run: scipy_rotate(unit.copy(), ANGLES[run % len(ANGLES)])))

    if args.dataset:
        files = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(args.dataset)
            for name in names
            if name.endswith((".nii", ".nii.gz"))
        )
        start = time.perf_counter()
        scans = np.array([process_scan(f) for f in files])
        elapsed = (time.perf_counter() - start) * 1e3
        print(json.dumps({
            "bench": "process_dataset", "files": len(files), "shape": list(scans.shape),
            "total_ms": round(elapsed, 1), "scipy": scipy.__version__, "nibabel": nib.__version__,
        }))


if __name__ == "__main__":
    main()
