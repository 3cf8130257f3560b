#!/usr/bin/env python3
"""Reference CPU timings of a 3D ResNet-18 in MedicalNet's layout, in PyTorch (oneDNN), for the
same measurements as `ct3d bench --arch resnet18`: one training step on a random batch of 2
volumes of 128x128x64 (Adam, binary cross-entropy on one logit; median of --repeats after one
untimed step) and a one-volume prediction in eval mode. The network is MONAI's `resnet18` with
ct3d's defaults: one input channel, conv1 7x7x7 with stride 2, shortcut B without bias.
Prints one JSON object per measurement.

    python3 bench/reference_torch_resnet.py --repeats 3
"""
import argparse
import json
import statistics
import time

import torch
from monai.networks.nets import resnet18


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = resnet18(spatial_dims=3, n_input_channels=1, num_classes=1, conv1_t_size=7,
                     conv1_t_stride=2, shortcut_type="B", bias_downsample=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x = torch.randn(2, 1, 128, 128, 64)
    y = torch.tensor([[0.0], [1.0]])

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    model.train()
    step()
    steps = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        steps.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        model(x[:1])
        predictions = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            torch.sigmoid(model(x[:1])).item()
            predictions.append(time.perf_counter() - start)
    common = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    print(json.dumps({"bench": "resnet18_train_step", **common, "batch": 2,
                      "median_s": round(statistics.median(steps), 4),
                      "samples": [round(s, 4) for s in steps]}))
    print(json.dumps({"bench": "resnet18_predict", **common,
                      "median_s": round(statistics.median(predictions), 4),
                      "samples": [round(s, 4) for s in predictions]}))


if __name__ == "__main__":
    main()
