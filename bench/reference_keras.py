#!/usr/bin/env python3
"""Reference timings of the Keras example's model with TensorFlow/Keras on this machine.

Measures, with the seed's code (3d-image-classification-from-ct-scans.txt: get_model, the
compile settings, the tf.data pipeline with the scipy rotation augmentation):

- `train_step`: one `train_on_batch` of a random batch of 2 volumes of 128x128x64 (median of
  --repeats after one warm-up);
- `predict`: `model.predict` of one volume (median of --repeats after one warm-up);
- `epoch` (with --epoch): one `model.fit` epoch over 140 training + 60 validation volumes through
  the seed's `train_dataset`/`validation_dataset` pipelines (random [0, 1] volumes: the content does
  not change the speed), and the process's peak RSS afterwards.

Prints one JSON object per measurement. Needs tensorflow(-cpu) and scipy:
    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 scipy
    /tmp/tfenv/bin/python bench/reference_keras.py --epoch
"""

import argparse
import json
import random
import resource
import statistics
import time

import numpy as np
import tensorflow as tf
from scipy import ndimage
from tensorflow import keras
from tensorflow.keras import layers


def get_model(width=128, height=128, depth=64):
    """Build a 3D convolutional neural network model."""
    inputs = keras.Input((width, height, depth, 1))
    x = layers.Conv3D(filters=64, kernel_size=3, activation="relu")(inputs)
    x = layers.MaxPool3D(pool_size=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv3D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPool3D(pool_size=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv3D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.MaxPool3D(pool_size=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv3D(filters=256, kernel_size=3, activation="relu")(x)
    x = layers.MaxPool3D(pool_size=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.GlobalAveragePooling3D()(x)
    x = layers.Dense(units=512, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(units=1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="3dcnn")


def compiled_model():
    model = get_model(width=128, height=128, depth=64)
    lr_schedule = keras.optimizers.schedules.ExponentialDecay(
        0.0001, decay_steps=100000, decay_rate=0.96, staircase=True
    )
    model.compile(
        loss="binary_crossentropy",
        optimizer=keras.optimizers.Adam(learning_rate=lr_schedule),
        metrics=["acc"],
    )
    return model


@tf.function
def rotate(volume):
    """Rotate the volume by a few degrees"""

    def scipy_rotate(volume):
        angles = [-20, -10, -5, 5, 10, 20]
        angle = random.choice(angles)
        volume = ndimage.rotate(volume, angle, reshape=False)
        volume[volume < 0] = 0
        volume[volume > 1] = 1
        return volume

    augmented_volume = tf.numpy_function(scipy_rotate, [volume], tf.float32)
    # Not in the seed: Keras 3 needs the static shape that numpy_function drops ("as_list() is not
    # defined on an unknown TensorShape"). It changes no computation.
    augmented_volume.set_shape(volume.shape)
    return augmented_volume


def train_preprocessing(volume, label):
    volume = rotate(volume)
    volume = tf.expand_dims(volume, axis=3)
    return volume, label


def validation_preprocessing(volume, label):
    volume = tf.expand_dims(volume, axis=3)
    return volume, label


def median_seconds(repeats, fn):
    fn()  # warm-up: graph tracing, oneDNN primitive creation
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def report(name, **fields):
    print(json.dumps({"bench": name, "tensorflow": tf.__version__, **fields}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epoch", action="store_true", help="also time one epoch of 140 + 60 volumes")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    model = compiled_model()
    x = rng.random((2, 128, 128, 64, 1), dtype=np.float32)
    y = np.array([0.0, 1.0], dtype=np.float32)
    median, samples = median_seconds(args.repeats, lambda: model.train_on_batch(x, y))
    report("train_step", batch=2, median_s=round(median, 4), samples=[round(s, 4) for s in samples])

    one = x[:1]
    median, samples = median_seconds(args.repeats, lambda: model.predict(one, verbose=0))
    report("predict", median_s=round(median, 4), samples=[round(s, 4) for s in samples])

    if args.epoch:
        x_train = rng.random((140, 128, 128, 64), dtype=np.float32)
        y_train = (np.arange(140) % 2).astype(np.float32)
        x_val = rng.random((60, 128, 128, 64), dtype=np.float32)
        y_val = (np.arange(60) % 2).astype(np.float32)
        train_loader = tf.data.Dataset.from_tensor_slices((x_train, y_train))
        validation_loader = tf.data.Dataset.from_tensor_slices((x_val, y_val))
        batch_size = 2
        train_dataset = (
            train_loader.shuffle(len(x_train)).map(train_preprocessing).batch(batch_size).prefetch(2)
        )
        validation_dataset = (
            validation_loader.shuffle(len(x_val)).map(validation_preprocessing).batch(batch_size).prefetch(2)
        )
        model = compiled_model()
        start = time.perf_counter()
        model.fit(train_dataset, validation_data=validation_dataset, epochs=1, shuffle=True, verbose=0)
        elapsed = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report("epoch", train=140, validation=60, seconds=round(elapsed, 2),
               peak_rss_gib=round(peak_kib / 2**20, 3))


if __name__ == "__main__":
    main()
