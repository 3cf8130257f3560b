#!/usr/bin/env python3
"""Golden files for ct3d's 3D ResNets: MONAI's ResNet (the reference implementation of
MedicalNet's layout) with small stage widths, random weights and random BatchNorm statistics,
its eval-mode logits on a random input, and PyTorch state dicts for `--init`.

Needs torch and monai from PyPI (`pip install torch monai safetensors numpy`). Writes into
crates/ct3d-model/tests/data/resnet/ (override with --out):

- `<case>.safetensors`: the state dict without `num_batches_tracked`, which is ct3d's weights
  file for that ResNet (PyTorch names and shapes, `format = ct3d-pytorch-v1`);
- `io.safetensors`: `input` [2, 1, 16, 14, 12] and `logits/<case>` [2, 1], MONAI's eval-mode
  float32 logits (also checked against a float64 run of the same network here);
- `resnet10_b_medicalnet.pth`: resnet10_b as MedicalNet saves it: `{"state_dict": …}` with the
  `module.` prefix of `nn.DataParallel`, `num_batches_tracked` counters and a `conv_seg.*`
  segmentation head (fc included, so the logits still apply), in PyTorch's legacy (pre-1.6,
  non-zip) format like MedicalNet's published files; the other `.pth` files use the zip format;
- `resnet10_b_fc3.pth`: the same weights under MONAI's names, with a 3-class head `fc` (ct3d
  must skip it and initialise its own);
- bad inputs: `not_a_state_dict.pth` (a list of numbers), `pickle_code.pth` (a pickle that calls
  `os.system` when unpickled by Python; never unpickle it), `wrong_shape.pth` (conv1.weight of
  the wrong shape), `extra_tensor.pth` (an unknown tensor).

Each case's settings mirror ct3d's config: `widths` = MONAI's `block_inplanes`, conv1 7x7x7
stride 2 (`conv1_t_stride=2`), `bias_downsample=False` (MedicalNet), one input channel, one
logit. The parameter counts printed at the end are MONAI's `sum(p.numel())`.

    python3 tools/golden/gen_resnet_golden.py
"""

import argparse
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import resnet as monai_resnet
from safetensors.torch import save_file

CASES = {
    # name: (block, layers, widths, shortcut)
    "resnet10_b": ("basic", [1, 1, 1, 1], [2, 4, 4, 8], "B"),
    "resnet18_a": ("basic", [2, 2, 2, 2], [2, 4, 4, 8], "A"),
    "resnet50_b": ("bottleneck", [3, 4, 6, 3], [2, 2, 2, 4], "B"),
}
INPUT_SHAPE = (2, 1, 16, 14, 12)


def build(block, layers, widths, shortcut, num_classes=1):
    return monai_resnet.ResNet(
        block=block,
        layers=layers,
        block_inplanes=widths,
        spatial_dims=3,
        n_input_channels=1,
        conv1_t_size=7,
        conv1_t_stride=2,
        shortcut_type=shortcut,
        bias_downsample=False,
        num_classes=num_classes,
    )


def randomise(model, generator):
    """Weights from MONAI's init are fine, but BatchNorm's start (0, 1, 1, 0) would hide a
    mix-up of its four tensors: give every tensor distinct random values."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(".weight") and tensor.dim() == 1:  # BatchNorm gamma
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.dim() == 1:  # BatchNorm beta, running_mean, fc bias
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            # Convolution and fc weights keep MONAI's (He, fan-out) initialisation.


def state_dict(model):
    return {
        k: v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


class RunsCode:
    """Pickles to a call of os.system: what a malicious .pth looks like."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="crates/ct3d-model/tests/data/resnet")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(13)
    generator = torch.Generator().manual_seed(13)
    x = torch.randn(INPUT_SHAPE, generator=generator)
    io = {"input": x.contiguous()}
    counts = {}
    for name, (block, layers, widths, shortcut) in CASES.items():
        model = build(block, layers, widths, shortcut)
        randomise(model, generator)
        model.eval()
        with torch.no_grad():
            logits = model(x)
            logits64 = build(block, layers, widths, shortcut).double().eval()
            logits64.load_state_dict(model.state_dict())
            reference = logits64(x.double())
        assert logits.shape == (2, 1)
        gap = ((logits.double() - reference).abs() / reference.abs().clamp_min(1e-6)).max()
        print(f"{name}: logits {logits.flatten().tolist()}, float32 vs float64 rel {gap:.2e}")
        io[f"logits/{name}"] = logits.contiguous()
        save_file(state_dict(model), out / f"{name}.safetensors")
        counts[name] = sum(p.numel() for p in model.parameters())
        if name == "resnet10_b":
            full = model.state_dict()
            wrapped = {f"module.{k}": v for k, v in full.items()}
            seg = torch.nn.Conv3d(widths[3], 2, kernel_size=1)
            wrapped["module.conv_seg.0.weight"] = seg.weight.detach()
            wrapped["module.conv_seg.0.bias"] = seg.bias.detach()
            # MedicalNet's checkpoints predate PyTorch 1.6's zip container: the legacy format.
            torch.save(
                {"state_dict": wrapped},
                out / "resnet10_b_medicalnet.pth",
                _use_new_zipfile_serialization=False,
            )
            three = build(block, layers, widths, shortcut, num_classes=3)
            sd = {k: v for k, v in full.items() if not k.startswith("fc.")}
            sd["fc.weight"] = three.fc.weight.detach()
            sd["fc.bias"] = three.fc.bias.detach()
            torch.save(sd, out / "resnet10_b_fc3.pth")
            bad = dict(sd)
            bad["conv1.weight"] = torch.zeros(widths[0], 1, 3, 3, 3)
            torch.save(bad, out / "wrong_shape.pth")
            extra = {k: v for k, v in full.items()}
            extra["layer5.0.conv1.weight"] = torch.zeros(1)
            torch.save(extra, out / "extra_tensor.pth")
    save_file(io, out / "io.safetensors")
    torch.save([1, 2, 3], out / "not_a_state_dict.pth")
    # torch.save's zip container around a pickle that calls os.system.
    with zipfile.ZipFile(out / "pickle_code.pth", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(RunsCode(), protocol=2))
        archive.writestr("archive/version", "3\n")

    print("MONAI parameter counts (sum(p.numel())):")
    for name, count in counts.items():
        print(f"  {name}: {count}")
    for depth in (10, 18, 34, 50):
        for shortcut in ("A", "B"):
            model = getattr(monai_resnet, f"resnet{depth}")(
                spatial_dims=3,
                n_input_channels=1,
                num_classes=1,
                conv1_t_stride=2,
                shortcut_type=shortcut,
                bias_downsample=False,
            )
            total = sum(p.numel() for p in model.parameters())
            buffers = sum(b.numel() for n, b in model.named_buffers() if "running" in n)
            print(f"  resnet{depth} shortcut {shortcut} full width: {total} (+{buffers} running stats)")
    np.set_printoptions(precision=6)


if __name__ == "__main__":
    main()
