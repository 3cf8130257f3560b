#!/usr/bin/env python3
"""Golden file for ct3d's occlusion sensitivity against MONAI's `OcclusionSensitivity`.

The model is a fixed linear scorer, so only the occlusion machinery is compared: the windows,
how a patch is hidden (`gaussian`, MONAI's default, and `mean_img`) and how overlapping windows
are blended. For a volume x (shape [12, 10, 8], x fastest in ct3d's terms; stored here
row-major [x][y][z], z fastest, the order ct3d hands a model), the positive-class probability is
sigmoid(sum(w * x) + b). MONAI's map is the blended probability of the occluded volumes; ct3d's
map is p(x) minus it, so the file stores `p0 - monai_map` as `expected`.

Needs torch and monai from PyPI (`pip install torch monai numpy`); checked with torch 2.15 and
MONAI 1.6.1. Writes crates/ct3d-model/tests/data/occlusion/monai_occlusion.json (override with
--out):

- `shape`, `volume` (row-major [x][y][z]), `weights` (same layout), `bias`, `p0`;
- `cases`: `mode` ("gaussian" or "mean_img"), `patch` [3], `overlap` (MONAI's), `stride` [3]
  (the scan interval MONAI derives from it, which ct3d takes as its stride), `starts` (the
  window starts MONAI uses on each axis) and `expected` (row-major [x][y][z]).

    python3 tools/golden/gen_occlusion_golden.py
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval
from monai.visualize import OcclusionSensitivity

SHAPE = (12, 10, 8)
CASES = [
    ("gaussian", (4, 4, 4), 0.5),
    ("gaussian", (5, 3, 2), 0.25),
    ("gaussian", (6, 5, 8), 0.0),
    ("gaussian", (3, 10, 1), 0.5),
    ("mean_img", (4, 3, 2), 0.5),
    ("mean_img", (6, 5, 4), 0.0),
]


class Linear(torch.nn.Module):
    def __init__(self, weights: np.ndarray, bias: float):
        super().__init__()
        self.w = torch.tensor(weights.reshape(-1), dtype=torch.float32)
        self.b = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) @ self.w)[:, None] + self.b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[2]
    parser.add_argument(
        "--out",
        type=Path,
        default=root / "crates/ct3d-model/tests/data/occlusion/monai_occlusion.json",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(14)
    volume = rng.uniform(0.0, 1.0, SHAPE).astype(np.float32)
    # A bright blob the scorer rewards, so that hiding it matters more than hiding the rest.
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"))
    blob = ((grid[0] - 7) ** 2 + (grid[1] - 4) ** 2 + (grid[2] - 3) ** 2) < 8
    volume[blob] = 0.9
    weights = (rng.normal(0.0, 0.02, SHAPE) + 0.1 * blob).astype(np.float32)
    bias = -5.0
    model = Linear(weights, bias).eval()
    x = torch.tensor(volume)[None, None]
    with torch.no_grad():
        p0 = float(torch.sigmoid(model(x))[0, 0])
    cases = []
    for mode, patch, overlap in CASES:
        occ = OcclusionSensitivity(
            nn_module=model, mask_size=patch, n_batch=4, overlap=overlap, mode=mode, verbose=False
        )
        with torch.no_grad():
            sensitivity, _ = occ(x)
        monai_map = sensitivity.detach().cpu().numpy().reshape(SHAPE)
        stride = _get_scan_interval(SHAPE, patch, 3, (overlap,) * 3)
        slices = dense_patch_slices(SHAPE, patch, stride)
        starts = [sorted({s[k].start for s in slices}) for k in range(3)]
        cases.append(
            {
                "mode": mode,
                "patch": list(patch),
                "overlap": overlap,
                "stride": [int(s) for s in stride],
                "starts": [[int(v) for v in axis] for axis in starts],
                "expected": (p0 - monai_map.astype(np.float64)).reshape(-1).tolist(),
            }
        )
    out = {
        "generator": "tools/golden/gen_occlusion_golden.py",
        "torch": torch.__version__,
        "monai": __import__("monai").__version__,
        "shape": list(SHAPE),
        "volume": volume.reshape(-1).astype(np.float64).tolist(),
        "weights": weights.reshape(-1).astype(np.float64).tolist(),
        "bias": bias,
        "p0": p0,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=None) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
