#!/usr/bin/env python3
"""Checks a `ct3d export` ONNX model with the reference implementations from PyPI.

Usage: check_export.py MODEL.onnx EXPECTED.json

EXPECTED.json is `ct3d predict --json` output extended by the test: a list of objects with
`volume` (a NIfTI that `ct3d preprocess` wrote) and `probability` (what `ct3d predict` printed for
the raw scan). The script
  1. runs `onnx.checker.check_model(full_check=True)` (schema, opset, shape inference);
  2. checks the metadata properties a consumer needs (ct3d.preprocess.*, ct3d.classes, ...);
  3. runs the graph in ONNX Runtime (CPU) on the preprocessed volumes, batched as the model's
     input allows, and requires every probability to equal ct3d's within 1e-5;
  4. checks that `probability` is sigmoid(logit / ct3d.temperature).
Prints one line per check; exits 1 on the first failure.

Needs: onnx, onnxruntime, nibabel, numpy (tools/onnx/requirements.txt).
"""
import json
import sys

import nibabel as nib
import numpy as np
import onnx
import onnxruntime as ort

TOLERANCE = 1e-5
REQUIRED_METADATA = [
    "ct3d.version", "ct3d.architecture", "ct3d.input", "ct3d.preprocess",
    "ct3d.preprocess.hu_window", "ct3d.preprocess.size", "ct3d.preprocess.rotation_degrees",
    "ct3d.classes", "ct3d.temperature", "ct3d.decision_threshold", "ct3d.weights",
    "ct3d.config_sha256",
]


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def main(model_path, expected_path):
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    opset = {o.domain: o.version for o in model.opset_import}.get("", 0)
    if opset < 17:
        fail(f"opset {opset} < 17")
    print(f"onnx.checker: ok (opset {opset}, IR {model.ir_version})")

    metadata = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        fail(f"metadata lacks {missing}")
    size = [int(s) for s in metadata["ct3d.preprocess.size"].split(",")]
    print(f"metadata: ok ({len(metadata)} properties, size {size})")

    expected = json.load(open(expected_path))
    volumes = np.stack(
        [np.asarray(nib.load(e["volume"]).dataobj, dtype=np.float32)[None] for e in expected]
    )
    if list(volumes.shape[2:]) != size:
        fail(f"volumes {volumes.shape} do not match ct3d.preprocess.size {size}")

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    batch = session.get_inputs()[0].shape[0]
    step = batch if isinstance(batch, int) else len(volumes)
    logits, probabilities = [], []
    for start in range(0, len(volumes), step):
        chunk = volumes[start:start + step]
        if len(chunk) < step:  # a fixed batch: pad the last call, keep the real rows
            chunk = np.concatenate([chunk, np.zeros((step - len(chunk),) + chunk.shape[1:], np.float32)])
        logit, probability = session.run(["logit", "probability"], {"input": chunk})
        keep = min(step, len(volumes) - start)
        logits.extend(logit[:keep, 0])
        probabilities.extend(probability[:keep, 0])
    worst = 0.0
    for e, p in zip(expected, probabilities):
        error = abs(float(p) - e["probability"])
        worst = max(worst, error)
        if not error <= TOLERANCE:
            fail(f"{e['volume']}: ONNX Runtime {p} vs ct3d {e['probability']} (|diff| {error:.2e})")
    print(f"ONNX Runtime: {len(expected)} probabilities equal ct3d's (max |diff| {worst:.2e}, batch {batch})")

    temperature = float(metadata["ct3d.temperature"])
    recomputed = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64) / temperature))
    gap = float(np.max(np.abs(recomputed - np.asarray(probabilities, np.float64))))
    if gap > TOLERANCE:
        fail(f"probability is not sigmoid(logit / {temperature}): max gap {gap:.2e}")
    print(f"probability = sigmoid(logit / {temperature}): ok")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
