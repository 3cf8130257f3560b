#!/usr/bin/env python3
"""The Keras example's way of predicting a folder of scans, timed: for each scan, the seed's
`process_scan` (nibabel + scipy: read, window, rotate 90 degrees, zoom to 128x128x64) and then
`model.predict(np.expand_dims(x, axis=0))`, one scan after the other, as the example predicts its
validation scan. The model is the seed's `get_model` with random weights (the speed does not
depend on them). Prints one JSON object: scans, seconds, scans per second.

    python bench/reference_predict.py SCAN...      # needs tensorflow(-cpu), scipy, nibabel
"""

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_keras import get_model  # noqa: E402
from reference_preprocess import process_scan  # noqa: E402


def main(paths):
    model = get_model(width=128, height=128, depth=64)
    # One warm-up call, as a served model would have had: graph tracing is not per-scan work.
    model.predict(np.zeros((1, 128, 128, 64), np.float32), verbose=0)
    started = time.perf_counter()
    for path in paths:
        volume = process_scan(path)
        model.predict(np.expand_dims(volume, axis=0), verbose=0)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "bench": "keras_predict_loop",
        "scans": len(paths),
        "seconds": round(seconds, 2),
        "scans_per_second": round(len(paths) / seconds, 3),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
