#!/usr/bin/env python3
"""Reference timings of the augmentation transforms with numpy + scipy (what MONAI's and
TorchIO's CPU transforms reduce to for these operations), on one 128x128x64 float32 volume, to
compare with `cargo run --release -p ct3d-volume --example bench_augment`.

With `--monai` (needs `pip install monai torch`), it also times MONAI's own `Compose` of the same
five transforms (RandFlip, RandAffine, RandScaleIntensity + RandShiftIntensity, RandGaussianNoise,
RandGaussianSmooth), all with prob=1.

Prints one JSON object per measurement (median and minimum of --runs runs, in milliseconds).
Single-threaded: scipy.ndimage and numpy's generator run on one core; set OMP_NUM_THREADS=1 for
torch.
"""

import argparse
import json
import statistics
import time

import numpy as np
import scipy
from scipy import ndimage, special


def unit_volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    u = np.arange(nx)[:, None, None] / nx - 0.5
    v = np.arange(ny)[None, :, None] / ny - 0.5
    w = np.arange(nz)[None, None, :] / nz
    vol = np.where(u * u + v * v < 0.12, 0.6, 0.2) + 0.2 * w + rng.uniform(-0.02, 0.02, shape)
    return np.clip(vol, 0, 1).astype(np.float32)


def rotation(a, b, g):
    ca, sa, cb, sb = special.cosdg(a), special.sindg(a), special.cosdg(b), special.sindg(b)
    cg, sg = special.cosdg(g), special.sindg(g)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cg, -sg, 0], [sg, cg, 0], [0, 0, 1]])
    return rz @ ry @ rx


def sampling(shape, angles, scales, shift):
    inverse = np.diag(1 / np.asarray(scales)) @ rotation(*angles).T
    centre = (np.asarray(shape) - 1) / 2
    return inverse, centre - inverse @ centre - inverse @ np.asarray(shift)


def time_ms(runs, f):
    """Median and minimum wall time, and median thread CPU time (less inflated by a busy
    machine), in milliseconds, after one warm-up call."""
    f(0)
    times, cpu = [], []
    for run in range(runs):
        start, cpu_start = time.perf_counter(), time.thread_time()
        f(run + 1)
        times.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.thread_time() - cpu_start) * 1e3)
    return statistics.median(times), min(times), statistics.median(cpu)


def report(name, runs, timing, impl="numpy+scipy"):
    median, minimum, cpu = timing
    print(json.dumps({"bench": name, "impl": impl, "threads": 1, "runs": runs,
                      "median_ms": round(median, 3), "min_ms": round(minimum, 3),
                      "cpu_median_ms": round(cpu, 3)}))


def pipeline(vol, rng):
    """flip, linear affine, intensity, noise, blur with parameters drawn like ct3d's defaults."""
    if rng.random() < 0.5:
        vol = np.flip(vol, 0)
    angles = rng.uniform(-1, 1, 3) * [5, 5, 15]
    scale = 1 + rng.uniform(-0.1, 0.1)
    shift = rng.uniform(-4, 4, 3)
    matrix, offset = sampling(vol.shape, angles, [scale] * 3, shift)
    vol = ndimage.affine_transform(vol, matrix, offset, order=1, mode="constant", cval=0.0)
    vol = vol * np.float32(1 + rng.uniform(-0.1, 0.1)) + np.float32(rng.uniform(-0.1, 0.1))
    vol = vol + rng.normal(0, 0.03, vol.shape).astype(np.float32)
    return ndimage.gaussian_filter(vol, rng.uniform(0.5, 1.0), mode="reflect", truncate=4.0)


def monai_compose():
    import torch
    from monai.transforms import (Compose, RandAffine, RandFlip, RandGaussianNoise,
                                  RandGaussianSmooth, RandScaleIntensity, RandShiftIntensity)
    torch.set_num_threads(1)
    return Compose([
        RandFlip(prob=0.5, spatial_axis=0),
        RandAffine(prob=1.0, rotate_range=(np.radians(5), np.radians(5), np.radians(15)),
                   scale_range=(0.1, 0.1, 0.1), translate_range=(4, 4, 4),
                   mode="bilinear", padding_mode="zeros"),
        RandScaleIntensity(factors=0.1, prob=1.0),
        RandShiftIntensity(offsets=0.1, prob=1.0),
        RandGaussianNoise(prob=1.0, std=0.03),
        RandGaussianSmooth(sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=1.0),
    ]), torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--monai", action="store_true")
    args = parser.parse_args()
    runs = args.runs
    vol = unit_volume((128, 128, 64))
    matrix, offset = sampling(vol.shape, (3, -4, 12), (1.05,) * 3, (2, -1.5, 1))
    rng = np.random.default_rng(7)
    sink = []
    report("flip_xy", runs, time_ms(runs, lambda _: sink.append(np.ascontiguousarray(np.flip(vol, (0, 1))))))
    report("affine_linear", runs, time_ms(runs, lambda _: sink.append(
        ndimage.affine_transform(vol, matrix, offset, order=1, mode="constant", cval=0.0))))
    report("affine_cubic", min(runs, 5), time_ms(min(runs, 5), lambda _: sink.append(
        ndimage.affine_transform(vol, matrix, offset, order=3, mode="constant", cval=0.0))))
    report("intensity", runs, time_ms(runs, lambda _: sink.append(vol * np.float32(1.05) + np.float32(-0.02))))

    def gamma(_):
        v = vol.astype(np.float64)
        lo, hi = v.min(), v.max()
        sink.append((lo + (hi - lo) * ((v - lo) / (hi - lo)) ** 1.2).astype(np.float32))
    report("gamma", runs, time_ms(runs, gamma))
    report("noise", runs, time_ms(runs, lambda _: sink.append(
        vol + rng.normal(0, 0.03, vol.shape).astype(np.float32))))
    report("blur_sigma1", runs, time_ms(runs, lambda _: sink.append(
        ndimage.gaussian_filter(vol, 1.0, mode="reflect", truncate=4.0))))
    report("pipeline_flip_affine_intensity_noise_blur", runs,
           time_ms(runs, lambda _: sink.append(pipeline(vol, rng))))
    if args.monai:
        compose, torch = monai_compose()
        image = torch.from_numpy(vol)[None]
        compose.set_random_state(7)
        report("pipeline_flip_affine_intensity_noise_blur", runs,
               time_ms(runs, lambda _: sink.append(compose(image))), impl="monai")
    print(json.dumps({"scipy": scipy.__version__, "numpy": np.__version__}))


if __name__ == "__main__":
    main()
