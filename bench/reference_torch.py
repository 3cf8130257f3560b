#!/usr/bin/env python3
"""Reference timings of the Keras example's model in PyTorch + cuDNN on the same GPU as ct3d.

The model is the seed's get_model() written in PyTorch (Conv3d 3x3x3 valid + ReLU, MaxPool3d 2,
BatchNorm with Keras's momentum 0.01/eps 1e-3, x4 with 64/64/128/256 filters; global average
pooling; Dense 512 + ReLU; Dropout 0.3; Dense 1), trained with Adam (lr 1e-4, Keras's eps 1e-7)
and binary cross-entropy on logits. Measures, like bench/reference_keras.py:

- `train_step`: one step on a random batch of 2 volumes of 128x128x64 (median of --repeats after
  --warmup untimed steps; each step reads its loss back, as Keras and ct3d do);
- `predict`: one volume in eval mode, probability read back to the host;
- `epoch` (with --epoch): 140 training steps (batch 2, the seed's scipy rotation augmentation in
  DataLoader worker processes, shuffled) plus 60 validation volumes, timed end to end.

--precision fp32 turns TF32 off (true fp32, what ct3d computes); tf32 lets cuDNN/cuBLAS use
TF32 tensor cores (PyTorch's default for convolutions); bf16 runs under torch.autocast.
Prints one JSON object per measurement.

    python3 bench/reference_torch.py --precision fp32 --epoch
"""

import argparse
import json
import random
import statistics
import time

import numpy as np
import torch
from scipy import ndimage
from torch import nn

KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99 in PyTorch's convention
KERAS_BN_EPS = 1e-3


class SeedModel(nn.Module):
    def __init__(self, filters=(64, 64, 128, 256), dense=512, dropout=0.3):
        super().__init__()
        blocks = []
        channels = 1
        for f in filters:
            blocks += [
                nn.Conv3d(channels, f, kernel_size=3),
                nn.ReLU(inplace=True),
                nn.MaxPool3d(2),
                nn.BatchNorm3d(f, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM),
            ]
            channels = f
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Linear(channels, dense), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(dense, 1)
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):  # x: [batch, 1, 128, 128, 64]
        x = self.features(x)
        return self.head(x.mean(dim=(2, 3, 4)))


def scipy_rotate(volume):
    """The seed's augmentation: a random angle, cubic spline, clipped to [0, 1]."""
    angle = random.choice([-20, -10, -5, 5, 10, 20])
    volume = ndimage.rotate(volume, angle, reshape=False)
    volume[volume < 0] = 0
    volume[volume > 1] = 1
    return volume


class Volumes(torch.utils.data.Dataset):
    def __init__(self, volumes, labels, augment):
        self.volumes, self.labels, self.augment = volumes, labels, augment

    def __len__(self):
        return len(self.volumes)

    def __getitem__(self, i):
        volume = self.volumes[i]
        if self.augment:
            volume = scipy_rotate(volume.copy())
        return torch.from_numpy(volume[None]), torch.tensor([self.labels[i]])


def report(name, **fields):
    print(json.dumps({"bench": name, "torch": torch.__version__, **fields}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    parser.add_argument("--epoch", action="store_true", help="also time one epoch of 140 + 60 volumes")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader worker processes for --epoch")
    parser.add_argument("--size", default="128,128,64")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    size = tuple(int(s) for s in args.size.split(","))
    device = torch.device(args.device)

    tf32 = args.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    torch.manual_seed(0)
    model = SeedModel().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7)
    loss_fn = nn.BCEWithLogitsLoss()

    def train_step(x, y):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    @torch.no_grad()
    def predict(x):
        model.eval()
        with autocast:
            return torch.sigmoid(model(x).float()).cpu()

    def median_seconds(fn):
        for _ in range(args.warmup):
            fn()
        sync()
        samples = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            sync()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples), samples

    common = dict(device=card, precision=args.precision, size=list(size))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((2, 1, *size), generator=gen).to(device)
    y = torch.tensor([[0.0], [1.0]], device=device)
    median, samples = median_seconds(lambda: train_step(x, y))
    report("train_step", batch=2, median_s=round(median, 5), samples=[round(s, 5) for s in samples], **common)

    one = x[:1]
    median, samples = median_seconds(lambda: predict(one))
    report("predict", median_s=round(median, 5), samples=[round(s, 5) for s in samples], **common)

    if args.epoch:
        rng = np.random.default_rng(0)
        train = Volumes(rng.random((140, *size), dtype=np.float32), np.arange(140) % 2, augment=True)
        val = Volumes(rng.random((60, *size), dtype=np.float32), np.arange(60) % 2, augment=False)
        loader_args = dict(batch_size=2, num_workers=args.workers, pin_memory=device.type == "cuda",
                           persistent_workers=args.workers > 0)
        train_loader = torch.utils.data.DataLoader(train, shuffle=True, **loader_args)
        val_loader = torch.utils.data.DataLoader(val, shuffle=False, **loader_args)
        for epoch in (1, 2):  # the first epoch also starts the worker processes
            start = time.perf_counter()
            waited = 0.0
            mark = time.perf_counter()
            for xb, yb in train_loader:
                waited += time.perf_counter() - mark
                train_step(xb.to(device, non_blocking=True), yb.float().to(device, non_blocking=True))
                mark = time.perf_counter()
            for xb, _ in val_loader:
                predict(xb.to(device, non_blocking=True))
            sync()
            elapsed = time.perf_counter() - start
            report("epoch", epoch=epoch, train=140, validation=60, seconds=round(elapsed, 3),
                   data_wait_s=round(waited, 3), workers=args.workers, **common)


if __name__ == "__main__":
    main()
