#!/usr/bin/env python3
"""Golden files for ct3d's Grad-CAM and Grad-CAM++ of the seed CNN: TensorFlow's GradientTape on
the Keras example's architecture (shrunk: filters 4, 4, 8, dense 8, input 30x30x30), with the
weights ct3d loads from the same safetensors file.

Needs tensorflow (Keras 3), numpy and safetensors from PyPI
(`pip install tensorflow-cpu safetensors numpy`). Writes into
crates/ct3d-model/tests/data/gradcam/ (override with --out):

- `seed_weights.safetensors`: random weights and BatchNorm statistics in ct3d's Keras layout
  (`conv3d/kernel` [3, 3, 3, in, out], `batch_normalization/moving_mean`, `dense/kernel`
  [in, out], …; `format = ct3d-keras-v1`), which is exactly what `layer.set_weights` takes;
- `io.safetensors`: `input` [30, 30, 30] (x, y, z; values in [0, 1]), `logit` [1], and per
  block k = 1, 2, 3 (the output of the k-th BatchNormalization, ct3d's `block{k}`):
  `gradcam/block{k}` and `gradcampp/block{k}`, the maps [sx, sy, sz] at the block's resolution,
  and `weights/block{k}` [channels], Grad-CAM's channel weights.

The score is the logit of the positive class (the last Dense without its sigmoid, which only
scales every gradient by the same positive factor). Grad-CAM: weights = mean over x, y, z of
dS/dA, map = ReLU(sum_c weights_c A_c). Grad-CAM++ (closed form for exp(S)): with g = dS/dA,
alpha = g^2 / (2 g^2 + sum_xyz(A) g^3) (0 where the denominator is 0), weights_c =
sum_xyz alpha relu(g), map = ReLU(sum_c weights_c A_c). Everything after the gradients is
float64 numpy, cast to float32 at the end.

    python3 tools/golden/gen_gradcam_golden.py
"""

import argparse
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

FILTERS = [4, 4, 8]
DENSE = 8
SIZE = (30, 30, 30)


def build():
    inputs = keras.Input(SIZE + (1,))
    x = inputs
    blocks = []
    for f in FILTERS:
        x = layers.Conv3D(filters=f, kernel_size=3, activation="relu")(x)
        x = layers.MaxPool3D(pool_size=2)(x)
        x = layers.BatchNormalization()(x)
        blocks.append(x)
    x = layers.GlobalAveragePooling3D()(x)
    x = layers.Dense(units=DENSE, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    logit = layers.Dense(units=1)(x)
    return keras.Model(inputs, blocks + [logit])


def suffix(i):
    return "" if i == 0 else f"_{i}"


def random_weights(rng):
    tensors = {}
    channels = 1
    for i, f in enumerate(FILTERS):
        limit = np.sqrt(6.0 / (27 * channels + 27 * f))
        tensors[f"conv3d{suffix(i)}/kernel"] = rng.uniform(-limit, limit, (3, 3, 3, channels, f))
        tensors[f"conv3d{suffix(i)}/bias"] = rng.uniform(-0.05, 0.05, (f,))
        bn = f"batch_normalization{suffix(i)}"
        tensors[f"{bn}/gamma"] = rng.uniform(0.7, 1.3, (f,))
        tensors[f"{bn}/beta"] = rng.uniform(-0.1, 0.1, (f,))
        tensors[f"{bn}/moving_mean"] = rng.uniform(0.0, 0.2, (f,))
        tensors[f"{bn}/moving_variance"] = rng.uniform(0.01, 0.05, (f,))
        channels = f
    limit = np.sqrt(6.0 / (channels + DENSE))
    tensors["dense/kernel"] = rng.uniform(-limit, limit, (channels, DENSE))
    tensors["dense/bias"] = rng.uniform(-0.05, 0.05, (DENSE,))
    limit = np.sqrt(6.0 / (DENSE + 1))
    tensors["dense_1/kernel"] = rng.uniform(-limit, limit, (DENSE, 1))
    tensors["dense_1/bias"] = np.array([0.1])
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}


def set_weights(model, tensors):
    convs = [l for l in model.layers if isinstance(l, layers.Conv3D)]
    norms = [l for l in model.layers if isinstance(l, layers.BatchNormalization)]
    denses = [l for l in model.layers if isinstance(l, layers.Dense)]
    for i, layer in enumerate(convs):
        layer.set_weights([tensors[f"conv3d{suffix(i)}/kernel"], tensors[f"conv3d{suffix(i)}/bias"]])
    for i, layer in enumerate(norms):
        bn = f"batch_normalization{suffix(i)}"
        layer.set_weights([tensors[f"{bn}/{n}"] for n in ("gamma", "beta", "moving_mean", "moving_variance")])
    for i, layer in enumerate(denses):
        layer.set_weights([tensors[f"dense{suffix(i)}/kernel"], tensors[f"dense{suffix(i)}/bias"]])


def maps(a, g):
    """a, g: [sx, sy, sz, C] float64 → Grad-CAM map, weights, Grad-CAM++ map."""
    w = g.mean(axis=(0, 1, 2))
    cam = np.maximum((a * w).sum(axis=-1), 0.0)
    g2, g3 = g * g, g * g * g
    denominator = 2.0 * g2 + a.sum(axis=(0, 1, 2)) * g3
    alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=denominator != 0.0)
    w_pp = (alpha * np.maximum(g, 0.0)).sum(axis=(0, 1, 2))
    cam_pp = np.maximum((a * w_pp).sum(axis=-1), 0.0)
    return cam, w, cam_pp


def main():
    parser = argparse.ArgumentParser()
    default_out = Path(__file__).resolve().parents[2] / "crates/ct3d-model/tests/data/gradcam"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(20261130)
    tensors = random_weights(rng)
    model = build()
    set_weights(model, tensors)

    # A bright ellipsoid on a noisy ramp, so that the maps have structure.
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in SIZE], indexing="ij")
    blob = ((x - 19) / 6) ** 2 + ((y - 11) / 5) ** 2 + ((z - 15) / 7) ** 2 < 1.0
    volume = 0.2 + 0.01 * z + 0.6 * blob + rng.uniform(-0.05, 0.05, SIZE)
    volume = np.clip(volume, 0.0, 1.0).astype(np.float32)

    inp = tf.constant(volume[None, ..., None])
    with tf.GradientTape() as tape:
        outputs = model(inp, training=False)
        *activations, logit = outputs
        score = tf.reduce_sum(logit)
    gradients = tape.gradient(score, activations)

    io = {"input": volume, "logit": np.asarray(logit.numpy()).reshape(1).astype(np.float32)}
    for k, (a, g) in enumerate(zip(activations, gradients), start=1):
        a = a.numpy()[0].astype(np.float64)
        g = g.numpy()[0].astype(np.float64)
        cam, w, cam_pp = maps(a, g)
        io[f"gradcam/block{k}"] = cam.astype(np.float32)
        io[f"gradcampp/block{k}"] = cam_pp.astype(np.float32)
        io[f"weights/block{k}"] = w.astype(np.float32)
        print(f"block{k}: activation {a.shape}, map max {cam.max():.4g}, ++ max {cam_pp.max():.4g}")
    print(f"logit {io['logit'][0]:.6f}; tensorflow {tf.__version__}, keras {keras.__version__}")

    save_file(tensors, str(args.out / "seed_weights.safetensors"), metadata={"format": "ct3d-keras-v1"})
    save_file({k: np.ascontiguousarray(v) for k, v in io.items()}, str(args.out / "io.safetensors"))


if __name__ == "__main__":
    main()
