#!/usr/bin/env python3
"""Golden fixtures for ct3d-volume's preprocessing, rotation and zoom parity tests.

Regenerate (from the repository root) with scipy 1.17.1 and numpy 2.x:

    python3 tools/golden/gen_golden.py

Writes `crates/ct3d-volume/tests/data/golden/`: one `.npy` per array (Fortran order, so the raw
data is x-fastest like `Volume`) and `cases.json`, the manifest `tests/parity.rs` reads. Every
scipy call the Rust side must reproduce is spelled out below, with the seed's own expressions
(`1 / (W / 128)` zoom factors, the HU window as boolean-mask assignments, clipping after rotation).
Inputs come from `np.random.default_rng(seed)`, so the output is deterministic.

HU inputs are stored as int16 (they are integers, like real scans), other arrays as float32, and
the spline-prefilter references as float64.
"""

import json
import os
import struct
import sys

import numpy as np
import scipy
from scipy import ndimage, special

OUT_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "crates", "ct3d-volume", "tests", "data", "golden",
)


# --- the seed's pipeline, generalised only in the window and the target size -------------------

def seed_normalize(volume, hu_min, hu_max):
    """The seed's `normalize`: float64 in, float32 out."""
    volume = volume.copy()
    volume[volume < hu_min] = hu_min
    volume[volume > hu_max] = hu_max
    volume = (volume - hu_min) / (hu_max - hu_min)
    return volume.astype("float32")


def seed_resize(img, size):
    """The seed's `resize_volume` with (desired_width, desired_height, desired_depth) = size."""
    desired_width, desired_height, desired_depth = size
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


def seed_process(hu_f64, hu_min, hu_max, size):
    """`process_scan` after `get_fdata()`: normalize, then rotate 90 and zoom."""
    return seed_resize(seed_normalize(hu_f64, hu_min, hu_max), size)


def seed_augment(volume, angle):
    """The seed's `scipy_rotate` for one chosen angle."""
    volume = ndimage.rotate(volume, angle, reshape=False)
    volume[volume < 0] = 0
    volume[volume > 1] = 1
    return volume


# --- deterministic inputs -------------------------------------------------------------------------

def phantom_hu(shape, seed):
    """An int16 chest-like phantom: air, a body, two lungs, a bone ring, noise, and spikes far
    outside the [-1000, 400] window (metal, below-air padding) plus exact window edges."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x = (np.arange(nx)[:, None, None] - (nx - 1) / 2) / (nx / 2)
    y = (np.arange(ny)[None, :, None] - (ny - 1) / 2) / (ny / 2)
    z = np.arange(nz)[None, None, :] / max(nz - 1, 1)
    vol = np.full(shape, -1024.0)
    body = (x / 0.9) ** 2 + (y / 0.75) ** 2 < 1
    vol = np.where(body, 40.0 + 30 * z, vol)
    ring = body & ((x / 0.8) ** 2 + (y / 0.65) ** 2 > 1)
    vol = np.where(ring, 700.0 + 600 * np.abs(x), vol)
    for cx in (-0.4, 0.35):
        lung = ((x - cx) / 0.3) ** 2 + (y / (0.45 + 0.1 * z)) ** 2 < 1
        vol = np.where(lung, -850.0 + 120 * y, vol)
    vol = vol + rng.normal(0, 60, shape)
    spikes = rng.random(shape)
    vol = np.where(spikes < 0.01, 3000.0, vol)
    vol = np.where(spikes > 0.99, -2048.0, vol)
    flat = vol.reshape(-1)
    idx = rng.choice(flat.size, size=min(20, flat.size), replace=False)
    flat[idx[::2]] = -1000
    flat[idx[1::2]] = 400
    return np.clip(np.round(vol), -32768, 32767).astype(np.int16)


def structured_unit(shape, seed):
    """A float32 volume in [0, 1] with smooth gradients, disks and a hard-edged square (so cubic
    overshoot makes the augmentation's clipping matter), plus mild noise."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x = np.arange(nx)[:, None, None] / max(nx - 1, 1)
    y = np.arange(ny)[None, :, None] / max(ny - 1, 1)
    z = np.arange(nz)[None, None, :] / max(nz - 1, 1)
    vol = 0.2 + 0.3 * x * (1 - y) + 0.1 * z
    disk = (x - 0.35) ** 2 + (y - 0.6) ** 2 < 0.05 + 0.02 * z
    vol = np.where(disk, 0.95, vol)
    square = (np.abs(x - 0.7) < 0.12) & (np.abs(y - 0.3) < 0.15)
    vol = np.where(square, 0.0, vol)
    vol = vol + rng.normal(0, 0.02, shape)
    return np.clip(vol, 0, 1).astype(np.float32)


# --- writing ---------------------------------------------------------------------------------------

def save(name, array, dtype):
    path = os.path.join(OUT_DIR, name)
    np.save(path, np.asfortranarray(np.asarray(array).astype(dtype)))
    return name


def f64_bits(value):
    return struct.unpack("<Q", struct.pack("<d", float(value)))[0]


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for old in os.listdir(OUT_DIR):
        if old.endswith(".npy") or old == "cases.json":
            os.remove(os.path.join(OUT_DIR, old))

    manifest = {
        "generator": "tools/golden/gen_golden.py",
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "preprocess": [],
        "augment": [],
        "rotate": [],
        "zoom": [],
        "prefilter": [],
        "angles": [],
    }

    # Full preprocessing: (name, input shape, target size, window, seed).
    # Square planes take the fused permutation path; planes whose sides differ by an even number
    # land on integer coordinates too; odd differences need the general cubic-spline path.
    preprocess_cases = [
        ("sq_d9_up", (40, 40, 9), (16, 16, 12), (-1000.0, 400.0), 1),
        ("sq_d24", (40, 40, 24), (16, 16, 8), (-1000.0, 400.0), 2),
        ("sq_d70", (32, 32, 70), (16, 16, 8), (-1000.0, 400.0), 3),
        ("rect_even_d24", (36, 44, 24), (16, 16, 8), (-1000.0, 400.0), 4),
        ("rect_odd_d9", (37, 44, 9), (16, 12, 8), (-1000.0, 400.0), 5),
        ("rect_odd_d24", (44, 35, 24), (12, 16, 10), (-1000.0, 400.0), 6),
        # 30 -> 8 and 59 -> 8: (out-1) * ((in-1)/(out-1)) > in-1, so scipy's last plane is 0.
        ("zoom_edge", (30, 30, 59), (8, 8, 8), (-1000.0, 400.0), 7),
        ("zoom_edge_rect", (32, 30, 30), (16, 8, 8), (-1000.0, 400.0), 8),
        ("upsample_xy", (12, 12, 5), (16, 16, 8), (-1000.0, 400.0), 9),
        ("no_zoom", (16, 16, 8), (16, 16, 8), (-1000.0, 400.0), 10),
        ("window_lung", (24, 24, 6), (10, 10, 4), (-1350.0, 150.0), 11),
    ]
    for name, shape, size, (hu_min, hu_max), seed in preprocess_cases:
        hu = phantom_hu(shape, seed)
        expected = seed_process(hu.astype(np.float64), hu_min, hu_max, size)
        assert expected.dtype == np.float32
        manifest["preprocess"].append({
            "name": name,
            "input": save(f"pre_{name}_in.npy", hu, np.int16),
            "expected": save(f"pre_{name}_out.npy", expected, np.float32),
            "hu_min": hu_min,
            "hu_max": hu_max,
            "size": list(size),
            "last_plane_zero": [bool(np.all(np.take(expected, -1, axis=a) == 0)) for a in range(3)],
        })

    # Non-integer HU values (a float32 scan): the window arithmetic must be exact too.
    rng = np.random.default_rng(12)
    hu_float = rng.uniform(-1300, 700, (20, 20, 6)).astype(np.float32)
    hu_float.reshape(-1)[:4] = [-1000.0, 400.0, -999.999, 399.9999]
    manifest["preprocess"].append({
        "name": "float_hu",
        "input": save("pre_float_hu_in.npy", hu_float, np.float32),
        "expected": save(
            "pre_float_hu_out.npy",
            seed_process(hu_float.astype(np.float64), -1000.0, 400.0, (20, 20, 6)),
            np.float32,
        ),
        "hu_min": -1000.0,
        "hu_max": 400.0,
        "size": [20, 20, 6],
        "last_plane_zero": [False, False, False],
    })

    # Augmentation: every seed angle on a structured [0, 1] volume.
    unit = structured_unit((32, 24, 6), 20)
    unit_name = save("aug_in.npy", unit, np.float32)
    for angle in (-20, -10, -5, 5, 10, 20):
        manifest["augment"].append({
            "angle": angle,
            "input": unit_name,
            "expected": save(f"aug_{angle}.npy", seed_augment(unit.copy(), angle), np.float32),
        })

    # Plain rotation (no clipping): arbitrary angles, 90 on odd/even non-square planes, thin planes.
    rotate_cases = [
        ("unit_137_5", unit, 137.5),
        ("unit_m33", unit, -33.0),
        ("unit_90", unit, 90.0),
        ("odd_90", structured_unit((7, 10, 3), 21), 90.0),
        ("thin_x", structured_unit((1, 5, 3), 22), 10.0),
        ("thin_y", structured_unit((6, 1, 2), 23), 30.0),
        ("two_by_three", structured_unit((2, 3, 2), 24), 45.0),
        ("deep", structured_unit((9, 8, 37), 25), 12.5),
    ]
    for name, vol, angle in rotate_cases:
        manifest["rotate"].append({
            "name": name,
            "angle": angle,
            "input": save(f"rot_{name}_in.npy", vol, np.float32),
            "expected": save(
                f"rot_{name}_out.npy",
                ndimage.rotate(vol, angle, axes=(1, 0), reshape=False, order=3,
                               mode="constant", cval=0.0, prefilter=True),
                np.float32,
            ),
        })

    # Linear zoom on its own: factors, including length-1 axes and the rounding edge.
    zoom_cases = [
        ("mixed", (11, 7, 5), (1 / (11 / 4), 2.0, 0.6), 30),
        ("edge_x", (30, 3, 2), (1 / (30 / 8), 1.0, 1.5), 31),
        ("len1", (1, 5, 4), (3.0, 0.2, 1.0), 32),
        ("identity", (4, 3, 2), (1.0, 1.0, 1.0), 33),
    ]
    for name, shape, factors, seed in zoom_cases:
        vol = np.random.default_rng(seed).random(shape).astype(np.float32)
        manifest["zoom"].append({
            "name": name,
            "factors": list(factors),
            "factor_bits": [f64_bits(f) for f in factors],
            "input": save(f"zoom_{name}_in.npy", vol, np.float32),
            "expected": save(
                f"zoom_{name}_out.npy",
                ndimage.zoom(vol, factors, order=1, mode="constant", cval=0.0, grid_mode=False),
                np.float32,
            ),
        })

    # The cubic B-spline prefilter of single planes, in float64.
    for name, shape, seed in (("7x5", (7, 5), 40), ("1x4", (1, 4), 41), ("2x3", (2, 3), 42),
                              ("40x1", (40, 1), 43)):
        plane = np.random.default_rng(seed).random(shape).astype(np.float32)
        manifest["prefilter"].append({
            "name": name,
            "input": save(f"spl_{name}_in.npy", plane, np.float32),
            "expected": save(
                f"spl_{name}_out.npy",
                ndimage.spline_filter(plane, order=3, output=np.float64, mode="constant"),
                np.float64,
            ),
        })

    # scipy.special.cosdg / sindg, as raw f64 bits.
    for angle in (-20, -10, -5, 5, 10, 20, 90, -90, 180, 270, 360, 45, 137.5, -33.0, 12.5, 30):
        manifest["angles"].append({
            "angle": angle,
            "cos_bits": f64_bits(special.cosdg(angle)),
            "sin_bits": f64_bits(special.sindg(angle)),
        })

    with open(os.path.join(OUT_DIR, "cases.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT_DIR, n)) for n in os.listdir(OUT_DIR))
    print(f"wrote {OUT_DIR} ({total} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
