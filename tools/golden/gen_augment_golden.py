#!/usr/bin/env python3
"""Golden fixtures for the augmentation transforms' parity tests (`tests/augment_parity.rs`).

Regenerate (from the repository root) with scipy 1.17.1 and numpy 2.x:

    python3 tools/golden/gen_augment_golden.py

Writes `crates/ct3d-volume/tests/data/golden/augment/`: one `.npy` per array (Fortran order, so
the raw data is x-fastest like `Volume`) and `cases.json`. Each transform is compared at fixed
parameters (what a random draw would produce) with the numpy/scipy expression spelled out below:

- flip: `np.flip(volume, axes)`;
- affine: the map from the drawn angles, scales and translation (mm) to scipy's
  `(matrix, offset)` is computed here independently, then
  `ndimage.affine_transform(volume, matrix, offset, order, mode, cval=0)`;
- intensity: `volume * np.float32(factor) + np.float32(offset)` on float32;
- gamma: `lo + (hi - lo) * ((v - lo) / (hi - lo)) ** gamma` in float64;
- blur: `ndimage.gaussian_filter(volume, sigma, mode='reflect', truncate=4.0)`;
- noise: ct3d's noise comes from its own generator, so the comparison is statistical: the
  standard normal quantiles `scipy.stats.norm.ppf(p)` that the noise's empirical quantiles must
  match.

Volumes are small (9x8x7 and 6x5x4) so the files stay a few kilobytes.
"""

import json
import os
import struct
import sys

import numpy as np
import scipy
from scipy import ndimage, special, stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import structured_unit  # noqa: E402

OUT_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "crates", "ct3d-volume", "tests", "data", "golden", "augment",
)


def save(name, array, dtype):
    np.save(os.path.join(OUT_DIR, name), np.asfortranarray(np.asarray(array).astype(dtype)))
    return name


def bits(values):
    return [struct.unpack("<Q", struct.pack("<d", float(v)))[0] for v in np.ravel(values)]


def rotation(angles_deg):
    """R = Rz(g) Ry(b) Rx(a), right-handed, about the x, y, z axes (cosdg/sindg: exact at 90)."""
    a, b, g = angles_deg
    ca, sa = special.cosdg(a), special.sindg(a)
    cb, sb = special.cosdg(b), special.sindg(b)
    cg, sg = special.cosdg(g), special.sindg(g)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cg, -sg, 0], [sg, cg, 0], [0, 0, 1]])
    return rz @ ry @ rx


def sampling(shape, spacing, angles_deg, scales, translation_mm):
    """Output voxel o samples input voxel matrix @ o + offset, for the map p -> R S p + t in mm
    about the volume's centre: input_mm = S^-1 R^T (output_mm - t)."""
    d = np.diag(spacing)
    inverse = np.diag(1 / np.asarray(scales)) @ rotation(angles_deg).T
    matrix = np.linalg.inv(d) @ inverse @ d
    centre = (np.asarray(shape) - 1) / 2
    offset = centre - matrix @ centre - np.linalg.inv(d) @ inverse @ np.asarray(translation_mm)
    return matrix, offset


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for old in os.listdir(OUT_DIR):
        os.remove(os.path.join(OUT_DIR, old))
    manifest = {
        "generator": "tools/golden/gen_augment_golden.py",
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "flip": [], "affine": [], "intensity": [], "gamma": [], "blur": [], "noise": {},
    }
    vol = structured_unit((9, 8, 7), 50)
    small = structured_unit((6, 5, 4), 51)
    inputs = {"vol": save("in_vol.npy", vol, np.float32), "small": save("in_small.npy", small, np.float32)}
    volumes = {"vol": vol, "small": small}

    for axes in ([True, False, False], [False, True, True], [True, True, True]):
        flip_axes = tuple(k for k in range(3) if axes[k])
        name = "flip_" + "".join("xyz"[k] for k in flip_axes)
        manifest["flip"].append({
            "axes": axes, "input": inputs["vol"],
            "expected": save(f"{name}.npy", np.flip(vol, flip_axes), np.float32),
        })

    # (name, input, spacing mm, angles deg, scales, translation mm, order, mode)
    affine_cases = [
        ("lin_const", "vol", (0.8, 1.0, 2.5), (7.0, -11.0, 23.0), (0.9, 1.1, 1.05), (1.5, -0.5, 0.7), 1, "constant"),
        ("lin_near", "vol", (0.8, 1.0, 2.5), (7.0, -11.0, 23.0), (0.9, 1.1, 1.05), (1.5, -0.5, 0.7), 1, "nearest"),
        ("cub_const", "vol", (1.0, 1.0, 1.0), (-13.0, 4.0, 31.0), (1.08, 1.08, 1.08), (-0.6, 1.2, 0.3), 3, "constant"),
        ("cub_near", "vol", (1.0, 1.0, 1.0), (-13.0, 4.0, 31.0), (1.08, 1.08, 1.08), (-0.6, 1.2, 0.3), 3, "nearest"),
        ("cub_near_aniso", "small", (0.7, 0.9, 3.0), (20.0, 0.0, -40.0), (0.85, 1.0, 1.2), (0.4, 0.0, -2.0), 3, "nearest"),
        ("lin_z_quarter", "small", (1.0, 1.0, 1.0), (0.0, 0.0, 90.0), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), 1, "constant"),
    ]
    for name, src, spacing, angles, scales, shift, order, mode in affine_cases:
        v = volumes[src]
        matrix, offset = sampling(v.shape, spacing, angles, scales, shift)
        out = ndimage.affine_transform(v, matrix, offset, order=order, mode=mode, cval=0.0,
                                       prefilter=True)
        manifest["affine"].append({
            "name": name, "input": inputs[src], "spacing": list(spacing),
            "angles_deg": list(angles), "scales": list(scales), "translation_mm": list(shift),
            "interpolation": {1: "linear", 3: "cubic"}[order], "padding": mode,
            "matrix": matrix.tolist(), "offset": offset.tolist(),
            "matrix_bits": bits(matrix), "offset_bits": bits(offset),
            "expected": save(f"affine_{name}.npy", out, np.float32),
        })

    for factor, offset in ((1.07, -0.03), (0.82, 0.11)):
        out = vol * np.float32(factor) + np.float32(offset)
        assert out.dtype == np.float32
        manifest["intensity"].append({
            "factor": factor, "offset": offset, "input": inputs["vol"],
            "expected": save(f"intensity_{factor}_{offset}.npy", out, np.float32),
        })

    for gamma in (0.8, 1.3):
        v = vol.astype(np.float64)
        lo, hi = v.min(), v.max()
        out = lo + (hi - lo) * ((v - lo) / (hi - lo)) ** gamma
        manifest["gamma"].append({
            "gamma": gamma, "input": inputs["vol"],
            "expected": save(f"gamma_{gamma}.npy", out, np.float32),
        })

    # sigma per axis in voxels; (2, 2, 2) on a 7-deep volume reaches past the far edge (radius 8).
    for sigma in ((0.7, 0.7, 0.7), (1.3, 1.3, 1.3), (0.5, 1.0, 1.5), (2.0, 2.0, 2.0), (0.0, 1.0, 0.0)):
        out = ndimage.gaussian_filter(vol, sigma, mode="reflect", truncate=4.0)
        assert out.dtype == np.float32
        manifest["blur"].append({
            "sigma": list(sigma), "input": inputs["vol"],
            "expected": save("blur_" + "_".join(str(s) for s in sigma) + ".npy", out, np.float32),
        })

    probabilities = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]
    manifest["noise"] = {
        "probabilities": probabilities,
        "standard_normal_quantiles": [float(stats.norm.ppf(p)) for p in probabilities],
    }

    with open(os.path.join(OUT_DIR, "cases.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT_DIR, n)) for n in os.listdir(OUT_DIR))
    print(f"wrote {OUT_DIR} ({total} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
