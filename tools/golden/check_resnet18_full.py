#!/usr/bin/env python3
"""Parity of ct3d's full-width ResNet-18 with MONAI's (not committed: 33 M parameters).

Builds MONAI's `resnet18(spatial_dims=3, n_input_channels=1, num_classes=1, conv1_t_stride=2,
shortcut_type="B", bias_downsample=False)` (MedicalNet's layout; ct3d's `--arch resnet18`
defaults), gives its BatchNorms random statistics, saves it as MedicalNet does
(`{"state_dict": {"module.…": …}}`) with an input batch and its eval-mode logits into a temporary
folder, then runs the ignored Rust test `resnet::full_width_resnet18_matches_monai`, which loads
the `.pth` through `ct3d_model::pytorch` and checks ct3d's logits within 1e-4 relative.

Needs torch, monai, safetensors (PyPI) and cargo:

    python3 tools/golden/check_resnet18_full.py [--size 64,64,32] [--keep DIR]
"""

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import torch
from monai.networks.nets import resnet18
from safetensors.torch import save_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="64,64,32", help="input W,H,D")
    parser.add_argument("--keep", help="write the files here and keep them")
    args = parser.parse_args()
    size = [int(s) for s in args.size.split(",")]
    generator = torch.Generator().manual_seed(18)
    torch.manual_seed(18)
    model = resnet18(
        spatial_dims=3,
        n_input_channels=1,
        num_classes=1,
        conv1_t_stride=2,
        shortcut_type="B",
        bias_downsample=False,
    )
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean") or (name.endswith("bias") and tensor.dim() == 1):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    model.eval()
    x = torch.randn([2, 1, *size], generator=generator)
    with torch.no_grad():
        logits = model(x)
    params = sum(p.numel() for p in model.parameters())
    print(f"MONAI resnet18: {params} parameters, logits {logits.flatten().tolist()}")
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ct3d-resnet18-"))
    out.mkdir(parents=True, exist_ok=True)
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": wrapped}, out / "resnet18_full.pth")
    save_file({"input": x.contiguous(), "logits/resnet18_full": logits.contiguous()}, out / "io.safetensors")
    env = dict(os.environ, CT3D_RESNET_CHECK_DIR=str(out))
    command = [
        "cargo", "test", "--workspace", "--test", "tests",
        "resnet::full_width_resnet18_matches_monai", "--", "--ignored", "--nocapture",
    ]
    print(" ".join(command))
    raise SystemExit(subprocess.call(command, env=env))


if __name__ == "__main__":
    main()
